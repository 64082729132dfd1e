"""Fetching DKIM keys through the resolver, each outcome as a `KeyRecord` or `Invalid`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from mailmodule.dns import DNSPermanentError, DNSTemporaryError, Resolver
from mailmodule.modules.dkim._tags import Invalid, KeyRecord, parse_key

__all__ = ["fetch_keys", "key_name"]


def key_name(selector: str, domain: str) -> str:
    """Where the key of `selector` and `domain` is published."""
    return f"{selector}._domainkey.{domain}"


async def _fetch(resolver: Resolver, selector: str, domain: str) -> KeyRecord | Invalid:
    name = key_name(selector, domain)
    try:
        answer = await resolver.txt(name)
    except DNSTemporaryError as exc:
        return Invalid("temperror", f"key lookup failed: {exc}")
    except DNSPermanentError as exc:
        return Invalid("permerror", f"key lookup failed: {exc}")
    if not answer.records:
        return Invalid("permerror", f"no key published at {name}")
    first: Invalid | None = None
    for record in answer.records:  # the first record that reads as a key
        try:
            return parse_key(record)
        except Invalid as exc:
            first = first or exc
    assert first is not None
    return first


async def fetch_keys(
    resolver: Resolver, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], KeyRecord | Invalid]:
    """The keys of the (selector, domain) pairs, looked up concurrently, once each."""
    pairs = list(dict.fromkeys(wanted))
    found = await asyncio.gather(*(_fetch(resolver, s, d) for s, d in pairs))
    return dict(zip(pairs, found, strict=True))
