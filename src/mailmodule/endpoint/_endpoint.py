"""The endpoint modules "smtp", "submission", "submissions" and "lmtp": settings,
listening sockets, a reload of the settings, and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Sequence
from typing import ClassVar, Final, final

from mailmodule.config import ConfigMap
from mailmodule.endpoint import _settings as _s
from mailmodule.endpoint._generation import Generation
from mailmodule.endpoint._limits import SessionCount
from mailmodule.endpoint._listen import ListenAddress, bind_socket, socket_address
from mailmodule.endpoint._openmetrics import OpenMetricsEndpoint
from mailmodule.endpoint._session import Session, Sessions
from mailmodule.endpoint._settings import ENDPOINT_SETTINGS, Settings
from mailmodule.endpoint._tls import ServerTLS, load_error
from mailmodule.errors import ConfigError, DuplicateModuleError, MailModuleError
from mailmodule.interfaces import PlainAuth, TLSLoader
from mailmodule.metrics import Metrics
from mailmodule.pipeline import Pipeline
from mailmodule.registry import Registry, default_registry
from mailmodule.smtp import ServerConfig

__all__ = ["ENDPOINT_KINDS", "SMTPEndpoint", "register_endpoints"]

_log = logging.getLogger("mailmodule.endpoint")

#: The endpoint types this module serves.
ENDPOINT_KINDS: Final = ("smtp", "submission", "submissions", "lmtp")
# The settings a reload carries over from the endpoint that replaces this one.
_RELOADED: Final = (
    "pipeline",
    "metrics",
    "hostname",
    "max_message_size",
    "max_recipients",
    "max_header_size",
    "max_header_fields",
    "buffer_max_memory",
    "buffer_dir",
    "auth",
    "tls",
    "auth_require_tls",
    "auth_required",
    "max_auth_failures",
    "auth_failure_delay",
    "rdns",
    "strict_helo",
    "command_timeout",
    "data_timeout",
    "session_timeout",
    "max_sessions",
    "max_sessions_per_ip",
    "max_errors",
)


@final
class SMTPEndpoint:
    """The "smtp", "submission", "submissions" and "lmtp" endpoints: accept mail and run
    it through a Pipeline.

    Built as `SMTPEndpoint(mod_name, addrs)` (the seed's endpoint factory); `addrs` are
    listening addresses: "tcp://host:port", "host:port", "[::1]:port", "tls://host:port"
    (implicit TLS, RFC 8314), "unix:///path". "submission" requires AUTH before MAIL (530
    5.7.0); "submissions" is submission with implicit TLS on every address; "lmtp" speaks
    LMTP (one reply per recipient after the body). The pipeline is set by whoever composes
    the server (`endpoint.pipeline = ...`), and so are `metrics` (None: not counted).
    `reload` swaps in the settings of another endpoint while this one keeps listening.

    Offered: PIPELINING, 8BITMIME, SMTPUTF8, SIZE, ENHANCEDSTATUSCODES, CHUNKING;
    STARTTLS with a `tls` loader; AUTH PLAIN LOGIN with an `auth` module only (without
    one, AUTH is an unknown command); DSN with `dsn = true`. DSN's parameters are read and
    kept per message and recipient (`MsgMetadata.smtp_opts`, `rcpt_opts`) either way.

    Settings: `SETTINGS` declares each (name, type, default, meaning), as
    `mailmodule modules --describe smtp` and docs/configuration.md show them; each is also
    an attribute of the same name, read when `start` is called. AUTH is checked off the
    event loop. Without `strict_helo`, a HELO name that is neither a domain nor an address
    literal is recorded, and shown in Received only made harmless; control characters in
    it are always refused (501 5.5.4). A body beyond `buffer_max_memory` spills to a
    temporary file in `buffer_dir`.

    Raises:
        ConfigError: an unknown endpoint type; a bad setting (naming its key).
    """

    SETTINGS: ClassVar = ENDPOINT_SETTINGS

    def __init__(self, mod_name: str, addrs: Sequence[str]) -> None:
        if mod_name not in ENDPOINT_KINDS:
            raise ConfigError(f"unknown endpoint {mod_name!r}", module=mod_name)
        self._name = mod_name
        self.addrs = list(addrs)
        self.pipeline = Pipeline()
        self.metrics: Metrics | None = None
        self.hostname = "localhost"
        self.max_message_size = 32 << 20
        self.max_recipients = 1000
        self.max_header_size = 1 << 20
        self.max_header_fields = 1000
        self.buffer_max_memory = 1 << 20
        self.buffer_dir: str | None = None
        self.auth: PlainAuth | None = None
        self.tls: TLSLoader | None = None
        self.auth_require_tls = True
        self.auth_required = mod_name in ("submission", "submissions")
        self.max_auth_failures = 3
        self.auth_failure_delay = 0.5
        self.rdns = True
        self.strict_helo = False
        self.dsn = False
        self.command_timeout = 300.0
        self.data_timeout = 180.0
        self.session_timeout = 1800.0
        self.max_sessions = 1000
        self.max_sessions_per_ip = 100
        self.max_errors = 10
        self._sessions = Sessions(SessionCount(max_total=None, max_per_ip=None))
        self._servers: list[asyncio.AbstractServer] = []
        self._owned_paths: list[str] = []
        self._front: ServerTLS | None = None  # the TLS the implicit-TLS listeners began with

    def init(self, cfg: ConfigMap) -> None:
        """Read the settings (`ENDPOINT_SETTINGS`; see the class docstring).

        Raises:
            ConfigError: a setting is unknown, malformed or out of range, naming its key;
                a listening address is malformed.
        """
        cfg.declare(self.SETTINGS)
        self.hostname = cfg.value(_s.HOSTNAME, self.hostname)
        self.max_message_size = cfg.value(_s.MAX_MESSAGE_SIZE)
        self.max_recipients = cfg.value(_s.MAX_RECIPIENTS)
        self.max_header_size = cfg.value(_s.MAX_HEADER_SIZE)
        self.max_header_fields = cfg.value(_s.MAX_HEADER_FIELDS)
        self.buffer_max_memory = cfg.value(_s.BUFFER_MAX_MEMORY)
        self.buffer_dir = cfg.value(_s.BUFFER_DIR)
        auth = cfg.value(_s.AUTH)
        self.auth = auth if isinstance(auth, PlainAuth) else None
        tls = cfg.value(_s.TLS)
        self.tls = tls if isinstance(tls, TLSLoader) else None
        self.auth_require_tls = cfg.value(_s.AUTH_REQUIRE_TLS)
        self.auth_required = cfg.value(_s.AUTH_REQUIRED, self.auth_required)
        self.max_auth_failures = cfg.value(_s.MAX_AUTH_FAILURES)
        self.auth_failure_delay = cfg.value(_s.AUTH_FAILURE_DELAY).total_seconds()
        self.rdns = cfg.value(_s.RDNS)
        self.strict_helo = cfg.value(_s.STRICT_HELO)
        self.dsn = cfg.value(_s.DSN)
        legacy = cfg.value(_s.TIMEOUT)
        command = cfg.value(_s.COMMAND_TIMEOUT, legacy or _s.COMMAND_TIMEOUT.default)
        self.command_timeout = command.total_seconds()
        self.data_timeout = cfg.value(_s.DATA_TIMEOUT).total_seconds()
        self.session_timeout = cfg.value(_s.SESSION_TIMEOUT).total_seconds()
        self.max_sessions = cfg.value(_s.MAX_SESSIONS)
        self.max_sessions_per_ip = cfg.value(_s.MAX_SESSIONS_PER_IP)
        self.max_errors = cfg.value(_s.MAX_ERRORS)
        for addr in self.addrs:
            ListenAddress.parse(addr)

    def check_tls(self) -> None:
        """Refuse implicit TLS ("tls://" addresses, the "submissions" endpoint) without a
        `tls` loader: such a listener could never complete a handshake.

        Raises:
            ConfigError: naming the address (key "listen", or "tls" for submissions).
        """
        if self.tls is not None:
            return
        for addr in self._addresses():
            if addr.tls or self._name == "submissions":
                raise ConfigError(
                    f'implicit TLS on {addr.text} needs a tls loader (tls = "&name")',
                    module=self._name,
                    key="listen" if addr.tls else "tls",
                )

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._name

    @property
    def sessions_started(self) -> int:
        """Sessions admitted since the endpoint was made."""
        return self._sessions.started

    @property
    def active(self) -> frozenset[Session]:
        """A snapshot of the open sessions."""
        return frozenset(self._sessions.active)

    def _addresses(self) -> list[ListenAddress]:
        try:
            return [ListenAddress.parse(a) for a in self.addrs]
        except ConfigError as exc:
            raise ConfigError(exc.message, module=self._name, key="listen") from exc

    def session_settings(self, generation: Generation | None = None) -> Settings:
        """The settings this endpoint's sessions would read, TLS certificates loaded;
        `generation` counts the sessions that use them (a fresh one by default).

        Raises:
            ConfigError: the certificates do not load (key "tls"), a limit is out of range.
        """
        tls = None
        if self.tls is not None:
            try:
                tls = ServerTLS.load(self.tls.load_certs(), self._name)
            except MailModuleError as exc:
                raise load_error(exc, self._name) from exc
        lmtp = self._name == "lmtp"
        try:
            server = ServerConfig(
                lmtp=lmtp,
                starttls=tls is not None,
                auth=self.auth is not None,
                auth_without_tls=not self.auth_require_tls,
                dsn=self.dsn,
                dsn_parameters=True,  # kept for the queue, also when DSN is not offered
                max_message_size=self.max_message_size,
                max_recipients=self.max_recipients,
                max_errors=self.max_errors,
            )
        except ValueError as exc:
            raise ConfigError(str(exc), module=self._name) from exc
        return Settings(
            name=self._name,
            hostname=self.hostname,
            lmtp=lmtp,
            pipeline=self.pipeline,
            server=server,
            tls=tls,
            auth=self.auth,
            auth_required=self.auth_required,
            rdns=self.rdns,
            strict_helo=self.strict_helo,
            command_timeout=self.command_timeout,
            data_timeout=self.data_timeout,
            session_timeout=self.session_timeout,
            handshake_timeout=min(self.command_timeout, 60.0),
            max_auth_failures=self.max_auth_failures,
            auth_failure_delay=self.auth_failure_delay,
            max_header_size=self.max_header_size,
            max_header_fields=self.max_header_fields,
            buffer_max_memory=self.buffer_max_memory,
            buffer_dir=self.buffer_dir,
            generation=generation if generation is not None else Generation(),
            metrics=self.metrics,
        )

    def bind(self) -> list[socket.socket]:
        """Bind and listen on every address of `addrs`, without serving: one socket per
        address, in order, for `start(sockets)` (in this process or in workers forked
        after). The Unix socket files made here are removed by this endpoint's `stop`.

        Raises:
            ConfigError: an address is malformed or cannot be listened on (key "listen");
                nothing stays bound then.
        """
        sockets: list[socket.socket] = []
        try:
            for addr in self._addresses():
                try:
                    sockets.append(bind_socket(addr))
                except ConfigError as exc:
                    raise ConfigError(exc.message, module=self._name, key="listen") from exc
                if addr.is_unix:
                    self._owned_paths.append(addr.path)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    async def start(
        self,
        sockets: Sequence[socket.socket] | None = None,
        *,
        generation: Generation | None = None,
    ) -> list[tuple[str, int]]:
        """Serve on `sockets` (bound and listening, one per address of `addrs` in order, as
        `bind` gives them: inherited by a worker process, say), or bind `addrs` first.
        `generation` counts the sessions using the modules of these settings.

        Returns the (host, port) each socket listens on ((path, 0) for a Unix socket; port
        0 in an address picks a free port).

        Raises:
            ConfigError: an address cannot be listened on (key "listen"), TLS cannot be set
                up (key "tls"), or `sockets` do not match `addrs`.
            RuntimeError: the endpoint is serving already.
        """
        if self._servers:
            raise RuntimeError(f"endpoint {self._name} is serving already")
        addrs = self._addresses()
        settings = self.session_settings(generation)
        self._sessions.settings = settings
        self._front = settings.tls
        self._sessions.count = SessionCount(
            max_total=self.max_sessions or None, max_per_ip=self.max_sessions_per_ip or None
        )
        self.check_tls()
        owned = sockets is None
        socks = self.bind() if sockets is None else list(sockets)
        if len(socks) != len(addrs):
            raise ConfigError(
                f"{len(addrs)} sockets expected (one per listen address), got {len(socks)}",
                module=self._name,
                key="listen",
            )
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        try:
            for addr, sock in zip(addrs, socks, strict=True):
                implicit = addr.tls or self._name == "submissions"
                factory = functools.partial(Session, self._sessions, implicit_tls=implicit)
                tls = settings.tls.context if implicit and settings.tls is not None else None
                timeout = settings.handshake_timeout if tls is not None else None
                server: asyncio.AbstractServer
                if sock.family == socket.AF_UNIX:
                    server = await loop.create_unix_server(
                        factory, sock=sock, ssl=tls, ssl_handshake_timeout=timeout
                    )
                else:
                    server = await loop.create_server(
                        factory, sock=sock, ssl=tls, ssl_handshake_timeout=timeout
                    )
                self._servers.append(server)
                bound.append(socket_address(sock))
        except BaseException:
            for server in self._servers:
                server.close()
            self._servers.clear()
            if owned:
                for sock in socks:
                    sock.close()
            raise
        _log.info("%s listening on %s", self._name, bound)
        return bound

    def same_listeners(self, other: SMTPEndpoint) -> bool:
        """Whether `other` is of this type and listens where this one does, so that it may
        take over by `reload`."""
        return other.name() == self._name and other.addrs == self.addrs

    def reload(self, other: SMTPEndpoint, settings: Settings) -> None:
        """Take `other`'s settings (as `other.session_settings` gave them) for new sessions,
        and for the next message of those open, while listening on as before; TLS
        handshakes from now on present `settings`' certificates.

        A session keeps its old settings to its end when the new ones would contradict
        what it told the client (another `ServerConfig`: extensions, size limits).

        Raises:
            ValueError: `other` does not listen where this endpoint does.
        """
        if not self.same_listeners(other):
            raise ValueError(f"endpoint {other.name()} {other.addrs} cannot replace {self.addrs}")
        for key in _RELOADED:
            setattr(self, key, getattr(other, key))
        count = self._sessions.count
        count.max_total = self.max_sessions or None
        count.max_per_ip = self.max_sessions_per_ip or None
        if self._front is not None and settings.tls is not None:
            settings.tls.take_over(self._front)
        self._sessions.settings = settings

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; close idle sessions at once with 421 4.3.2; let each message
        whose body is under way finish for up to `grace` seconds, then say 421 4.3.2 to
        it; return when every session is gone."""
        for server in self._servers:
            server.close()
        sessions = self._sessions
        await asyncio.sleep(0)  # connections accepted just now get their sessions
        for session in list(sessions.active):
            session.shutdown()
        if sessions.tasks:
            _, pending = await asyncio.wait(set(sessions.tasks), timeout=grace)
            if pending:
                _log.warning(
                    "%s: %d message(s) still under way after %ss", self._name, len(pending), grace
                )
        while sessions.tasks:
            for session in list(sessions.active):
                session.abort()
            await asyncio.gather(*sessions.tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self._owned_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._owned_paths.clear()

    def hurry(self) -> None:
        """End every session now, messages under way included (aborted, 421 where the
        client can still hear it): what a second stop signal asks. A `stop` under way then
        returns at once."""
        for session in list(self._sessions.active):
            session.abort()

    def close(self) -> None:
        """Stop listening at once (for shutdown paths that cannot await)."""
        for server in self._servers:
            server.close()


def register_endpoints(registry: Registry = default_registry) -> None:
    """Register "smtp", "submission", "submissions", "lmtp" and "openmetrics" in
    `registry` (kept when already there)."""
    kinds: list[tuple[str, type[SMTPEndpoint | OpenMetricsEndpoint]]] = [
        (name, SMTPEndpoint) for name in ENDPOINT_KINDS
    ]
    kinds.append(("openmetrics", OpenMetricsEndpoint))
    for name, factory in kinds:
        try:
            registry.register_endpoint(name, factory)
        except DuplicateModuleError:
            if registry.get_endpoint(name) is not factory:
                raise
