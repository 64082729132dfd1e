"""The endpoint "openmetrics": a server's metrics over HTTP, for Prometheus to scrape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import ClassVar, Final, final

from prometheus_client import CONTENT_TYPE_LATEST

from mailmodule.config import ConfigMap, Setting
from mailmodule.endpoint._listen import ListenAddress, bind_socket, socket_address
from mailmodule.errors import ConfigError
from mailmodule.metrics import Metrics

__all__ = ["OpenMetricsEndpoint"]

_log = logging.getLogger("mailmodule.endpoint")

#: The most a request's line and header may take; more is refused with 431.
_MAX_HEAD: Final = 8192
#: Seconds a client has to send its request, and to read the answer.
_TIMEOUT: Final = 10.0
#: Scrapes served at once; more connections are closed unanswered.
_MAX_CLIENTS: Final = 16
_PATHS: Final = frozenset({"/metrics", "/"})


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@final
class OpenMetricsEndpoint:
    """The "openmetrics" endpoint (maddy's name): `GET /metrics` answers with the server's
    `Metrics` in the Prometheus text format.

    Built as `OpenMetricsEndpoint(mod_name, addrs)` (the seed's endpoint factory) with
    "host:port", "tcp://host:port" or "unix:///path" addresses (no TLS: keep it on
    loopback or behind a proxy); whoever composes the server sets `metrics`. One request
    per connection, HTTP/1.0 or 1.1, GET or HEAD; a request head over 8 KiB is refused
    (431), a client that does not send it within 10 seconds is dropped, and at most 16
    scrapes are served at once.

    Raises:
        ConfigError: a malformed or TLS listening address (key "listen"); any setting
            (this endpoint takes none).
    """

    #: No settings beyond `type` and `listen`.
    SETTINGS: ClassVar[tuple[Setting[object], ...]] = ()

    def __init__(self, mod_name: str, addrs: Sequence[str]) -> None:
        self._name = mod_name
        self.addrs = list(addrs)
        self.metrics = Metrics()
        self._servers: list[asyncio.AbstractServer] = []
        self._owned_paths: list[str] = []
        self._clients = 0

    def init(self, cfg: ConfigMap) -> None:
        """Check the listening addresses.

        Raises:
            ConfigError: naming the address (key "listen").
        """
        cfg.declare(self.SETTINGS)
        self._addresses()

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._name

    def _addresses(self) -> list[ListenAddress]:
        addrs = []
        for text in self.addrs:
            try:
                addr = ListenAddress.parse(text)
            except ConfigError as exc:
                raise ConfigError(exc.message, module=self._name, key="listen") from exc
            if addr.tls:
                raise ConfigError(
                    f"{text}: the metrics endpoint speaks plain HTTP only",
                    module=self._name,
                    key="listen",
                )
            addrs.append(addr)
        return addrs

    def bind(self) -> list[socket.socket]:
        """Bind and listen on every address, serving nothing yet (see `SMTPEndpoint.bind`).

        Raises:
            ConfigError: an address cannot be listened on (key "listen").
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

    async def start(self, sockets: Sequence[socket.socket] | None = None) -> list[tuple[str, int]]:
        """Serve on `sockets` (as `bind` gives them), or bind `addrs` first; returns the
        (host, port) of each socket.

        Raises:
            ConfigError: an address cannot be listened on (key "listen").
            RuntimeError: the endpoint is serving already.
        """
        if self._servers:
            raise RuntimeError(f"endpoint {self._name} is serving already")
        socks = self.bind() if sockets is None else list(sockets)
        bound = []
        for sock in socks:
            if sock.family == socket.AF_UNIX:
                server = await asyncio.start_unix_server(self._serve, sock=sock, limit=_MAX_HEAD)
            else:
                server = await asyncio.start_server(self._serve, sock=sock, limit=_MAX_HEAD)
            self._servers.append(server)
            bound.append(socket_address(sock))
        _log.info("%s listening on %s", self._name, bound)
        return bound

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= _MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            async with asyncio.timeout(_TIMEOUT):
                answer = await self._answer(reader)
                writer.write(answer)
                await writer.drain()
        except (TimeoutError, OSError) as exc:
            _log.debug("%s: scrape dropped: %s", self._name, exc)
        finally:
            self._clients -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _response("431 Request Header Fields Too Large", b"request head too large\n")
        except asyncio.IncompleteReadError:
            return b""
        request = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request) != 3 or not request[2].startswith(b"HTTP/1."):
            return _response("400 Bad Request", b"not an HTTP/1 request\n")
        method, target = request[0], request[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"GET or HEAD only\n")
        if target.decode("ascii", "replace") not in _PATHS:
            return _response("404 Not Found", b"the metrics are at /metrics\n")
        answer = _response("200 OK", self.metrics.render(), CONTENT_TYPE_LATEST)
        if method == b"HEAD":
            return answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return answer

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; scrapes under way end within their timeout."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(grace, _TIMEOUT)):
                    await server.wait_closed()
        self._servers.clear()
        for path in self._owned_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._owned_paths.clear()

    def hurry(self) -> None:
        """Nothing to hurry: a scrape ends within its timeout."""

    def close(self) -> None:
        """Stop listening at once."""
        for server in self._servers:
            server.close()
