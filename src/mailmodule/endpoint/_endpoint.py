"""The endpoint modules: "smtp", "submission" and "lmtp", listening on TCP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import ssl
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, final

from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError, DuplicateModuleError
from mailmodule.interfaces import PlainAuth, TLSLoader
from mailmodule.pipeline import Pipeline
from mailmodule.registry import Registry, default_registry

if TYPE_CHECKING:
    from mailmodule.endpoint._protocol import SMTPProtocol

__all__ = ["SMTPEndpoint", "parse_listen_address", "register_endpoints"]

_log = logging.getLogger("mailmodule.endpoint")


def parse_listen_address(text: str) -> tuple[str, int]:
    """ "tcp://127.0.0.1:25", "127.0.0.1:25" or "[::1]:25" as (host, port).

    Raises:
        ConfigError: not such an address.
    """
    rest = text.removeprefix("tcp://")
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"not a listening address: {text!r} (write it like 127.0.0.1:25)")
    return host, int(port)


@final
class SMTPEndpoint:
    """The "smtp", "submission" and "lmtp" endpoints: accept mail and run it through a
    Pipeline.

    Built as `SMTPEndpoint(mod_name, addrs)` (the seed's endpoint factory). Settings:
    `hostname` (greeting and Received fields); `max_message_size` ("32M"); `max_recipients`
    (1000); `auth`, a PlainAuth module (AUTH PLAIN and LOGIN, checked off the event loop);
    `auth_require_tls` (yes: AUTH only after STARTTLS); `tls`, a TLSLoader module (enables
    STARTTLS); `rdns` (yes: reverse DNS of clients); `timeout` ("5m"). "submission"
    requires AUTH before MAIL. The pipeline is set by whoever composes the server
    (`endpoint.pipeline = ...`).
    """

    def __init__(self, mod_name: str, addrs: Sequence[str]) -> None:
        if mod_name not in ("smtp", "submission", "lmtp"):
            raise ConfigError(f"unknown endpoint {mod_name!r}", module=mod_name)
        self._name = mod_name
        self.addrs = list(addrs)
        self.pipeline = Pipeline()
        self.hostname = "localhost"
        self.max_message_size = 32 << 20
        self.max_recipients = 1000
        self.auth: PlainAuth | None = None
        self.tls: TLSLoader | None = None
        self.auth_require_tls = True
        self.auth_required = mod_name == "submission"
        self.rdns = True
        self.timeout = 300.0
        self.buffer_dir: str | None = None
        self.sessions_started = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._cleanups: set[asyncio.Task[None]] = set()
        self.active: set[SMTPProtocol] = set()  # open sessions
        self.changed = asyncio.Event()  # set when a session may have become idle

    def init(self, cfg: ConfigMap) -> None:
        self.hostname = cfg.string("hostname", self.hostname)
        self.max_message_size = cfg.size("max_message_size", self.max_message_size)
        self.max_recipients = cfg.integer("max_recipients", self.max_recipients)
        auth = cfg.module_ref("auth", PlainAuth, None)
        self.auth = auth if isinstance(auth, PlainAuth) else None
        tls = cfg.module_ref("tls", TLSLoader, None)
        self.tls = tls if isinstance(tls, TLSLoader) else None
        self.auth_require_tls = cfg.boolean("auth_require_tls", self.auth_require_tls)
        self.auth_required = cfg.boolean("auth_required", self.auth_required)
        self.rdns = cfg.boolean("rdns", self.rdns)
        self.timeout = cfg.duration("timeout", datetime.timedelta(minutes=5)).total_seconds()
        self.buffer_dir = cfg.string("buffer_dir", None)
        for addr in self.addrs:
            parse_listen_address(addr)

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._name

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        chains = self.tls.load_certs()
        if not chains:
            raise ConfigError("the TLS loader gave no certificate", module=self._name, key="tls")
        contexts = []
        for chain in chains:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(chain.certfile, chain.keyfile)
            contexts.append((_cert_names(chain.certfile), ctx))
        main = contexts[0][1]
        if len(contexts) > 1:
            # The seed: with several chains, serve the one whose names match SNI.
            def pick(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
                for names, ctx in contexts:
                    if server_name and _name_matches(server_name.lower(), names):
                        sock.context = ctx
                        return

            main.sni_callback = pick
        return main

    async def start(self) -> list[tuple[str, int]]:
        """Listen on every address; returns the bound (host, port) pairs (port 0 picks
        a free one).

        Raises:
            ConfigError: an address cannot be listened on, or TLS cannot be set up.
        """
        from mailmodule.endpoint._protocol import LMTPProtocol, SMTPProtocol

        try:
            tls = self._tls_context()
        except (OSError, ssl.SSLError) as exc:
            msg = f"cannot load certificates: {exc}"
            raise ConfigError(msg, module=self._name, key="tls") from exc
        kind = LMTPProtocol if self._name == "lmtp" else SMTPProtocol
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for addr in self.addrs:
            host, port = parse_listen_address(addr)
            try:
                server = await loop.create_server(lambda: kind(self, tls), host, port)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {addr}: {exc}", module=self._name) from exc
            self._servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
        _log.info("%s listening on %s", self._name, bound)
        return bound

    def clean_up(self, coro: Coroutine[object, None, None]) -> None:
        """Run cleanup after a client left (aborting its message); awaited at `stop`."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; let messages under way finish for up to `grace` seconds, then
        say 421 to every session and close it."""
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(s.busy for s in self.active) and loop.time() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), deadline - loop.time())
        if any(s.busy for s in self.active):
            _log.warning("%s: messages still under way after %ss", self._name, grace)
        for session in list(self.active):
            session.shut_down()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await asyncio.sleep(0)  # let connection_lost run for the sessions just closed
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    def close(self) -> None:
        """Stop listening at once (for shutdown paths that cannot await)."""
        for server in self._servers:
            server.close()


def _cert_names(certfile: str) -> set[str]:
    """The DNS names a PEM certificate is for (subjectAltName, else commonName)."""
    try:
        info = ssl._ssl._test_decode_cert(certfile)  # type: ignore[attr-defined]  # the stdlib's own PEM decoder, not in typeshed
    except AttributeError:  # a Python without that private decoder
        _log.warning("cannot read the names of %s: SNI will serve the first chain", certfile)
        return set()
    except (OSError, ssl.SSLError, ValueError):
        return set()
    names = {str(value).lower() for kind, value in info.get("subjectAltName", ()) if kind == "DNS"}
    if not names:
        for rdn in info.get("subject", ()):
            names.update(str(v).lower() for k, v in rdn if k == "commonName")
    return names


def _name_matches(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    head, _, rest = name.partition(".")
    return bool(head and rest) and f"*.{rest}" in names


def register_endpoints(registry: Registry = default_registry) -> None:
    """Register "smtp", "submission" and "lmtp" in `registry` (kept when already there)."""
    for name in ("smtp", "submission", "lmtp"):
        try:
            registry.register_endpoint(name, SMTPEndpoint)
        except DuplicateModuleError:
            if registry.get_endpoint(name) is not SMTPEndpoint:
                raise
