"""Building a pipeline: what it is given is checked once, so that a wrong module, key or
reply is refused when the pipeline is built, never at every message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from mailmodule import address
from mailmodule.errors import AddressError, ConfigError, InterfaceMismatchError, SMTPError
from mailmodule.interfaces import Check, DeliveryTarget, Modifier, Table
from mailmodule.pipeline._checks import CheckSpec, as_spec, name_of
from mailmodule.registry import missing_methods

__all__ = [
    "checked_reply",
    "implementing",
    "listed",
    "modifiers",
    "require",
    "route_key",
    "rule_key",
    "rules",
    "specs",
    "table_pairs",
    "targets",
]

_T = TypeVar("_T")
_V = TypeVar("_V")


def listed(items: Iterable[_T], what: str, key: str) -> tuple[_T, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ConfigError(f"expected a list of {what}, got {type(items).__name__}", key=key)
    return tuple(items)


def require(item: object, interface: type, where: str) -> None:
    missing = missing_methods(item, interface)
    if missing:
        raise InterfaceMismatchError(f"{name_of(item)} ({where})", interface.__name__, missing)


def implementing(items: Iterable[_T], interface: type, key: str) -> tuple[_T, ...]:
    out = listed(items, f"{interface.__name__} modules", key)
    for i, item in enumerate(out):
        require(item, interface, f"{key}[{i}]")
    return out


def specs(checks: Iterable[Check | CheckSpec]) -> tuple[CheckSpec, ...]:
    out = listed(checks, "Check modules or CheckSpecs", "checks")
    for i, check in enumerate(out):
        if not isinstance(check, CheckSpec):
            require(check, Check, f"checks[{i}]")
    return tuple(as_spec(c) for c in out)


def targets(items: Iterable[DeliveryTarget]) -> tuple[DeliveryTarget, ...]:
    return implementing(items, DeliveryTarget, "targets")


def modifiers(items: Iterable[Modifier]) -> tuple[Modifier, ...]:
    return implementing(items, Modifier, "modifiers")


def checked_reply(value: object, key: str) -> SMTPError | None:
    """A rejection reply: an SMTPError with a 4xx or 5xx code, or None.

    A 2xx "rejection" would tell the client its recipient was accepted and then drop it.
    """
    if value is None:
        return None
    if not isinstance(value, SMTPError):
        raise ConfigError(f"expected an SMTPError, got {value!r}", key=key)
    if not 400 <= value.code <= 599 or value.enhanced_code[0] not in (4, 5, -1, 0):
        raise ConfigError(
            f"a rejection needs a 4xx or 5xx reply with enhanced class 4 or 5, got '{value}'",
            key=key,
        )
    if value.enhanced_code[0] > 0 and value.enhanced_code[0] != value.code // 100:
        raise ConfigError(
            f"the enhanced code's class must match the reply code, got '{value}'", key=key
        )
    return value


def route_key(addr: str) -> str:
    """The lookup form of an address, as routing compares it (malformed: lower-cased)."""
    try:
        return address.for_lookup(addr)
    except AddressError:
        return addr.lower()


def rule_key(rule: object, key: str, *, null_ok: bool) -> str:
    """The lookup form of a routing rule: an address, a domain, or postmaster.

    `null_ok` admits "", the null sender of a bounce, as a source rule.
    """
    if not isinstance(rule, str):
        raise ConfigError(f"expected an address or a domain, got {rule!r}", key=key)
    if rule == "" and null_ok:
        return rule
    try:
        if "@" in rule or rule.lower() == "postmaster":
            valid = address.is_valid(rule)
            normal = address.for_lookup(rule) if valid else rule
        else:
            valid = address.is_valid_domain(rule)
            normal = address.domain_for_lookup(rule) if valid else rule
    except AddressError:
        valid = False
    if not valid:
        raise ConfigError(
            f"{rule!r} is neither an address, a domain nor postmaster", key=f"{key}[{rule!r}]"
        )
    return normal


def rules(
    mapping: Mapping[str, _V] | None, check: type[_V], key: str, *, null_ok: bool
) -> dict[str, _V]:
    """A routing mapping, keys in lookup form and values of type `check`."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError("expected a mapping of addresses and domains", key=key)
    out: dict[str, _V] = {}
    for rule, value in mapping.items():
        normal = rule_key(rule, key, null_ok=null_ok)
        if not isinstance(value, check):
            raise ConfigError(
                f"expected a {check.__name__}, got {type(value).__name__}", key=f"{key}[{rule!r}]"
            )
        if normal in out and out[normal] is not value:
            raise ConfigError(f"{rule!r} is routed twice (as {normal!r})", key=f"{key}[{rule!r}]")
        out[normal] = value
    return out


def table_pairs(
    pairs: Iterable[tuple[Table, _V]], check: type[_V], key: str
) -> tuple[tuple[Table, _V], ...]:
    out = listed(pairs, f"(table, {check.__name__}) pairs", key)
    for i, entry in enumerate(out):
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ConfigError(f"expected a (table, {check.__name__}) pair, got {entry!r}", key=key)
        require(entry[0], Table, f"{key}[{i}]")
        if not isinstance(entry[1], check):
            raise ConfigError(
                f"expected a {check.__name__}, got {type(entry[1]).__name__}", key=f"{key}[{i}]"
            )
    return out
