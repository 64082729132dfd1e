"""Where an outbound target connects: "tcp://host:port", "tls://host:port", "unix:///path".

>>> Upstream.parse("tls://mx.example.org:465")
Upstream(text='tls://mx.example.org:465', host='mx.example.org', port=465, path='', tls=True)
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, final

import attrs

from mailmodule.errors import ConfigError

__all__ = ["Upstream"]

_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_USAGE: Final = "write tcp://host:port, tls://host:port or unix:///absolute/path"


def _is_host(host: str, *, bracketed: bool) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6 or not bracketed
    except ValueError:
        if bracketed:
            return False
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@final
@attrs.frozen(kw_only=True)
class Upstream:
    """One server an outbound target may deliver to: a TCP `host` and `port` (`tls` for
    implicit TLS from the first byte, RFC 8314), or a Unix socket `path`."""

    text: str
    host: str = ""
    port: int = 0
    path: str = ""
    tls: bool = False
    tls_name: str = ""

    @classmethod
    def parse(cls, text: str, *, key: str = "targets") -> Upstream:
        """Read an upstream address as maddy writes its endpoints.

        Raises:
            ConfigError: not such an address; names `key`.
        """
        if not isinstance(text, str) or not text.isascii() or not text.isprintable():
            raise ConfigError(f"not an upstream address: {text!r} ({_USAGE})", key=key)
        if text.startswith("unix://"):
            path = text.removeprefix("unix://")
            if not path.startswith("/") or "\0" in path:
                raise ConfigError(f"not an upstream address: {text!r} ({_USAGE})", key=key)
            return cls(text=text, path=path)
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in ("tcp", "tls"):
            raise ConfigError(f"not an upstream address: {text!r} ({_USAGE})", key=key)
        bracketed = rest.startswith("[")
        if bracketed:
            host, found, port = rest[1:].partition("]:")
        else:
            host, found, port = rest.rpartition(":")
        ok = found and port.isdigit() and 0 < int(port) <= 65535
        if not ok or not _is_host(host, bracketed=bracketed):
            raise ConfigError(f"not an upstream address: {text!r} ({_USAGE})", key=key)
        return cls(text=text, host=host, port=int(port), tls=scheme == "tls")

    @property
    def server_name(self) -> str:
        """The name a certificate is checked against: `tls_name` when set (an MX host
        name whose address is `host`), else the host ("localhost" for a Unix socket)."""
        return self.tls_name or self.host or "localhost"
