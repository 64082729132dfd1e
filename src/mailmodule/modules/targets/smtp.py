"""`target.smtp` and `target.lmtp`: forwarding to a fixed list of SMTP or LMTP servers.

As maddy's target.smtp: the upstreams are tried in order until one takes the connection;
the message is then relayed command by command (MAIL FROM at `start`, RCPT TO at
`add_rcpt`, DATA at `body`), each refusal carried back with the upstream's own code.
Like every SMTP relay it cannot be atomic: a body the upstream accepted stays accepted
whatever `abort` does afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, StatusCollector
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.targets._client import ClientSettings, SMTPClient, tls_context
from mailmodule.modules.targets._pool import ConnectionPool
from mailmodule.modules.targets._upstream import Upstream
from mailmodule.smtp import Reply, is_valid_hello_name

__all__ = ["SMTPTarget"]

_DEFAULT_HOSTNAME: Final = "localhost.localdomain"


def _key(rcpt: str) -> str:
    try:
        return address.for_lookup(rcpt)
    except AddressError:
        return rcpt.lower()


@final
class SMTPTarget(ModuleBase):
    """`target.smtp` and `target.lmtp`: deliver every message to the first of a list of
    upstream servers that answers.

    Settings (maddy's names): `targets`, the upstreams in order ("tcp://host:port",
    "tls://host:port" for implicit TLS, "unix:///path"; inline arguments come first);
    `hostname`, said in EHLO/LHLO ("localhost.localdomain"; an IDN is sent as A-labels);
    `attempt_starttls` (yes): STARTTLS where the upstream offers it; `require_tls` (no):
    an upstream without TLS is skipped like one that does not answer; `tls_verify`
    (yes) and `tls_root_ca` (the system's CAs): how the upstream's certificate is
    checked; `auth_username` and `auth_password`: AUTH PLAIN, only over TLS unless
    `auth_without_tls`; `connect_timeout` (1m: connecting, greeting, EHLO, STARTTLS,
    AUTH), `command_timeout` (5m), `submission_timeout` (12m: the body and its reply);
    `max_idle_connections` (4) per upstream, kept `idle_timeout` (1m) for the next
    message, which sends RSET first.

    What the upstream offers decides what is sent: SIZE, BODY=8BITMIME, SMTPUTF8, DSN
    parameters only where offered; AUTH= never (as maddy: it is our client's claim). A
    message above the upstream's SIZE is refused 552 5.3.4; non-ASCII addresses to an
    upstream without SMTPUTF8 go as A-labels where the local part is ASCII and are
    refused 550/553 5.6.7 otherwise; REQUIRETLS to an upstream without it is refused 550
    5.7.30.

    Errors are `SMTPError`s naming this target: the upstream's reply as it gave it (a
    552 to RCPT read as 452); when no upstream could be had, the last one's failure:
    451 4.4.1 (no connection), 451 4.7.5 (TLS failed), 451 4.7.10 (TLS required and not
    offered), or its refusal of the greeting, EHLO or AUTH; 451 4.4.2 for a connection
    that broke or timed out, 451 4.5.0 for an upstream that broke the protocol.
    `target.lmtp` deliveries implement `PartialDelivery`: the upstream's reply for each
    recipient is its status.

    Not atomic, as no SMTP relay can be (RFC 5321 has no two-phase commit): the message
    is the upstream's once it answered the body, so it is visible there before `commit`
    and `abort` cannot take it back; what `commit` adds is that the session goes back to
    the pool. `commit` after a failed body raises 503 5.5.1.
    """

    def __init__(
        self,
        mod_name: str = "target.smtp",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.lmtp = mod_name == "target.lmtp"
        self.upstreams: tuple[Upstream, ...] = ()
        self.pool = ConnectionPool(ClientSettings(lmtp=self.lmtp))

    def init(self, cfg: ConfigMap) -> None:
        module = cfg.module or self.name()
        texts = [*self.inline_args, *cfg.string_list("targets", [])]
        if not texts:
            raise ConfigError("at least one upstream is required", module=module, key="targets")
        try:
            self.upstreams = tuple(Upstream.parse(text) for text in texts)
        except ConfigError as exc:
            raise ConfigError(exc.message, module=module, key="targets") from exc
        hostname = cfg.string("hostname", _DEFAULT_HOSTNAME)
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            hostname = ""
        if not is_valid_hello_name(hostname):
            raise ConfigError(
                "expected a domain name or an address literal", module=module, key="hostname"
            )
        ca_file = cfg.string("tls_root_ca", "") or None
        verify = cfg.boolean("tls_verify", True)
        try:
            tls = (
                None if verify and ca_file is None else tls_context(verify=verify, ca_file=ca_file)
            )
        except OSError as exc:  # ssl.SSLError is one
            raise ConfigError(
                f"cannot load CA certificates from {ca_file!r}: {exc}",
                module=module,
                key="tls_root_ca",
            ) from exc
        username = cfg.string("auth_username", "")
        password = cfg.string("auth_password", "")
        if bool(username) != bool(password):
            key = "auth_password" if username else "auth_username"
            raise ConfigError("give both auth_username and auth_password", module=module, key=key)
        cfg.boolean("debug", False)  # maddy's; the log level decides here
        settings = ClientSettings(
            hostname=hostname,
            lmtp=self.lmtp,
            starttls=cfg.boolean("attempt_starttls", True),
            require_tls=cfg.boolean("require_tls", False),
            tls=tls,
            auth=(username, password) if username else None,
            auth_without_tls=cfg.boolean("auth_without_tls", False),
            connect_timeout=self._timeout(cfg, "connect_timeout", minutes=1),
            command_timeout=self._timeout(cfg, "command_timeout", minutes=5),
            data_timeout=self._timeout(cfg, "submission_timeout", minutes=12),
            target_name=self.name(),
        )
        self.pool = ConnectionPool(
            settings,
            max_idle=cfg.integer("max_idle_connections", 4, minimum=0),
            idle_timeout=cfg.duration("idle_timeout", dt.timedelta(minutes=1)).total_seconds(),
        )

    @staticmethod
    def _timeout(cfg: ConfigMap, key: str, *, minutes: int) -> float:
        return cfg.duration(key, dt.timedelta(minutes=minutes), positive=True).total_seconds()

    async def connect(self) -> SMTPClient:
        """A session with the first upstream that takes one (an idle one reused).

        Raises:
            SMTPError: no upstream could be reached: the last one's error.
        """
        last: SMTPError | None = None
        for upstream in self.upstreams:
            try:
                return await self.pool.acquire(upstream)
            except SMTPError as exc:
                last = exc
        if last is None:
            raise SMTPError(451, (4, 4, 1), "No upstream configured", target_name=self.name())
        raise last

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        client = await self.connect()
        try:
            limit = client.connection.extensions.size
            if limit and msg_meta.smtp_opts.size > limit:
                raise _too_big(self.name())
            # AUTH= is what our client claimed, not what we vouch for: never passed on.
            await client.mail(mail_from, attrs.evolve(msg_meta.smtp_opts, auth=None))
        except BaseException:
            await self.pool.release(client)
            raise
        if self.lmtp:
            return _LMTPDelivery(self, msg_meta, client)
        return _SMTPDelivery(self, msg_meta, client)

    def close(self) -> None:
        """Close the idle sessions."""
        self.pool.close()


def _too_big(target_name: str) -> SMTPError:
    return SMTPError(
        552, (5, 3, 4), "Message too big for the upstream server", target_name=target_name
    )


class _SMTPDelivery:
    def __init__(self, target: SMTPTarget, meta: MsgMetadata, client: SMTPClient) -> None:
        self._target = target
        self._meta = meta
        self._client: SMTPClient | None = client
        self._seen: set[str] = set()
        self.accepted: list[str] = []  # as given to add_rcpt, in the upstream's order
        self._failed: SMTPError | None = None  # what body raised; commit refuses then

    def _session(self) -> SMTPClient:
        if self._client is None:
            raise SMTPError(503, (5, 5, 1), "The delivery is over", target_name=self._target.name())
        return self._client

    async def add_rcpt(self, rcpt_to: str) -> None:
        key = _key(rcpt_to)
        if key in self._seen:
            return
        await self._session().rcpt(rcpt_to, self._meta.rcpt_opts.get(rcpt_to))
        self._seen.add(key)
        self.accepted.append(rcpt_to)

    def _check_size(self, header: Header, body: Buffer) -> SMTPClient:
        client = self._session()
        limit = client.connection.extensions.size
        if limit and len(header.to_bytes()) + len(body) > limit:
            raise _too_big(self._target.name())
        if not self.accepted:
            raise SMTPError(554, (5, 5, 1), "No valid recipients", target_name=self._target.name())
        return client

    async def body(self, header: Header, body: Buffer) -> None:
        try:
            await self._check_size(header, body).data(header, body)
        except SMTPError as exc:
            self._failed = exc
            raise

    async def commit(self) -> None:
        await self._release()
        if self._failed is not None:
            raise SMTPError(
                503,
                (5, 5, 1),
                "Bad sequence of commands: the body failed",
                target_name=self._target.name(),
            ) from self._failed

    async def abort(self) -> None:
        await self._release()  # the pool's RSET drops the transaction before the next one

    async def _release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._target.pool.release(client)


@final
class _LMTPDelivery(_SMTPDelivery):
    """An LMTP delivery: one outcome per recipient (`PartialDelivery`)."""

    async def _outcomes(self, header: Header, body: Buffer) -> list[SMTPError | None]:
        try:
            client = self._check_size(header, body)
        except SMTPError as exc:
            return [exc] * len(self.accepted)
        results = await client.data_lmtp(header, body)
        return [self._status(result) for result in results]

    def _status(self, result: Reply | SMTPError) -> SMTPError | None:
        if isinstance(result, SMTPError):
            return result
        if result.code < 400:
            return None
        return SMTPError(
            result.code,
            result.enhanced_code or (result.code // 100, 0, 0),
            "\n".join(result.lines),
            target_name=self._target.name(),
            misc={"remote_server": self._session().upstream.text},
        )

    async def body(self, header: Header, body: Buffer) -> None:
        for status in await self._outcomes(header, body):
            if status is not None:
                self._failed = status
                raise status

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        for rcpt, status in zip(self.accepted, await self._outcomes(header, body), strict=True):
            c.set_status(rcpt, status)
