"""Listening addresses ("tcp://host:port", "unix:///path", "tls://...") and their sockets."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import stat
from typing import Final, final

import attrs

from mailmodule.errors import ConfigError

__all__ = ["ListenAddress", "bind_socket", "parse_listen_address", "socket_address"]

#: Pending connections the kernel keeps per listening socket.
BACKLOG: Final = 512
_SCHEMES: Final = ("tcp://", "tls://", "unix://")
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_host(host: str, *, bracketed: bool) -> bool:
    """Whether `host` is an IP address (IPv6 when written in brackets) or a host name."""
    try:
        return ipaddress.ip_address(host).version == 6 or not bracketed
    except ValueError:
        if bracketed:
            return False
    name = host.removesuffix(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@final
@attrs.frozen(kw_only=True)
class ListenAddress:
    """Where an endpoint listens: a TCP `host` and `port`, or a Unix socket `path`.

    `tls` is true for "tls://host:port": TLS from the first byte (RFC 8314 implicit TLS),
    whatever the endpoint type.
    """

    text: str
    host: str = ""
    port: int = 0
    path: str = ""
    tls: bool = False

    @property
    def is_unix(self) -> bool:
        """Whether this is a Unix socket."""
        return bool(self.path)

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """Read "tcp://127.0.0.1:25", "127.0.0.1:25", "[::1]:25", "tls://0.0.0.0:465" or
        "unix:///run/mailmodule/lmtp.sock".

        Raises:
            ConfigError: not such an address (key "listen").
        """
        if text.startswith("unix://"):
            path = text.removeprefix("unix://")
            if not path.startswith("/"):
                raise ConfigError(
                    f"not a listening address: {text!r} (write unix:///absolute/path)",
                    key="listen",
                )
            return cls(text=text, path=path)
        tls = text.startswith("tls://")
        rest = text.removeprefix("tls://").removeprefix("tcp://")
        if "://" in rest:
            raise ConfigError(
                f"not a listening address: {text!r} (schemes: {', '.join(_SCHEMES)})",
                key="listen",
            )
        bracketed = rest.startswith("[")
        if bracketed:
            host, sep, port = rest[1:].partition("]:")
        else:
            host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(
                f"not a listening address: {text!r} (write it like 127.0.0.1:25)", key="listen"
            )
        if not _is_host(host, bracketed=bracketed):
            raise ConfigError(
                f"not a listening address: {text!r} ({host!r} is neither an IP address nor a "
                "host name)",
                key="listen",
            )
        return cls(text=text, host=host, port=int(port), tls=tls)


def parse_listen_address(text: str) -> tuple[str, int]:
    """ "tcp://127.0.0.1:25", "127.0.0.1:25", "[::1]:25" or "tls://host:port" as (host,
    port); see `ListenAddress.parse` for Unix sockets too.

    Raises:
        ConfigError: not such an address, or a Unix socket.
    """
    addr = ListenAddress.parse(text)
    if addr.is_unix:
        raise ConfigError(f"not a TCP address: {text!r}", key="listen")
    return addr.host, addr.port


def bind_socket(addr: ListenAddress) -> socket.socket:
    """A socket bound to `addr` and listening, not yet served.

    A TCP host name is resolved and its first address used; an IPv6 socket takes IPv6
    only. A Unix socket replaces a stale socket file at its path (never another kind of
    file).

    Raises:
        ConfigError: the address cannot be resolved or bound (key "listen").
    """
    try:
        if addr.is_unix:
            return _bind_unix(addr.path)
        infos = socket.getaddrinfo(
            addr.host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, sockaddr = infos[0]
        return socket.create_server(sockaddr[:2], family=family, backlog=BACKLOG)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {addr.text}: {exc}", key="listen") from exc


def _bind_unix(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by a server that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def socket_address(sock: socket.socket) -> tuple[str, int]:
    """(host, port) of a listening TCP socket; (path, 0) of a Unix socket."""
    name = sock.getsockname()
    if isinstance(name, tuple):
        return str(name[0]), int(name[1])
    return str(name), 0
