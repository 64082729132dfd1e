"""The one DNS resolver every module shares: typed answers, a TTL cache, the AD bit.

    >>> resolver = Resolver(nameservers=["127.0.0.1"], port=5353)  # doctest: +SKIP
    >>> answer = await resolver.mx("example.org")                   # doctest: +SKIP
    >>> answer.records[0].exchange, answer.nxdomain, answer.authenticated  # doctest: +SKIP
    ('mx.example.org', False, False)

Built on dnspython's asyncio resolver. Names may be U-labels or A-labels (converted with
IDNA 2008, UTS 46); a name that cannot be converted is a `DNSPermanentError` naming it.
No search list applies: every name is absolute. Answers are cached by (name, type) for as
long as their TTL says; negative answers (NXDOMAIN, NODATA) too, for the SOA minimum.
Concurrent identical queries share one lookup. A module finds the server's resolver with
`shared_resolver(cfg)` in its `init`.

Errors follow the SPF vocabulary (RFC 7208 section 2.6): a `DNSTemporaryError` (time-out,
SERVFAIL, no server reachable) is a "temperror", a `DNSPermanentError` (a malformed name,
REFUSED, FORMERR, NOTIMP, YXDOMAIN) a "permerror". NXDOMAIN and NODATA are not errors: they
are answers with no records.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import ipaddress
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import ClassVar, Final, Generic, TypeVar, cast, final

import attrs
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TLSA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver
import dns.reversename

from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, MailModuleError

__all__ = [
    "INSTANCE_NAME",
    "MX",
    "TLSA",
    "Answer",
    "DNSError",
    "DNSPermanentError",
    "DNSTemporaryError",
    "Resolver",
    "default_resolver",
    "shared_resolver",
]

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The registry instance name of the server's resolver (the `[dns]` table).
INSTANCE_NAME: Final = "dns"
_MAX_TTL: Final = 86400  # cache nothing longer than a day, whatever a server says
_EDNS_PAYLOAD: Final = 1232
# Memory bounds whatever the answers (TXT answers can reach 64 KiB): a larger answer is
# not cached, and the least recently used go first past the total.
_MAX_ANSWER_BYTES: Final = 16 * 1024
_MAX_CACHE_BYTES: Final = 64 * 1024 * 1024
# Replies that say the query itself is wrong, or that the server will never answer it.
_PERMANENT_RCODES: Final = frozenset({"REFUSED", "FORMERR", "NOTIMP", "YXDOMAIN", "NOTAUTH"})


class DNSError(MailModuleError):
    """Raised when a DNS lookup gives no answer; see the two subclasses.

    `name` is the name queried (as given), `rdtype` the record type ("TXT").
    """

    def __init__(self, message: str, *, name: str, rdtype: str) -> None:
        super().__init__(message, name, rdtype)
        self.message = message
        self.name = name
        self.rdtype = rdtype

    def __str__(self) -> str:
        return f"{self.rdtype} {self.name!r}: {self.message}"


class DNSTemporaryError(DNSError):
    """Raised when a lookup failed for now: a time-out, SERVFAIL, no server reachable.

    SPF and DMARC call this "temperror"; a caller should defer (4xx) or try again later.
    """


class DNSPermanentError(DNSError):
    """Raised when a lookup can never succeed: a malformed or unconvertible name, or a
    server that refuses it (REFUSED, FORMERR, NOTIMP, YXDOMAIN).

    SPF and DMARC call this "permerror"; asking again will not help.
    """


@final
@attrs.frozen(kw_only=True)
class Answer(Generic[T]):
    """What the DNS says about a name and a type.

    `name` is the queried name in A-label form, lower-case, without the trailing dot;
    `records` is empty for NODATA and for NXDOMAIN; `nxdomain` says the name does not
    exist; `authenticated` that the response had the DNSSEC AD bit set (meaningful only
    when the resolver asks for DNSSEC and its server validates); `ttl` is in seconds, as
    received (for a negative answer: the SOA minimum).
    """

    name: str
    records: tuple[T, ...]
    nxdomain: bool
    authenticated: bool
    ttl: int


@final
@attrs.frozen
class MX:
    """An MX record: `exchange` lower-case, without the trailing dot; "" for the null MX
    "." of RFC 7505."""

    preference: int
    exchange: str


@final
@attrs.frozen
class TLSA:
    """A TLSA record (RFC 6698): certificate usage, selector, matching type, data, in the
    record's own order (positional, as the agreed API writes `TLSA(usage, selector,
    mtype, data)`)."""

    usage: int
    selector: int
    mtype: int
    data: bytes


_Key = tuple[str, str]

_NAMESERVERS: Final = Setting.string_list(
    "nameservers", "the name servers' IP addresses", None, default_doc="/etc/resolv.conf's"
)
_PORT: Final = Setting.integer("port", "the name servers' port", 53, minimum=1)
_TIMEOUT: Final = Setting.duration(
    "timeout", "how long one query waits for one server", datetime.timedelta(seconds=5),
    positive=True,
)  # fmt: skip
_ATTEMPTS: Final = Setting.integer("attempts", "tries per server", 2, minimum=1)
_CACHE_SIZE: Final = Setting.integer("cache_size", "answers kept; 0: no cache", 10000, minimum=0)
_DNSSEC: Final = Setting.boolean("dnssec", "set DO and AD, so the AD bit shows", False)


@attrs.define
class _Settings:
    nameservers: tuple[str, ...] | None = None
    port: int = 53
    timeout: float = 5.0
    attempts: int = 2
    cache_size: int = 10000
    dnssec: bool = False


@final
class Resolver:
    """A caching stub resolver: typed lookups, each one `async`.

    Args:
        nameservers: the servers' IP addresses; None reads /etc/resolv.conf (and uses
            127.0.0.1 when it has none).
        port: the servers' port.
        timeout: seconds one query may wait for one server.
        attempts: how many times each server is tried before giving up; a lookup takes
            at most `timeout * attempts * len(nameservers)` seconds.
        cache_size: answers kept (least recently used go first); 0 turns the cache off.
            Whatever the size, an answer over 16 KiB is not kept, and the cache holds
            at most about 64 MiB.
        dnssec: set the DO and AD bits, so that a validating server's AD bit shows in
            `Answer.authenticated`. Without it the AD bit is never requested.

    Callers may assume: every method is safe to call from many tasks at once, on any
    event loop; identical queries under way at the same time are sent once; a cancelled
    caller does not cancel the lookup other callers wait for (it runs on, bounded by the
    time limit above, and its answer is cached).

    Also a module (instance name "dns"): `init(cfg)` takes the same settings from the
    server's `[dns]` table (`timeout` as a duration such as "5s").

    Raises (every lookup): `DNSTemporaryError`, `DNSPermanentError`.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 5.0,
        attempts: int = 2,
        cache_size: int = 10000,
        dnssec: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[_Key, tuple[float, Answer[object], int]]
        self._cache = collections.OrderedDict()
        self._cached_bytes = 0
        self._inflight: dict[
            tuple[asyncio.AbstractEventLoop, _Key], asyncio.Task[Answer[object]]
        ] = {}
        self._configure(
            _Settings(
                nameservers=None if nameservers is None else tuple(nameservers),
                port=port,
                timeout=timeout,
                attempts=attempts,
                cache_size=cache_size,
                dnssec=dnssec,
            )
        )

    def _configure(self, settings: _Settings) -> None:
        if settings.nameservers is None:
            try:
                stub = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                stub = dns.asyncresolver.Resolver(configure=False)
                stub.nameservers = ["127.0.0.1"]
        else:
            stub = dns.asyncresolver.Resolver(configure=False)
            try:
                stub.nameservers = list(settings.nameservers)
            except ValueError as exc:
                raise ConfigError(
                    f"expected IP addresses of name servers: {exc}", key="nameservers"
                ) from exc
        if settings.port != 53 or settings.nameservers is not None:
            stub.port = settings.port
        stub.timeout = settings.timeout
        stub.lifetime = settings.timeout * settings.attempts * max(1, len(stub.nameservers))
        stub.retry_servfail = False
        stub.cache = None
        if settings.dnssec:
            stub.use_edns(0, dns.flags.DO, _EDNS_PAYLOAD)
            stub.flags = dns.flags.RD | dns.flags.AD
        else:
            stub.use_edns(0, 0, _EDNS_PAYLOAD)
        self._stub = stub
        self.settings = settings
        self.clear_cache()

    # Module

    def name(self) -> str:
        return INSTANCE_NAME

    def instance_name(self) -> str:
        return INSTANCE_NAME

    SETTINGS: ClassVar = (_NAMESERVERS, _PORT, _TIMEOUT, _ATTEMPTS, _CACHE_SIZE, _DNSSEC)

    def init(self, cfg: ConfigMap) -> None:
        """Take the settings of a `[dns]` table: `nameservers` (a list of IP addresses),
        `port`, `timeout` (a duration), `attempts`, `cache_size`, `dnssec` (a boolean).

        Raises:
            ConfigError: a setting of the wrong type or out of range; names the key.
        """
        cfg.declare(self.SETTINGS)
        servers = cfg.value(_NAMESERVERS)
        if servers is not None and not servers:
            raise ConfigError("expected at least one name server", module="dns", key="nameservers")
        port = cfg.integer("port", 53, minimum=1)
        if port > 65535:
            raise ConfigError(f"expected a port, got {port}", module="dns", key="port")
        timeout = cfg.duration("timeout", datetime.timedelta(seconds=5), positive=True)
        try:
            self._configure(
                _Settings(
                    nameservers=None if servers is None else tuple(servers),
                    port=port,
                    timeout=timeout.total_seconds(),
                    attempts=cfg.integer("attempts", 2, minimum=1),
                    cache_size=cfg.integer("cache_size", 10000, minimum=0),
                    dnssec=cfg.boolean("dnssec", False),
                )
            )
        except ConfigError as exc:
            raise ConfigError(exc.message, module="dns", key=exc.key) from exc

    # Lookups

    async def txt(self, name: str) -> Answer[bytes]:
        """TXT records, each one's strings concatenated (as SPF, DKIM and DMARC read them)."""
        return await self._lookup(name, "TXT", _txt)

    async def a(self, name: str) -> Answer[ipaddress.IPv4Address]:
        """A records."""
        return await self._lookup(name, "A", _a)

    async def aaaa(self, name: str) -> Answer[ipaddress.IPv6Address]:
        """AAAA records."""
        return await self._lookup(name, "AAAA", _aaaa)

    async def ip(self, name: str) -> Answer[IPAddress]:
        """A and AAAA records together (looked up concurrently), IPv4 first.

        `nxdomain` when either says so; `authenticated` when both are; the smaller TTL.
        """
        v4, v6 = await asyncio.gather(self.a(name), self.aaaa(name))
        records: tuple[IPAddress, ...] = (*v4.records, *v6.records)
        return Answer(
            name=v4.name,
            records=records,
            nxdomain=v4.nxdomain or v6.nxdomain,
            authenticated=v4.authenticated and v6.authenticated,
            ttl=min(v4.ttl, v6.ttl),
        )

    async def mx(self, name: str) -> Answer[MX]:
        """MX records, sorted by preference (equal ones in the order received)."""
        return await self._lookup(name, "MX", _mx)

    async def ptr(self, address: IPAddress) -> Answer[str]:
        """PTR records of `address` (in-addr.arpa or ip6.arpa): names, lower-case, no
        trailing dot."""
        name = dns.reversename.from_address(str(address)).to_text(omit_final_dot=True)
        return await self._lookup(name, "PTR", _ptr)

    async def tlsa(self, name: str) -> Answer[TLSA]:
        """TLSA records (`_25._tcp.mx.example.org`)."""
        return await self._lookup(name, "TLSA", _tlsa)

    async def query(self, name: str, rdtype: str) -> Answer[dns.rdata.Rdata]:
        """Records of any type, as dnspython's rdata.

        Raises:
            DNSPermanentError: also for an unknown or meta `rdtype` (ANY, AXFR).
        """
        try:
            kind = dns.rdatatype.from_text(rdtype)
        except dns.exception.DNSException as exc:
            raise DNSPermanentError("unknown record type", name=name, rdtype=rdtype) from exc
        if dns.rdatatype.is_metatype(kind):
            raise DNSPermanentError("not a record type", name=name, rdtype=rdtype)
        return await self._lookup(name, dns.rdatatype.to_text(kind), _rdata)

    def time_left(self, name: str, rdtype: str) -> float:
        """Seconds until the cached answer for `name` (as `Answer.name` writes it) and
        `rdtype` ("TXT") expires; 0 when none is cached. Asks no server.

        For caches built on answers: what rests on an answer may live as long as this.
        """
        with self._lock:
            entry = self._cache.get((name, rdtype))
        return 0.0 if entry is None else max(0.0, entry[0] - time.monotonic())

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0

    # The cache and the lookups under way

    async def _lookup(
        self, name: str, rdtype: str, convert: Callable[[dns.rdata.Rdata], T]
    ) -> Answer[T]:
        qname, text = _names(name, rdtype)
        key = (text, rdtype)
        cached = self._cached(key)
        if cached is None:
            cached = await self._shared(key, lambda: self._resolve(qname, key, convert))
        return cast("Answer[T]", cached)  # the key's type decides T

    def _cached(self, key: _Key) -> Answer[object] | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._cache[key]
                self._cached_bytes -= entry[2]
                return None
            self._cache.move_to_end(key)
            return entry[1]

    def _store(self, key: _Key, answer: Answer[object]) -> None:
        size = self.settings.cache_size
        ttl = min(answer.ttl, _MAX_TTL)
        cost = _cost(answer)
        if size <= 0 or ttl <= 0 or cost > _MAX_ANSWER_BYTES:
            return
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cached_bytes -= old[2]
            self._cache[key] = (time.monotonic() + ttl, answer, cost)
            self._cached_bytes += cost
            while len(self._cache) > size or self._cached_bytes > _MAX_CACHE_BYTES:
                self._cached_bytes -= self._cache.popitem(last=False)[1][2]

    async def _shared(
        self, key: _Key, start: Callable[[], Coroutine[object, object, Answer[object]]]
    ) -> Answer[object]:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self._inflight.get(slot)
        if task is None:
            task = loop.create_task(start())
            self._inflight[slot] = task
            task.add_done_callback(lambda _: self._inflight.pop(slot, None))
        return await asyncio.shield(task)

    async def _resolve(
        self, qname: dns.name.Name, key: _Key, convert: Callable[[dns.rdata.Rdata], T]
    ) -> Answer[object]:
        name, rdtype = key
        try:
            answer = await self._stub.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = exc.kwargs.get("responses") or {}
            response = responses.get(qname)
            result: Answer[object] = Answer(
                name=name,
                records=(),
                nxdomain=True,
                authenticated=_authenticated(response),
                ttl=_negative_ttl(response),
            )
        except dns.resolver.NoNameservers as exc:
            raise _failure(exc, name, rdtype) from exc
        except dns.resolver.YXDOMAIN as exc:
            raise DNSPermanentError(
                "the name is too long after DNAME", name=name, rdtype=rdtype
            ) from exc
        except dns.exception.Timeout as exc:
            raise DNSTemporaryError("no answer in time", name=name, rdtype=rdtype) from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise DNSTemporaryError(
                str(exc) or type(exc).__name__, name=name, rdtype=rdtype
            ) from exc
        else:
            response = answer.response
            try:
                records: tuple[object, ...] = tuple(convert(r) for r in answer.rrset or ())
            except (ValueError, UnicodeError) as exc:
                raise DNSPermanentError(
                    f"malformed record: {exc}", name=name, rdtype=rdtype
                ) from exc
            if rdtype == "MX":  # sorted once, before it is cached
                records = tuple(sorted(records, key=_preference))
            result = Answer(
                name=name,
                records=records,
                nxdomain=False,
                authenticated=_authenticated(response),
                ttl=_ttl(response),
            )
        self._store(key, result)
        return result


def _cost(answer: Answer[object]) -> int:
    """About the bytes an answer holds in the cache."""
    return (
        200
        + len(answer.name)
        + sum(
            len(r) if isinstance(r, bytes | str) else len(getattr(r, "data", b"")) + 64
            for r in answer.records
        )
    )


@functools.lru_cache(maxsize=4096)
def _converted(name: str) -> tuple[dns.name.Name, str] | str:
    """`name` as an absolute DNS name and its key text, or why it is not a name (kept:
    converting costs more than the cached lookup it leads to)."""
    try:
        qname = _absolute(name, "")
    except DNSPermanentError as exc:
        return exc.message
    return qname, qname.to_text(omit_final_dot=True).lower()


def _names(name: str, rdtype: str) -> tuple[dns.name.Name, str]:
    found = _converted(name)
    if isinstance(found, str):
        raise DNSPermanentError(found, name=name, rdtype=rdtype)
    return found


def _absolute(name: str, rdtype: str) -> dns.name.Name:
    """`name` as an absolute DNS name, U-labels converted to A-labels."""
    text = name.strip()
    if not text or text.startswith(".") or ".." in text:
        raise DNSPermanentError("not a domain name", name=name, rdtype=rdtype)
    try:
        return dns.name.from_text(text, origin=dns.name.root, idna_codec=dns.name.IDNA_2008_UTS_46)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise DNSPermanentError(
            f"not a valid domain name: {exc}", name=name, rdtype=rdtype
        ) from exc


def _failure(exc: dns.resolver.NoNameservers, name: str, rdtype: str) -> DNSError:
    """What every server saying no means: permanent only when each refused the query."""
    errors = exc.kwargs.get("errors") or []
    said = [error for (_server, _tcp, _port, error, _response) in errors]
    text = ", ".join(sorted({str(e) for e in said})) or "no server answered"
    if said and all(isinstance(e, str) and e in _PERMANENT_RCODES for e in said):
        return DNSPermanentError(f"the name servers answered {text}", name=name, rdtype=rdtype)
    return DNSTemporaryError(f"the name servers failed: {text}", name=name, rdtype=rdtype)


def _authenticated(response: dns.message.Message | None) -> bool:
    return response is not None and bool(response.flags & dns.flags.AD)


def _ttl(response: dns.message.Message | None) -> int:
    if not isinstance(response, dns.message.QueryMessage):
        return 0
    try:
        return int(response.resolve_chaining().minimum_ttl)
    except dns.exception.DNSException:
        return 0


def _negative_ttl(response: dns.message.Message | None) -> int:
    return _ttl(response)


def _text(name: dns.name.Name) -> str:
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def _preference(record: object) -> int:
    return record.preference if isinstance(record, MX) else 0


def _txt(rdata: dns.rdata.Rdata) -> bytes:
    assert isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
    return b"".join(rdata.strings)


def _a(rdata: dns.rdata.Rdata) -> ipaddress.IPv4Address:
    assert isinstance(rdata, dns.rdtypes.IN.A.A)
    return ipaddress.IPv4Address(rdata.address)


def _aaaa(rdata: dns.rdata.Rdata) -> ipaddress.IPv6Address:
    assert isinstance(rdata, dns.rdtypes.IN.AAAA.AAAA)
    return ipaddress.IPv6Address(rdata.address)


def _mx(rdata: dns.rdata.Rdata) -> MX:
    assert isinstance(rdata, dns.rdtypes.ANY.MX.MX)
    return MX(rdata.preference, _text(rdata.exchange))


def _ptr(rdata: dns.rdata.Rdata) -> str:
    assert isinstance(rdata, dns.rdtypes.ANY.PTR.PTR)
    return _text(rdata.target)


def _tlsa(rdata: dns.rdata.Rdata) -> TLSA:
    assert isinstance(rdata, dns.rdtypes.ANY.TLSA.TLSA)
    return TLSA(usage=rdata.usage, selector=rdata.selector, mtype=rdata.mtype, data=rdata.cert)


def _rdata(rdata: dns.rdata.Rdata) -> dns.rdata.Rdata:
    return rdata


_default: Resolver | None = None
_default_lock = threading.Lock()


def default_resolver() -> Resolver:
    """The process-wide resolver built from /etc/resolv.conf (made on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Resolver()
        return _default


def shared_resolver(cfg: ConfigMap) -> Resolver:
    """The resolver a module should use, for its `init(cfg)`.

    The server's resolver (configured by the `[dns]` table, registered as the instance
    "dns") when the module's registry has one; else the process-wide default built from
    /etc/resolv.conf. Reads no key of `cfg`.
    """
    found = cfg.instance(INSTANCE_NAME)
    if isinstance(found, Resolver):
        return found
    return default_resolver()
