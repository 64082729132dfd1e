"""An SPF evaluation answered from the cache, against a dict lookup of the same answer.

The goal (issue #17): a repeated SPF question costs at most 10x looking its verdict up in
a dict, i.e. a speed ratio of at least 0.1. Ours is `Evaluator.cached` (what `check.spf`
asks first), the baseline `verdicts[key]` for the same key. For information, the second
line times `Evaluator.check_host` (the coroutine the check awaits on a miss) on a hit,
driven without an event loop, as it never suspends then, and the third a full evaluation
from the resolver's cache alone (no verdict kept). The DNS is the loopback test server.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine

from _bench import compare

from mailmodule.dns import Resolver
from mailmodule.modules.spf import Evaluator, SPFResult
from mailmodule.testing.dnsserver import DNSServer

ZONE = """
@        TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.org -all"
_spf     TXT "v=spf1 a:mx.example.org mx ~all"
@        MX  10 mx
mx       A   198.51.100.1
"""
IP = ipaddress.IPv4Address("198.51.100.1")  # matched only by the include's a: and mx
SENDER = "joe@example.org"


def drive(coroutine: Coroutine[object, object, SPFResult]) -> SPFResult:
    """The value of a coroutine that completes without suspending."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: SPFResult = done.value
        return result
    coroutine.close()
    raise RuntimeError("the evaluation suspended: not answered from the cache")


def main() -> None:
    with DNSServer({"example.org": ZONE}) as server:
        resolver = Resolver(nameservers=["127.0.0.1"], port=server.port)
        evaluator = Evaluator(resolver)
        first = asyncio.run(evaluator.check_host(IP, "example.org", SENDER, helo="mx.test"))
        assert first.result == "pass", first
        # The resolver's cache was filled on another loop; a fresh Evaluator uses it too.
        uncached = Evaluator(resolver, cache_size=0)
        key = (IP, "example.org", SENDER, "mx.test", "unknown")
        verdicts = {key: first}

        def ours() -> object:
            return evaluator.cached(IP, "example.org", SENDER, helo="mx.test")

        def baseline() -> object:
            return verdicts[key]

        compare(
            "SPF verdict from the cache",
            ours,
            baseline,
            baseline_name="a dict lookup of the same verdict",
            number=20000,
            goal="at most 10x a dict lookup (ratio >= 0.1)",
            target=0.1,
        )
        compare(
            "SPF check_host coroutine, verdict cached",
            lambda: drive(evaluator.check_host(IP, "example.org", SENDER, helo="mx.test")),
            baseline,
            baseline_name="a dict lookup of the same verdict",
            number=20000,
            goal="for information",
        )
        compare(
            "SPF full evaluation, DNS answers cached",
            lambda: drive(uncached.check_host(IP, "example.org", SENDER, helo="mx.test")),
            baseline,
            baseline_name="a dict lookup of the same verdict",
            number=2000,
            rounds=5,
            goal="for information",
        )


if __name__ == "__main__":
    main()
