"""`target.remote`: delivery to the recipients' own MX hosts, as maddy's target.remote.

For each recipient domain: the MX records through the shared resolver, in preference
order (the domain itself, by its A/AAAA records, when it has none: RFC 5321 section
5.1), a null MX (RFC 7505) refused 556 5.1.10; an address literal ("[192.0.2.1]") is
delivered to as it is. Each MX is tried in turn: the mx_auth policies judge the MX
(`check_mx`), the connection is made with STARTTLS where offered, certificate checked
(`TLS_AUTHENTICATED`), or, if that fails, unchecked (`TLS_ENCRYPTED`), or, if TLS fails
altogether, without it (`TLS_NONE`); the policies then judge the connection
(`check_conn`). The first MX that passes carries the domain's recipients for this
message; a refused or unreachable one is skipped, and when none is left the domain's
recipients fail with the last reason.

Sessions are reused across messages per MX (`ConnectionPool`, as target.smtp): after its
message a session is kept idle under its MX host, address, port and the TLS attempt
(verified, unverified, none) that opened it, so the TLS level it reached and its peer
certificate stay with it. A later message to any domain served by that MX takes it (RSET
first) only after the same `check_mx` and `check_conn` a new connection gets, judged on
the session's own TLS state; a reused session found dead is replaced at once.

REQUIRETLS (RFC 8689) needs `TLS_AUTHENTICATED` and an MX level of at least
`MX_MTASTS`, else 550 5.7.30. Quarantined mail is refused (554 5.7.1) unless
`deliver_quarantined`. Deliveries implement `PartialDelivery`: each recipient gets
the outcome of its own domain's MX. It runs behind `target.queue`, which retries the
temporary failures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from typing import ClassVar, Final, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import DNSError, DNSTemporaryError, Resolver, shared_resolver
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import MXAuthPolicy, MXLevel, StatusCollector, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.mx_auth import PolicyDelivery, PolicyGroup
from mailmodule.modules.targets._client import ClientSettings, SMTPClient, tls_context
from mailmodule.modules.targets._pool import ConnectionPool
from mailmodule.modules.targets._upstream import Upstream
from mailmodule.smtp import is_valid_hello_name

__all__ = ["RemoteTarget"]

_Status = Callable[[str, SMTPError | None], object]

_NAME: Final = "target.remote"
_HOSTNAME = Setting.string("hostname", "the name said in EHLO", "localhost.localdomain")
_MX_AUTH = Setting.string_list(
    "mx_auth",
    "instance names of the mx_auth policies to apply",
    [],
    default_doc="none: any MX, any TLS",
)
_PORT = Setting.integer("smtp_port", "the port of the MX hosts", 25, minimum=1)
_CA_FILE = Setting.string(
    "tls_root_ca",
    "PEM file of the CAs trusted for MX certificates",
    None,
    default_doc="the system's trust store",
)
_QUARANTINED = Setting.boolean("deliver_quarantined", "deliver mail the checks quarantined", False)
_CONNECT = Setting.duration(
    "connect_timeout",
    "connecting, greeting, EHLO, STARTTLS",
    dt.timedelta(minutes=1),
    positive=True,
)
_COMMAND = Setting.duration(
    "command_timeout", "each later command", dt.timedelta(minutes=5), positive=True
)
_SUBMISSION = Setting.duration(
    "submission_timeout", "the body and its reply", dt.timedelta(minutes=12), positive=True
)
_MAX_IDLE = Setting.integer(
    "max_idle_connections", "idle sessions kept per MX for the next messages", 4, minimum=0
)
_IDLE_TIMEOUT = Setting.duration(
    "idle_timeout", "how long an idle session is kept", dt.timedelta(minutes=1)
)
# The TLS attempts, best first; a session is pooled under the one that opened it.
_ATTEMPTS: Final = (TLSLevel.TLS_AUTHENTICATED, TLSLevel.TLS_ENCRYPTED, TLSLevel.TLS_NONE)


@final
class RemoteTarget(ModuleBase):
    """`target.remote`: deliver to each recipient domain's MX; see the module docstring.

    Settings: `hostname`, `mx_auth` (policy instance names, applied by weight),
    `smtp_port` (25; another only in tests), `tls_root_ca`, `deliver_quarantined`,
    `connect_timeout`, `command_timeout`, `submission_timeout`, `max_idle_connections`
    and `idle_timeout` (sessions kept per MX). `close`/`aclose` close the idle sessions.
    """

    SETTINGS: ClassVar = (
        _HOSTNAME,
        _MX_AUTH,
        _PORT,
        _CA_FILE,
        _QUARANTINED,
        _CONNECT,
        _COMMAND,
        _SUBMISSION,
        _MAX_IDLE,
        _IDLE_TIMEOUT,
    )

    def __init__(
        self,
        mod_name: str = _NAME,
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.policies = PolicyGroup(())
        self.port = 25
        self.deliver_quarantined = False
        self._pools = _pools(ClientSettings(target_name=_NAME), max_idle=0, idle_timeout=0)
        self._resolver: Resolver | None = None

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        module = cfg.module or self.name()
        hostname = cfg.value(_HOSTNAME)
        if not hostname.isascii() or not is_valid_hello_name(hostname):
            raise ConfigError("expected an ASCII domain name", module=module, key="hostname")
        policies: list[MXAuthPolicy] = []
        for name in cfg.value(_MX_AUTH):
            found = cfg.instance(name)
            if not isinstance(found, MXAuthPolicy):
                raise ConfigError(
                    f"{name!r} is not an mx_auth policy instance", module=module, key="mx_auth"
                )
            policies.append(found)
        self.policies = PolicyGroup(policies)
        ca_file = cfg.value(_CA_FILE)
        try:
            verify = tls_context(ca_file=ca_file)
        except OSError as exc:  # ssl.SSLError is one
            raise ConfigError(
                f"cannot load CA certificates from {ca_file!r}: {exc}",
                module=module,
                key="tls_root_ca",
            ) from exc
        self.port = cfg.value(_PORT)
        self.deliver_quarantined = cfg.value(_QUARANTINED)
        verified = ClientSettings(
            hostname=hostname,
            tls=verify,
            connect_timeout=cfg.value(_CONNECT).total_seconds(),
            command_timeout=cfg.value(_COMMAND).total_seconds(),
            data_timeout=cfg.value(_SUBMISSION).total_seconds(),
            chunking=True,
            target_name=_NAME,
        )
        self._pools = _pools(
            verified,
            max_idle=cfg.value(_MAX_IDLE),
            idle_timeout=cfg.value(_IDLE_TIMEOUT).total_seconds(),
        )
        self._resolver = shared_resolver(cfg)

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> _RemoteDelivery:
        if msg_meta.quarantine and not self.deliver_quarantined:
            raise SMTPError(
                554, (5, 7, 1), "Refusing to deliver a quarantined message", target_name=_NAME
            )
        return _RemoteDelivery(self, msg_meta, mail_from)

    async def mx_hosts(self, domain: str) -> tuple[tuple[str, ...], bool]:
        """The hosts to try for `domain`, best first, and whether the MX answer was
        DNSSEC-validated.

        Raises:
            SMTPError: 556 5.1.10 for a null MX; 451 4.4.4 when the lookup failed for
                now; 554 5.4.4 when it cannot succeed (a malformed name, NXDOMAIN).
        """
        assert self._resolver is not None, "init was not called"
        try:
            answer = await self._resolver.mx(domain)
        except DNSTemporaryError as exc:
            raise SMTPError(451, (4, 4, 4), "MX lookup failed", target_name=_NAME) from exc
        except DNSError as exc:
            raise SMTPError(554, (5, 4, 4), "MX lookup failed", target_name=_NAME) from exc
        if answer.nxdomain:
            raise SMTPError(554, (5, 4, 4), f"Domain {domain} does not exist", target_name=_NAME)
        records = sorted(answer.records, key=lambda record: record.preference)
        if any(record.exchange == "" for record in records):
            raise SMTPError(
                556, (5, 1, 10), "Domain does not accept email (null MX)", target_name=_NAME
            )
        hosts = tuple(record.exchange for record in records) or (domain,)
        return hosts, answer.authenticated

    async def addresses(self, host: str) -> tuple[str, ...]:
        """The addresses of MX `host` (an address literal is its own), IPv4 first.

        Raises:
            SMTPError: 451 4.4.4 when the lookup fails.
        """
        try:
            return (str(ipaddress.ip_address(host)),)
        except ValueError:
            pass
        assert self._resolver is not None, "init was not called"
        try:
            answer = await self._resolver.ip(host)
        except DNSError as exc:
            raise SMTPError(
                451, (4, 4, 4), f"Address lookup of MX {host} failed", target_name=_NAME
            ) from exc
        return tuple(str(ip) for ip in answer.records)

    def pool(self, tls_level: TLSLevel) -> ConnectionPool:
        """The sessions of the attempt at `tls_level` (verified, unverified, none), with
        its client settings."""
        return self._pools[tls_level]

    def close(self) -> None:
        """Close the idle sessions at once, without QUIT."""
        for pool in self._pools.values():
            pool.close()

    async def aclose(self) -> None:
        """Close the idle sessions, with QUIT."""
        await asyncio.gather(*(pool.aclose() for pool in self._pools.values()))


def _pools(
    verified: ClientSettings, *, max_idle: int, idle_timeout: float
) -> dict[TLSLevel, ConnectionPool]:
    settings = {
        TLSLevel.TLS_AUTHENTICATED: verified,
        TLSLevel.TLS_ENCRYPTED: attrs.evolve(verified, tls=tls_context(verify=False)),
        TLSLevel.TLS_NONE: attrs.evolve(verified, starttls=False),
    }
    return {
        level: ConnectionPool(each, max_idle=max_idle, idle_timeout=idle_timeout)
        for level, each in settings.items()
    }


@final
@attrs.define
class _Conn:
    client: SMTPClient
    pool: ConnectionPool  # where the session goes back to
    mx_level: MXLevel
    tls_level: TLSLevel
    reused: bool
    rcpts: list[str] = attrs.Factory(list)


class _RemoteDelivery:
    def __init__(self, target: RemoteTarget, meta: MsgMetadata, mail_from: str) -> None:
        self._target = target
        self._meta = meta
        self._mail_from = mail_from
        self._policies: PolicyDelivery = target.policies.start(meta)
        self._conns: dict[str, _Conn] = {}
        self._failed: dict[str, SMTPError] = {}  # a domain's MX failed: its other rcpts too

    async def add_rcpt(self, rcpt_to: str) -> None:
        domain = _domain(rcpt_to)
        if domain in self._failed:
            raise self._failed[domain]
        conn = self._conns.get(domain)
        if conn is None:
            try:
                conn = await self._connect(domain)
            except SMTPError as exc:
                self._failed[domain] = exc
                raise
            self._conns[domain] = conn
        await conn.client.rcpt(rcpt_to, self._meta.rcpt_opts.get(rcpt_to))
        conn.rcpts.append(rcpt_to)

    async def _connect(self, domain: str) -> _Conn:
        literal = _literal(domain)
        hosts: tuple[str, ...]
        if literal is not None:
            hosts, dnssec = (literal,), False
        else:
            await self._policies.prepare_domain(domain)
            hosts, dnssec = await self._target.mx_hosts(domain)
        last: SMTPError | None = None
        for host in hosts:
            try:
                return await self._session(domain, host, dnssec)
            except SMTPError as exc:
                last = exc
        assert last is not None
        raise SMTPError(
            last.code,
            last.enhanced_code,
            f"No usable MX for {domain}: {last.message}",
            target_name=_NAME,
            misc={"domain": domain, **last.misc},
        ) from last

    async def _session(self, domain: str, host: str, dnssec: bool) -> _Conn:
        """A session with MX `host` for `domain`'s recipients, its MAIL FROM accepted: an
        idle one judged as a new one, or a new one when there is none or it proved dead."""
        mx_level = await self._policies.check_mx(domain, host, dnssec)
        conn = await self._attempt(domain, host, mx_level, reuse=True)
        try:
            await self._mail(conn)
        except SMTPError:
            if not conn.reused or conn.client.usable:
                raise
            # The idle session was closed under us (or 421): a new one at once.
            conn = await self._attempt(domain, host, mx_level, reuse=False)
            await self._mail(conn)
        return conn

    async def _mail(self, conn: _Conn) -> None:
        """MAIL FROM on `conn` (RSET first if it is reused); on failure the session goes
        back to its pool."""
        try:
            _require_tls(self._meta, conn)
            options = attrs.evolve(self._meta.smtp_opts, auth=None)
            await conn.client.mail(self._mail_from, options, reset=conn.reused)
        except BaseException:
            await conn.pool.release(conn.client)
            raise

    async def _attempt(self, domain: str, host: str, mx_level: MXLevel, *, reuse: bool) -> _Conn:
        """A session with MX `host` (an idle one if `reuse`), judged by `check_conn`."""
        await self._policies.prepare_conn(host)
        port = self._target.port
        upstreams = [
            Upstream(text=f"tcp://{host}:{port}", host=ip, port=port, tls_name=host)
            for ip in await self._target.addresses(host)
        ]
        idle = await self._idle(upstreams) if reuse else None
        client, attempt = idle or await self._open(host, upstreams)
        pool = self._target.pool(attempt)
        reached = attempt if client.connection.tls else TLSLevel.TLS_NONE
        state = TLSState(
            server_name=host,
            peer_certificates=client.peer_certificates,
            handshake_complete=client.connection.tls,
        )
        try:
            tls_level = await self._policies.check_conn(mx_level, reached, domain, host, state)
        except BaseException:
            await pool.release(client)
            raise
        return _Conn(client, pool, mx_level, tls_level, reused=idle is not None)

    async def _idle(self, upstreams: list[Upstream]) -> tuple[SMTPClient, TLSLevel] | None:
        """An idle session with one of the MX's addresses, and the TLS attempt that
        opened it, or None."""
        for upstream in upstreams:
            for attempt in _ATTEMPTS:
                client = await self._target.pool(attempt).take(upstream)
                if client is not None:
                    return client, attempt
        return None

    async def _open(self, host: str, upstreams: list[Upstream]) -> tuple[SMTPClient, TLSLevel]:
        """A new session with MX `host` at the best TLS level it allows, trying each of
        its addresses in turn, and the TLS attempt that opened it."""
        last: SMTPError | None = None
        for upstream in upstreams:
            try:
                return await self._open_at(upstream)
            except SMTPError as exc:
                last = exc
        if last is None:
            raise SMTPError(451, (4, 4, 4), f"MX {host} has no address", target_name=_NAME)
        raise last

    async def _open_at(self, upstream: Upstream) -> tuple[SMTPClient, TLSLevel]:
        for attempt in _ATTEMPTS:
            try:
                client = await SMTPClient.connect(upstream, self._target.pool(attempt).settings)
            except SMTPError as exc:
                if exc.enhanced_code != (4, 7, 5) or attempt is TLSLevel.TLS_NONE:
                    raise  # not a TLS failure: another level will not help
                continue
            return client, attempt
        raise AssertionError("unreachable: the last attempt raises or returns")

    async def body(self, header: Header, body: Buffer) -> None:
        failures: list[SMTPError] = []

        def note(rcpt: str, err: SMTPError | None) -> None:
            if err is not None:
                failures.append(err)

        await self._send(header, body, note)
        if failures:
            raise failures[0]

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        await self._send(header, body, c.set_status)

    async def _send(self, header: Header, body: Buffer, status: _Status) -> None:
        for conn in self._conns.values():
            error: SMTPError | None = None
            try:
                await conn.client.data(header, body)
            except SMTPError as exc:
                error = exc
            for rcpt in conn.rcpts:
                status(rcpt, error)

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        self._policies.reset(None)
        # Kept idle for the next message to the MX (its RSET drops an aborted transaction).
        await asyncio.gather(*(conn.pool.release(conn.client) for conn in conns))


def _domain(rcpt: str) -> str:
    try:
        _, domain = address.split(rcpt)
    except AddressError as exc:
        raise SMTPError(553, (5, 1, 3), f"Not a valid address: {exc}", target_name=_NAME) from exc
    if not domain:
        raise SMTPError(553, (5, 1, 3), "The recipient has no domain", target_name=_NAME)
    return domain.lower()


def _literal(domain: str) -> str | None:
    """The address of an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), or None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    text = domain[1:-1]
    text = text[5:] if text.lower().startswith("ipv6:") else text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise SMTPError(
            553, (5, 1, 3), f"Not an address literal: {domain}", target_name=_NAME
        ) from None


def _require_tls(meta: MsgMetadata, conn: _Conn) -> None:
    if not meta.smtp_opts.require_tls:
        return
    if conn.tls_level < TLSLevel.TLS_AUTHENTICATED:
        raise SMTPError(
            550,
            (5, 7, 30),
            "REQUIRETLS: TLS is unavailable or unauthenticated",
            target_name=_NAME,
            misc={"tls_level": str(conn.tls_level)},
        )
    if conn.mx_level < MXLevel.MX_MTASTS:
        raise SMTPError(
            550,
            (5, 7, 30),
            "REQUIRETLS: the MX record is not authenticated",
            target_name=_NAME,
            misc={"mx_level": str(conn.mx_level)},
        )
