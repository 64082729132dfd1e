"""RFC 7208 `check_host()`: an SPF record's verdict on a client address.

    result = await check_host(resolver, ip, "example.org", "joe@example.org", helo="mx.test")
    result.result  # "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"

Every mechanism (all, include, a, mx, ptr, ip4, ip6, exists) and modifier (redirect, exp;
others are checked for syntax and ignored), macros with their transformers and delimiters
(c, r and t only in explanation text), the limit of 10 DNS-querying terms (include, a,
mx, ptr, exists, redirect), of 2 void lookups, of 10 MX records per "mx" (more is a
permerror) and of 10 PTR names per "ptr" or %{p} (the rest are ignored). An IPv4-mapped
IPv6 client is evaluated as the IPv4 client it is. A record is parsed whole before any
of it is evaluated, so a syntax error anywhere is a permerror.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import re
import threading
import time
from collections.abc import Sequence
from typing import Final, Literal, final

import attrs

from mailmodule.dns import DNSError, Resolver
from mailmodule.modules.spf._macro import (
    MacroString,
    SyntaxProblem,
    ends_with_macro,
    expand,
    parse_macro_string,
)

__all__ = ["Evaluator", "SPFResult", "check_host"]

Result = Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOOKUP_LIMIT: Final = 10
_VOID_LIMIT: Final = 2
_MX_LIMIT: Final = 10
_PTR_LIMIT: Final = 10
_QUALIFIERS: Final[dict[str, Result]] = {
    "+": "pass",
    "-": "fail",
    "~": "softfail",
    "?": "neutral",
}
_MODIFIER: Final = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)", re.DOTALL)
_MECHANISM: Final = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9._-]*)(.*)", re.DOTALL)
_CIDR4: Final = r"(?:0|[1-9][0-9]?)"
_CIDR6: Final = r"(?:0|[1-9][0-9]{0,2})"
_DUAL_CIDR: Final = re.compile(rf"(.*?)(?:/({_CIDR4}))?(?://({_CIDR6}))?", re.DOTALL)
_TOPLABEL: Final = re.compile(
    r".*\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\.?",
    re.DOTALL,
)
_LABEL: Final = re.compile(r"[^.]{1,63}")
_VERSION: Final = b"v=spf1"


@final
@attrs.frozen(kw_only=True)
class SPFResult:
    """The verdict: `result`, the `explanation` of a "fail" when the record gives one
    (exp=), and `reason`, what decided it (a mechanism, "default", or what went wrong)."""

    result: Result
    explanation: str | None = None
    reason: str = ""


class _Abort(Exception):
    """Ends the evaluation with `result` (temperror or permerror); never leaves here."""

    def __init__(self, result: Result, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@attrs.frozen
class _Mechanism:
    qualifier: Result
    name: str
    domain: MacroString | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128
    text: str = ""


@attrs.frozen
class _Record:
    mechanisms: tuple[_Mechanism, ...]
    redirect: MacroString | None
    exp: MacroString | None


@attrs.define
class _Context:
    resolver: Resolver
    ip: IPAddress
    sender: str
    local: str
    sender_domain: str
    helo: str
    receiver: str
    lookups: int = 0
    voids: int = 0
    #: How long the verdict may be reused: the least time left of the answers it rests
    #: on; 0 when it rests on something else (a DNS error, the time).
    expires_in: float = float("inf")
    #: %{p} by domain, looked up once however often a record or explanation names it.
    validated_name: dict[str, str] = attrs.field(factory=dict)

    def rests_on(self, name: str, rdtype: str) -> None:
        self.expires_in = min(self.expires_in, self.resolver.time_left(name, rdtype))

    def not_reusable(self) -> None:
        self.expires_in = 0.0


async def check_host(
    resolver: Resolver,
    ip: IPAddress,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "unknown",
) -> SPFResult:
    """Evaluate the SPF record of `domain` for a client at `ip`.

    Args:
        resolver: answers every DNS query.
        ip: the client's address; an IPv4-mapped IPv6 address counts as IPv4.
        domain: the domain whose policy applies (the MAIL FROM domain, or the HELO name).
        sender: the MAIL FROM address; "" means `postmaster@<helo>` (RFC 7208 2.4); an
            address without a local part gets "postmaster".
        helo: the HELO/EHLO name (%{h}).
        receiver: this host's name, for %{r} in explanations.

    Never raises for bad data or DNS trouble: those are the "permerror" and "temperror"
    results.
    """
    result, _ = await _evaluate(resolver, ip, domain, sender, helo, receiver)
    return result


async def _evaluate(
    resolver: Resolver, ip: IPAddress, domain: str, sender: str, helo: str, receiver: str
) -> tuple[SPFResult, float]:
    """The verdict, and for how many seconds it may be reused."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not sender:
        sender = f"postmaster@{helo}"
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "", sender
    context = _Context(
        resolver=resolver,
        ip=ip,
        sender=f"{local or 'postmaster'}@{sender_domain}",
        local=local or "postmaster",
        sender_domain=sender_domain,
        helo=helo,
        receiver=receiver,
    )
    try:
        return await _check(context, domain, included=False), context.expires_in
    except _Abort as abort:
        # A temperror is not reused; a permerror rests on the answers as any verdict does.
        reusable = context.expires_in if abort.result == "permerror" else 0.0
        return SPFResult(result=abort.result, reason=abort.reason), reusable


