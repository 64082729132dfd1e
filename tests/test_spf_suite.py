"""The openspf RFC 7208 test suite (tests/data/spf/) against `check_host`, every scenario's
zone data served by the loopback DNS server and queried through `mailmodule.dns.Resolver`.

The suite's driver conventions (pyspf's test/testspf.py) are kept: an SPF (type 99)
record stands for a TXT record too when its name has no TXT entry, TXT "NONE" means no TXT
record, TIMEOUT makes the types without records time out, and a missing explanation is
"DEFAULT". Every case runs; the one difference is listed in CASE_INSENSITIVE_EXPLANATION.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
import yaml

from mailmodule.dns import Resolver
from mailmodule.modules.spf import check_host
from mailmodule.testing.dnsserver import DNSServer

SUITE = Path(__file__).parent / "data" / "spf" / "rfc7208-tests.yml"
SCENARIOS: list[dict[str, object]] = list(yaml.safe_load_all(SUITE.read_text()))
_TYPES = ("A", "AAAA", "MX", "PTR", "TXT", "SPF", "CNAME")

#: Cases whose explanation is compared ignoring case, with the reason.
CASE_INSENSITIVE_EXPLANATION: dict[str, str] = {
    "v-macro-ip6": "the suite expects %{i} of an IPv6 client in upper-case nibbles; RFC 7208"
    " (section 7.4's examples) writes them lower-case, as we do; DNS names match either way",
}


def cases() -> Iterator[object]:
    for index, scenario in enumerate(SCENARIOS):
        tests = scenario["tests"]
        assert isinstance(tests, dict)
        for name, case in tests.items():
            yield pytest.param(index, name, case, id=name)


def _strings(value: object) -> list[bytes]:
    items = value if isinstance(value, list) else [value]
    raw = [str(item).encode("utf-8") for item in items] or [b""]
    # One string holds at most 255 octets: a longer one is split, as zone files do.
    return [s[i : i + 255] for s in raw for i in range(0, max(len(s), 1), 255)]


def absolute(name: object) -> str:
    text = str(name)
    return text if text.endswith(".") else text + "."


def serve(server: DNSServer, scenario: dict[str, object]) -> None:
    """Serve the scenario's zone data, as the suite's driver reads it."""
    server.add_zone("", origin=".")
    server.heal()
    zonedata = scenario.get("zonedata") or {}
    assert isinstance(zonedata, dict)
    for name, entries in zonedata.items():
        owner = absolute(name)
        # Types with records (a TXT "NONE" has none, but stops the SPF-to-TXT copy).
        kinds = {k for e in entries if isinstance(e, dict) for k, v in e.items() if v != "NONE"}
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        timeout = False
        for entry in entries:
            if entry == "TIMEOUT":
                timeout = True
                continue
            ((kind, value),) = entry.items()
            if kind in ("TXT", "SPF"):
                if value == "NONE":
                    continue
                rdtype = dns.rdatatype.from_text(kind)
                rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, rdtype, _strings(value))
                server.add_record(owner, kind, rdata)
                if kind == "SPF" and not has_txt:
                    txt = dns.rdtypes.ANY.TXT.TXT(
                        dns.rdataclass.IN, dns.rdatatype.TXT, _strings(value)
                    )
                    server.add_record(owner, "TXT", txt)
            elif kind == "MX":
                preference, host = value
                server.add_record(owner, "MX", f"{preference} {absolute(host)}")
            elif kind in ("PTR", "CNAME"):
                server.add_record(owner, kind, absolute(value))
            else:
                server.add_record(owner, kind, str(value))
        if timeout:
            have = kinds | ({"TXT"} if "SPF" in kinds and not has_txt else set())
            for kind in _TYPES:
                if kind not in have:
                    server.fail(owner, "timeout", rdtype=kind)


@pytest.fixture(scope="module")
def suite_server() -> Iterator[DNSServer]:
    with DNSServer() as server:
        yield server


@pytest.mark.parametrize(("scenario", "name", "case"), list(cases()))
def test_the_rfc7208_suite(
    suite_server: DNSServer, scenario: int, name: str, case: dict[str, object]
) -> None:
    serve(suite_server, SCENARIOS[scenario])
    resolver = Resolver(nameservers=["127.0.0.1"], port=suite_server.port, timeout=0.2, attempts=1)
    mailfrom = str(case["mailfrom"])
    helo = str(case["helo"])
    domain = mailfrom.rpartition("@")[2] if mailfrom else helo
    ip = ipaddress.ip_address(str(case["host"]))
    result = asyncio.run(check_host(resolver, ip, domain, mailfrom, helo=helo))
    expected = case["result"]
    allowed = expected if isinstance(expected, list) else [expected]
    assert result.result in allowed, result.reason
    if "explanation" in case:
        explanation, wanted = result.explanation or "DEFAULT", str(case["explanation"])
        if name in CASE_INSENSITIVE_EXPLANATION:
            explanation, wanted = explanation.casefold(), wanted.casefold()
        assert explanation == wanted
