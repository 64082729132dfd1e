"""How a message arrived: `ConnState`, its `TLSState`, and modules' `ModSpecificData`."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Awaitable, Generator, Iterable, Mapping
from typing import Generic, Protocol, TypeVar, final

import attrs

from mailmodule._gojson import JSONValue
from mailmodule.errors import MetadataError

__all__ = ["ConnState", "ModSpecificData", "Resolved", "TLSState"]

_T = TypeVar("_T")


def _bytes_tuple(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


@final
@attrs.frozen(kw_only=True)
class TLSState:
    """A TLS connection's state (Go's `tls.ConnectionState`, the parts mail code needs).

    `peer_certificates` holds the client's certificate chain as DER, leaf first.
    """

    version: str = ""
    cipher: str = ""
    server_name: str = ""
    peer_certificates: tuple[bytes, ...] = attrs.field(
        default=(), converter=_bytes_tuple, repr=False
    )
    handshake_complete: bool = True


@final
@attrs.frozen
class Resolved(Generic[_T]):
    """An awaitable that is already done: `await Resolved(x)` is x, as often as you like.

    For `ConnState.rdns_name` when the name is known up front (tests, metadata read back).
    """

    value: _T

    def __await__(self) -> Generator[None, None, _T]:
        return self.value
        yield  # unreachable: makes this a generator


class _Named(Protocol):
    def name(self) -> str: ...
    def instance_name(self) -> str: ...


@final
class ModSpecificData:
    """Per-module data attached to a connection, each module in its own namespace.

    The twin of maddy's `ModSpecificData`: keyed by the module's `name()`, or by
    `name() + "/" + instance_name()` with `per_instance=True`. Values must be JSON values, as
    they are written to the queue. Safe to use from several threads.

    Keys are names only, so data written to a queue file is found after a restart by the
    module objects of the new process. Unnamed (inline) instances of one module share their
    per-instance key (`name() + "/"`): nothing else about them survives a restart. Whoever
    creates inline modules gives each an instance name derived from where it is configured
    (such as `pipeline.checks[0]`) to keep their data apart. (maddy keys an unnamed
    instance by its address in memory, which no other process can find.)

    Changed in 0.1.0: unnamed instances are no longer keyed by their identity.
    """

    __slots__ = ("_data", "_lock")

    def __init__(self, data: Mapping[str, JSONValue] | None = None) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, JSONValue] = {}
        for key, value in (data or {}).items():
            _check_json(value, f"ModData[{key!r}]")
            self._data[key] = value

    @staticmethod
    def _key(module: _Named, per_instance: bool) -> str:
        if not per_instance:
            return module.name()
        return f"{module.name()}/{module.instance_name()}"

    def set(self, module: _Named, value: JSONValue, *, per_instance: bool = False) -> None:
        """Store `value` for `module`, replacing what was there.

        Raises:
            MetadataError: `value` is not a JSON value.
        """
        key = self._key(module, per_instance)
        _check_json(value, f"ModData[{key!r}]")
        with self._lock:
            self._data[key] = value

    def get(self, module: _Named, *, per_instance: bool = False) -> JSONValue:
        """What `module` (or a module of the same names) stored, or None."""
        key = self._key(module, per_instance)
        with self._lock:
            return self._data.get(key)

    def to_dict(self) -> dict[str, JSONValue]:
        """A snapshot of every module's data."""
        with self._lock:
            return dict(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModSpecificData):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ModSpecificData({self.to_dict()!r})"

    def __reduce__(self) -> tuple[type[ModSpecificData], tuple[dict[str, JSONValue]]]:
        # The lock is not copied or pickled; a copy gets its own.
        return (ModSpecificData, (self.to_dict(),))


def _check_json(value: object, path: str, depth: int = 0) -> None:
    if depth > 64:
        raise MetadataError("value nests too deeply", path=path)
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MetadataError("NaN and infinities are not JSON", path=path)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MetadataError(f"object keys must be strings, got {k!r}", path=path)
            _check_json(v, f"{path}[{k!r}]", depth + 1)
        return
    raise MetadataError(f"{type(value).__name__} is not a JSON value", path=path)


@attrs.define(kw_only=True, eq=True)
class ConnState:
    """How a message arrived: protocol, peer, TLS, authentication.

    `proto` is the RFC 3848 name (ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, ...), "" for a message
    made locally. `hostname` is the HELO/EHLO name; `local_addr` and `remote_addr` are
    "host:port" ("[v6]:port" for IPv6). `rdns_name` is None when reverse DNS does not apply,
    otherwise an awaitable that can be awaited many times (an `asyncio.Future` or `Resolved`)
    giving the PTR name, or None when the lookup failed. `auth_password` never appears in
    `repr`, `str`, logs or JSON. One ConnState may be shared by all messages of a connection.
    """

    proto: str = ""
    hostname: str = ""
    local_addr: str = ""
    remote_addr: str = ""
    tls: TLSState | None = None
    rdns_name: Awaitable[str | None] | None = None
    auth_user: str = ""
    auth_password: str = attrs.field(default="", repr=False)
    mod_data: ModSpecificData = attrs.field(factory=ModSpecificData)

    @property
    def remote_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address of `remote_addr`, or None when it is not an IP address."""
        return _ip_of(self.remote_addr)


def _ip_of(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = addr
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