_Key = tuple[IPAddress, str, str, str, str]


@final
class Evaluator:
    """`check_host` with its verdicts kept while the DNS answers they rest on are cached.

    A verdict is kept (in a bounded LRU of `cache_size`) for the least time left of the
    resolver's cached answers it used; never when it rests on a DNS error, on an answer
    the resolver did not cache, or on the time (%{t}); never for a temperror. The key is
    the whole question: client address, domain, sender, HELO name and receiver.

    Callers may assume: safe to use from many tasks (one event loop or several).
    """

    def __init__(self, resolver: Resolver, *, cache_size: int = 10000) -> None:
        self.resolver = resolver
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[_Key, tuple[float, SPFResult]]
        self._cache = collections.OrderedDict()

    def cached(
        self,
        ip: IPAddress,
        domain: str,
        sender: str,
        *,
        helo: str = "",
        receiver: str = "unknown",
    ) -> SPFResult | None:
        """The kept verdict for this question, or None; never asks the DNS."""
        key = (ip, domain, sender, helo, receiver)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return entry[1]

    async def check_host(
        self,
        ip: IPAddress,
        domain: str,
        sender: str,
        *,
        helo: str = "",
        receiver: str = "unknown",
    ) -> SPFResult:
        """As the module's `check_host`, answered from the kept verdicts when it can."""
        found = self.cached(ip, domain, sender, helo=helo, receiver=receiver)
        if found is not None:
            return found
        result, reusable = await _evaluate(self.resolver, ip, domain, sender, helo, receiver)
        if 0 < reusable < float("inf") and self.cache_size > 0:
            with self._lock:
                key = (ip, domain, sender, helo, receiver)
                self._cache[key] = (time.monotonic() + reusable, result)
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return result


def _domain_name(name: str) -> str | None:
    """`name` without a trailing dot if it is a multi-label domain name whose labels fit
    DNS (1 to 63 octets, 253 in all); else None."""
    name = name.removesuffix(".")
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        return None
    if name.startswith("[") or not name.isascii():
        return None
    return name


async def _check(context: _Context, domain: str, *, included: bool) -> SPFResult:
    name = _domain_name(domain)
    if name is None:
        return SPFResult(result="none", reason=f"{domain!r} is not a domain name")
    record = await _record(context, name)
    if record is None:
        return SPFResult(result="none", reason=f"no SPF record at {name}")
    for mechanism in record.mechanisms:
        if await _matches(context, mechanism, name):
            explanation = None
            if mechanism.qualifier == "fail" and not included and record.exp is not None:
                explanation = await _explanation(context, record.exp, name)
            return SPFResult(
                result=mechanism.qualifier, explanation=explanation, reason=mechanism.text
            )
    if record.redirect is not None:
        _count_lookup(context)
        target = await _target(context, record.redirect, name)
        result = await _check(context, target, included=included)
        if result.result == "none":
            raise _Abort("permerror", f"redirect to {target!r} finds no SPF record")
        return result
    return SPFResult(result="neutral", reason="no mechanism matched")


async def _record(context: _Context, domain: str) -> _Record | None:
    try:
        answer = await context.resolver.txt(domain)
    except DNSError as exc:
        raise _Abort("temperror", f"looking up the SPF record of {domain}: {exc}") from exc
    context.rests_on(answer.name, "TXT")
    found = [
        r
        for r in answer.records
        if r[: len(_VERSION)].lower() == _VERSION and r[len(_VERSION) : len(_VERSION) + 1] in b" "
    ]
    if not found:
        return None
    if len(found) > 1:
        raise _Abort("permerror", f"{domain} has {len(found)} SPF records")
    try:
        text = found[0].decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Abort("permerror", f"the SPF record of {domain} is not ASCII") from exc
    try:
        return _parse(text)
    except SyntaxProblem as exc:
        raise _Abort("permerror", f"the SPF record of {domain}: {exc}") from exc


