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
from typing import ClassVar, Final, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, StatusCollector
from mailmodule.metadata import MailOptions, MsgMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.targets._client import ClientSettings, SMTPClient, tls_context
from mailmodule.modules.targets._pool import ConnectionPool
from mailmodule.modules.targets._upstream import Upstream
from mailmodule.smtp import Reply, is_valid_hello_name

__all__ = ["SMTPTarget"]

_TARGETS: Final = Setting.string_list(
    "targets",
    "the upstreams, tried in order: tcp://host:port, tls://host:port, unix:///path",
    [],
    default_doc="required (in code: inline arguments, which come first)",
)
_HOSTNAME: Final = Setting.string(
    "hostname", "our name in EHLO/LHLO (an IDN is sent as A-labels)", "localhost.localdomain"
)
_ATTEMPT_STARTTLS: Final = Setting.boolean(
    "attempt_starttls", "use STARTTLS where the upstream offers it", True
)
_REQUIRE_TLS: Final = Setting.boolean(
    "require_tls", "skip an upstream with which the session is not encrypted", False
)
_TLS_VERIFY: Final = Setting.boolean("tls_verify", "check the upstream's certificate", True)
_TLS_ROOT_CA: Final = Setting.string(
    "tls_root_ca",
    "a PEM file of the CAs that certificates are checked with",
    "",
    default_doc="the system's CAs",
)
_AUTH_USERNAME: Final = Setting.string(
    "auth_username", "log in with AUTH PLAIN as this user (with auth_password)", ""
)
_AUTH_PASSWORD: Final = Setting.string("auth_password", "the password of auth_username", "")
_AUTH_WITHOUT_TLS: Final = Setting.boolean(
    "auth_without_tls", "send the credentials over an unencrypted session too", False
)
_CONNECT_TIMEOUT: Final = Setting.duration(
    "connect_timeout",
    "connecting, the greeting, EHLO, STARTTLS and AUTH, together",
    dt.timedelta(minutes=1),
    positive=True,
)
_COMMAND_TIMEOUT: Final = Setting.duration(
    "command_timeout", "each later command and its reply", dt.timedelta(minutes=5), positive=True
)
_SUBMISSION_TIMEOUT: Final = Setting.duration(
    "submission_timeout",
    "sending a body and reading its replies",
    dt.timedelta(minutes=12),
    positive=True,
)
_MAX_IDLE: Final = Setting.integer(
    "max_idle_connections", "idle sessions kept per upstream for the next messages", 4, minimum=0
)
_IDLE_TIMEOUT: Final = Setting.duration(
    "idle_timeout", "how long an idle session is kept", dt.timedelta(minutes=1)
)
_DEBUG: Final = Setting.boolean("debug", "maddy's; the log level decides here", False)


def _key(rcpt: str) -> str:
    try:
        return address.for_lookup(rcpt)
    except AddressError:
        return rcpt.lower()


@final
class SMTPTarget(ModuleBase):
    """`target.smtp` and `target.lmtp`: deliver every message to the first of a list of
    upstream servers that answers.

    Settings, by maddy's names, are declared in `SETTINGS` (docs/configuration.md):
    `targets` (inline arguments first) are tried in order; STARTTLS is used where
    offered, the certificate checked unless `tls_verify = false`; AUTH PLAIN goes over
    TLS only unless `auth_without_tls`; idle sessions are kept per upstream and reused
    after an RSET.

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

    SETTINGS: ClassVar = (
        _TARGETS,
        _HOSTNAME,
        _ATTEMPT_STARTTLS,
        _REQUIRE_TLS,
        _TLS_VERIFY,
        _TLS_ROOT_CA,
        _AUTH_USERNAME,
        _AUTH_PASSWORD,
        _AUTH_WITHOUT_TLS,
        _CONNECT_TIMEOUT,
        _COMMAND_TIMEOUT,
        _SUBMISSION_TIMEOUT,
        _MAX_IDLE,
        _IDLE_TIMEOUT,
        _DEBUG,
    )

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        module = cfg.module or self.name()
        texts = [*self.inline_args, *cfg.value(_TARGETS)]
        if not texts:
            raise ConfigError("at least one upstream is required", module=module, key="targets")
        try:
            self.upstreams = tuple(Upstream.parse(text) for text in texts)
        except ConfigError as exc:
            raise ConfigError(exc.message, module=module, key="targets") from exc
        hostname = cfg.value(_HOSTNAME)
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            hostname = ""
        if not is_valid_hello_name(hostname):
            raise ConfigError(
                "expected a domain name or an address literal", module=module, key="hostname"
            )
        ca_file = cfg.value(_TLS_ROOT_CA) or None
        verify = cfg.value(_TLS_VERIFY)
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
        username = cfg.value(_AUTH_USERNAME)
        password = cfg.value(_AUTH_PASSWORD)
        if bool(username) != bool(password):
            key = "auth_password" if username else "auth_username"
            raise ConfigError("give both auth_username and auth_password", module=module, key=key)
        cfg.value(_DEBUG)  # maddy's; the log level decides here
        settings = ClientSettings(
            hostname=hostname,
            lmtp=self.lmtp,
            starttls=cfg.value(_ATTEMPT_STARTTLS),
            require_tls=cfg.value(_REQUIRE_TLS),
            tls=tls,
            auth=(username, password) if username else None,
            auth_without_tls=cfg.value(_AUTH_WITHOUT_TLS),
            connect_timeout=cfg.value(_CONNECT_TIMEOUT).total_seconds(),
            command_timeout=cfg.value(_COMMAND_TIMEOUT).total_seconds(),
            data_timeout=cfg.value(_SUBMISSION_TIMEOUT).total_seconds(),
            target_name=self.name(),
        )
        self.pool = ConnectionPool(
            settings,
            max_idle=cfg.value(_MAX_IDLE),
            idle_timeout=cfg.value(_IDLE_TIMEOUT).total_seconds(),
        )

    async def connect(self) -> tuple[SMTPClient, bool]:
        """A session with the first upstream that takes one (an idle one reused), and
        whether it was used before.

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
        client, reused = await self.connect()
        # AUTH= is what our client claimed, not what we vouch for: never passed on.
        options = attrs.evolve(msg_meta.smtp_opts, auth=None)
        try:
            try:
                await self._mail(client, mail_from, options, reset=reused)
            except SMTPError:
                if not reused or client.usable:
                    raise
                # The idle session died under us (closed, 421): once more on a new one.
                await self.pool.release(client)
                client = await SMTPClient.connect(client.upstream, self.pool.settings)
                await self._mail(client, mail_from, options, reset=False)
        except BaseException:
            await self.pool.release(client)
            raise
        if self.lmtp:
            return _LMTPDelivery(self, msg_meta, client)
        return _SMTPDelivery(self, msg_meta, client)

    async def _mail(
        self, client: SMTPClient, sender: str, options: MailOptions, *, reset: bool
    ) -> None:
        limit = client.connection.extensions.size
        if limit and options.size > limit:
            raise _too_big(self.name())
        await client.mail(sender, options, reset=reset)

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