@functools.lru_cache(maxsize=1024)  # a record is a frozen value; parsing costs most
def _parse(text: str) -> _Record:
    mechanisms: list[_Mechanism] = []
    modifiers: dict[str, MacroString] = {}
    for term in text[len(_VERSION) :].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier is not None:
            key, value = modifier[1].lower(), modifier[2]
            if key in ("redirect", "exp"):
                if key in modifiers:
                    raise SyntaxProblem(f"{key}= appears twice")
                modifiers[key] = _domain_spec(value)
            else:
                parse_macro_string(value)  # unknown modifiers are ignored, not their syntax
            continue
        mechanisms.append(_mechanism(term))
    return _Record(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def _domain_spec(text: str) -> MacroString:
    if not text:
        raise SyntaxProblem("an empty domain-spec")
    parts = parse_macro_string(text)
    if not ends_with_macro(parts) and (
        not isinstance(parts[-1], str) or _TOPLABEL.fullmatch(parts[-1]) is None
    ):
        raise SyntaxProblem(f"domain-spec {text!r} must end in a macro or a top-level label")
    return parts


def _mechanism(term: str) -> _Mechanism:
    match = _MECHANISM.fullmatch(term)
    if match is None:
        raise SyntaxProblem(f"unknown term {term!r}")
    qualifier = _QUALIFIERS[match[1] or "+"]
    name, rest = match[2].lower(), match[3]
    if rest and rest[0] not in ":/":
        raise SyntaxProblem(f"unknown mechanism {term!r}")
    if name == "all":
        if rest:
            raise SyntaxProblem(f"'all' takes no argument: {term!r}")
        return _Mechanism(qualifier, name, text=term)
    if name in ("include", "exists", "ptr"):
        if name != "ptr" and not rest.startswith(":"):
            raise SyntaxProblem(f"{name} needs a domain: {term!r}")
        if rest and not rest.startswith(":"):
            raise SyntaxProblem(f"{name} takes no CIDR length: {term!r}")
        domain = _domain_spec(rest[1:]) if rest else None
        return _Mechanism(qualifier, name, domain=domain, text=term)
    if name in ("a", "mx"):
        cidr = _DUAL_CIDR.fullmatch(rest)
        assert cidr is not None  # the pattern matches any text
        spec = cidr[1]
        if spec and not spec.startswith(":"):
            raise SyntaxProblem(f"malformed {name} mechanism: {term!r}")
        cidr4, cidr6 = int(cidr[2] or 32), int(cidr[3] or 128)
        if cidr4 > 32 or cidr6 > 128:
            raise SyntaxProblem(f"CIDR length out of range: {term!r}")
        domain = _domain_spec(spec[1:]) if spec else None
        return _Mechanism(qualifier, name, domain=domain, cidr4=cidr4, cidr6=cidr6, text=term)
    if name in ("ip4", "ip6"):
        return _Mechanism(qualifier, name, network=_network(name, rest, term), text=term)
    raise SyntaxProblem(f"unknown mechanism {term!r}")


def _network(name: str, rest: str, term: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not rest.startswith(":"):
        raise SyntaxProblem(f"{name} needs an address: {term!r}")
    address, slash, length = rest[1:].partition("/")
    pattern = _CIDR4 if name == "ip4" else _CIDR6
    if slash and re.fullmatch(pattern, length) is None:
        raise SyntaxProblem(f"malformed CIDR length: {term!r}")
    try:
        if name == "ip4":
            network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                (ipaddress.IPv4Address(address), int(length or 32)), strict=False
            )
        else:
            network = ipaddress.IPv6Network(
                (ipaddress.IPv6Address(address), int(length or 128)), strict=False
            )
    except ValueError as exc:
        raise SyntaxProblem(f"malformed {name} network {term!r}: {exc}") from exc
    return network


def _count_lookup(context: _Context) -> None:
    context.lookups += 1
    if context.lookups > _LOOKUP_LIMIT:
        raise _Abort("permerror", f"more than {_LOOKUP_LIMIT} DNS-querying terms")


def _void(context: _Context, empty: bool) -> None:
    if empty:
        context.voids += 1
        if context.voids > _VOID_LIMIT:
            raise _Abort("permerror", f"more than {_VOID_LIMIT} void DNS lookups")


async def _target(context: _Context, spec: MacroString | None, domain: str) -> str:
    """The domain a mechanism names (the current domain when it names none), expanded
    and cut from the left to 253 octets."""
    if spec is None:
        return domain
    name = (await expand(spec, lambda letter: _value(context, letter, domain))).removesuffix(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


async def _matches(context: _Context, mechanism: _Mechanism, domain: str) -> bool:
    ip = context.ip
    name = mechanism.name
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        return mechanism.network is not None and ip in mechanism.network
    _count_lookup(context)
    target = await _target(context, mechanism.domain, domain)
    if name == "include":
        result = await _check(context, target, included=True)
        if result.result in ("temperror", "permerror"):
            raise _Abort(result.result, result.reason)
        if result.result == "none":
            raise _Abort("permerror", f"include:{target} finds no SPF record")
        return result.result == "pass"
    if _domain_name(target) is None:
        _void(context, True)  # a malformed name does not exist (RFC 7208 4.8)
        return False
    if name == "a":
        return await _any_address(context, target, mechanism, primary=True)
    if name == "mx":
        return await _mx(context, target, mechanism)
    if name == "exists":
        try:
            answer = await context.resolver.a(target)
        except DNSError as exc:
            raise _Abort("temperror", f"looking up {target}: {exc}") from exc
        context.rests_on(answer.name, "A")
        _void(context, not answer.records)
        return bool(answer.records)
    # ptr
    validated = await _validated_names(context, void_counts=True)
    return any(n == target.lower() or n.endswith("." + target.lower()) for n in validated)


async def _addresses(context: _Context, name: str) -> Sequence[IPAddress]:
    if isinstance(context.ip, ipaddress.IPv4Address):
        v4 = await context.resolver.a(name)
        context.rests_on(v4.name, "A")
        return v4.records
    v6 = await context.resolver.aaaa(name)
    context.rests_on(v6.name, "AAAA")
    return v6.records


async def _any_address(
    context: _Context, name: str, mechanism: _Mechanism, *, primary: bool
) -> bool:
    try:
        records = await _addresses(context, name)
    except DNSError as exc:
        raise _Abort("temperror", f"looking up {name}: {exc}") from exc
    if primary:
        _void(context, not records)
    ip = context.ip
    length = mechanism.cidr4 if isinstance(ip, ipaddress.IPv4Address) else mechanism.cidr6
    return any(ip in ipaddress.ip_network((r, length), strict=False) for r in records)


async def _mx(context: _Context, name: str, mechanism: _Mechanism) -> bool:
    try:
        answer = await context.resolver.mx(name)
    except DNSError as exc:
        raise _Abort("temperror", f"looking up the MX of {name}: {exc}") from exc
    context.rests_on(answer.name, "MX")
    _void(context, not answer.records)
    if len(answer.records) > _MX_LIMIT:
        raise _Abort("permerror", f"{name} has more than {_MX_LIMIT} MX records")
    for record in answer.records:
        if record.exchange and await _any_address(
            context, record.exchange, mechanism, primary=False
        ):
            return True
    return False


async def _validated_names(context: _Context, *, void_counts: bool) -> list[str]:
    """The PTR names of the client that resolve back to it (the first 10 looked at); DNS
    errors make a name, or all, not validated."""
    try:
        answer = await context.resolver.ptr(context.ip)
    except DNSError:
        context.not_reusable()
        return []
    context.rests_on(answer.name, "PTR")
    if void_counts:
        _void(context, not answer.records)
    validated = []
    for name in answer.records[:_PTR_LIMIT]:
        try:
            if context.ip in await _addresses(context, name):
                validated.append(name)
        except DNSError:
            context.not_reusable()
            continue
    return validated


async def _explanation(context: _Context, spec: MacroString, domain: str) -> str | None:
    """The expanded exp= text, or None when anything about it fails (RFC 7208 6.2)."""
    target = await _target(context, spec, domain)
    if _domain_name(target) is None:
        return None
    try:
        answer = await context.resolver.txt(target)
    except DNSError:
        context.not_reusable()
        return None
    context.rests_on(answer.name, "TXT")
    if len(answer.records) != 1:
        return None
    try:
        parts = parse_macro_string(answer.records[0].decode("ascii"), explanation=True)
    except (UnicodeDecodeError, SyntaxProblem):
        return None
    return await expand(parts, lambda letter: _value(context, letter, domain))


async def _value(context: _Context, letter: str, domain: str) -> str:
    """The value of a macro letter (RFC 7208 section 7.2)."""
    ip = context.ip
    if letter == "s":
        return context.sender
    if letter == "l":
        return context.local
    if letter == "o":
        return context.sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if isinstance(ip, ipaddress.IPv4Address):
            return str(ip)
        return ".".join(ip.exploded.replace(":", ""))
    if letter == "v":
        return "in-addr" if isinstance(ip, ipaddress.IPv4Address) else "ip6"
    if letter == "h":
        return context.helo
    if letter == "c":
        return str(ip)
    if letter == "r":
        return context.receiver
    if letter == "t":
        context.not_reusable()
        return str(int(time.time()))
    # p: a validated name, preferring the domain itself, then its subdomains
    domain = domain.lower()
    known = context.validated_name.get(domain)
    if known is not None:
        return known
    names = await _validated_names(context, void_counts=False)
    below = [n for n in names if n.endswith("." + domain)]
    found = domain if domain in names else (below or names or ["unknown"])[0]
    context.validated_name[domain] = found
    return found
