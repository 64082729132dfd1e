"""mailmodule.dns: the shared resolver, against the loopback DNS server of the testing kit."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule.config import ConfigMap
from mailmodule.dns import (
    MX,
    TLSA,
    Answer,
    DNSPermanentError,
    DNSTemporaryError,
    Resolver,
    default_resolver,
    shared_resolver,
)
from mailmodule.errors import ConfigError, ModuleInitError
from mailmodule.registry import Registry
from mailmodule.testing.dnsserver import DNSServer, Query

ZONE = """
@        SOA   ns hostmaster 1 3600 600 86400 60
@        TXT   "v=spf1 " "ip4:192.0.2.0/24 " "-all"
@        MX    20 mx2
@        MX    10 MX1
mx1      A     192.0.2.1
mx1      AAAA  2001:db8::1
mx2      A     192.0.2.2
alias    CNAME mx1
dangling CNAME gone
short 0  A     192.0.2.3
_25._tcp.mx1 TLSA 3 1 1 abababababababababababababababababababababababababababababababab
a.b      TXT   "below an empty non-terminal"
xn--bcher-kva TXT "IDNA"
"""


def resolver_for(
    server: DNSServer, *, timeout: float = 0.3, cache_size: int = 10000, dnssec: bool = False
) -> Resolver:
    return Resolver(
        nameservers=["127.0.0.1"],
        port=server.port,
        timeout=timeout,
        attempts=1,
        cache_size=cache_size,
        dnssec=dnssec,
    )


@pytest.fixture
def zone(dns_server: DNSServer) -> DNSServer:
    dns_server.add_zone(ZONE, origin="example.org")
    return dns_server


async def test_txt_concatenates_the_strings_of_each_record(zone: DNSServer) -> None:
    answer = await resolver_for(zone).txt("example.org")
    assert answer == Answer(
        name="example.org",
        records=(b"v=spf1 ip4:192.0.2.0/24 -all",),
        nxdomain=False,
        authenticated=False,
        ttl=300,
    )


async def test_mx_records_come_sorted_by_preference_and_lower_case(zone: DNSServer) -> None:
    answer = await resolver_for(zone).mx("Example.ORG.")
    assert answer.name == "example.org"
    assert answer.records == (MX(10, "mx1.example.org"), MX(20, "mx2.example.org"))


async def test_null_mx_has_an_empty_exchange(dns_server: DNSServer) -> None:
    dns_server.add_zone("@ MX 0 .", origin="null.test")
    assert (await resolver_for(dns_server).mx("null.test")).records == (MX(0, ""),)


async def test_ip_gives_a_and_aaaa_records(zone: DNSServer) -> None:
    answer = await resolver_for(zone).ip("mx1.example.org")
    assert answer.records == (
        ipaddress.IPv4Address("192.0.2.1"),
        ipaddress.IPv6Address("2001:db8::1"),
    )
    assert (await resolver_for(zone).aaaa("mx2.example.org")).records == ()


async def test_a_cname_is_followed(zone: DNSServer) -> None:
    answer = await resolver_for(zone).a("alias.example.org")
    assert answer.records == (ipaddress.IPv4Address("192.0.2.1"),)


async def test_a_cname_to_a_missing_name_is_nxdomain(zone: DNSServer) -> None:
    assert (await resolver_for(zone).a("dangling.example.org")).nxdomain


async def test_nxdomain_is_an_answer_with_the_soa_minimum_as_ttl(zone: DNSServer) -> None:
    answer = await resolver_for(zone).txt("missing.example.org")
    assert answer == Answer(
        name="missing.example.org", records=(), nxdomain=True, authenticated=False, ttl=60
    )


async def test_nodata_is_an_empty_answer_that_is_not_nxdomain(zone: DNSServer) -> None:
    for name in ("mx1.example.org", "b.example.org"):  # a node, an empty non-terminal
        answer = await resolver_for(zone).txt(name)
        assert (answer.records, answer.nxdomain, answer.ttl) == ((), False, 60)


async def test_ptr_looks_up_the_reverse_name(dns_server: DNSServer) -> None:
    dns_server.add_zone("1 PTR Mail.Example.org.", origin="2.0.192.in-addr.arpa")
    dns_server.add_zone(
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mail.example.org.",
        origin="8.b.d.0.1.0.0.2.ip6.arpa",
    )
    resolver = resolver_for(dns_server)
    v4 = await resolver.ptr(ipaddress.IPv4Address("192.0.2.1"))
    v6 = await resolver.ptr(ipaddress.IPv6Address("2001:db8::1"))
    assert v4.records == v6.records == ("mail.example.org",)
    assert v4.name == "1.2.0.192.in-addr.arpa"


async def test_tlsa_records_are_parsed(zone: DNSServer) -> None:
    answer = await resolver_for(zone).tlsa("_25._tcp.mx1.example.org")
    assert answer.records == (TLSA(usage=3, selector=1, mtype=1, data=b"\xab" * 32),)


async def test_query_gives_rdata_of_any_type(zone: DNSServer) -> None:
    answer = await resolver_for(zone).query("example.org", "soa")
    assert [r.to_text() for r in answer.records] == [
        "ns.example.org. hostmaster.example.org. 1 3600 600 86400 60"
    ]


@pytest.mark.parametrize("rdtype", ["NOPE", "ANY", "AXFR"])
async def test_query_refuses_what_is_not_a_record_type(zone: DNSServer, rdtype: str) -> None:
    with pytest.raises(DNSPermanentError, match=rdtype):
        await resolver_for(zone).query("example.org", rdtype)


async def test_u_labels_are_queried_as_a_labels(zone: DNSServer) -> None:
    answer = await resolver_for(zone).txt("bücher.example.org")
    assert (answer.name, answer.records) == ("xn--bcher-kva.example.org", (b"IDNA",))


@pytest.mark.parametrize(
    "name",
    ["", ".", "a..example.org", "x" * 64 + ".example.org", "a." * 130 + "org", "\u0080.org"],
)
async def test_a_malformed_name_is_a_permanent_error_naming_it(zone: DNSServer, name: str) -> None:
    with pytest.raises(DNSPermanentError) as info:
        await resolver_for(zone).a(name)
    assert info.value.name == name
    assert info.value.rdtype == "A"
    assert zone.queries == ()


def test_any_text_gives_an_answer_or_a_dns_error() -> None:
    with DNSServer({"example.org": ZONE}) as server:

        async def look_up(name: str) -> None:
            try:
                await resolver_for(server).txt(name)
            except (DNSPermanentError, DNSTemporaryError):
                pass

        @settings(max_examples=60)
        @given(name=st.text(max_size=40) | st.from_regex(r"[a-z0-9.-]{1,30}\.example\.org"))
        def look_up_text(name: str) -> None:
            asyncio.run(look_up(name))

        look_up_text()


async def test_a_name_outside_every_zone_is_refused_permanently(zone: DNSServer) -> None:
    with pytest.raises(DNSPermanentError, match="REFUSED"):
        await resolver_for(zone).a("example.net")


async def test_servfail_is_a_temporary_error(zone: DNSServer) -> None:
    zone.fail("mx1.example.org", "SERVFAIL")
    with pytest.raises(DNSTemporaryError, match="SERVFAIL"):
        await resolver_for(zone).a("mx1.example.org")


async def test_no_answer_in_time_is_a_temporary_error(zone: DNSServer) -> None:
    zone.fail("mx1.example.org", "timeout", rdtype="A")
    resolver = resolver_for(zone, timeout=0.1)
    with pytest.raises(DNSTemporaryError, match="in time"):
        await resolver.a("mx1.example.org")
    assert (await resolver.aaaa("mx1.example.org")).records  # only A was broken


async def test_an_unreachable_server_is_a_temporary_error() -> None:
    with DNSServer() as server:
        port = server.port
    resolver = Resolver(nameservers=["127.0.0.1"], port=port, timeout=0.2, attempts=1)
    with pytest.raises(DNSTemporaryError):
        await resolver.a("example.org")


async def test_a_large_answer_comes_over_tcp_after_truncation(dns_server: DNSServer) -> None:
    strings = " ".join(f'"{chr(97 + i) * 250}"' for i in range(8))
    dns_server.add_zone(f"@ TXT {strings}", origin="big.test")
    answer = await resolver_for(dns_server).txt("big.test")
    assert len(answer.records[0]) == 2000
    assert dns_server.queries == (Query("big.test", "TXT", False), Query("big.test", "TXT", True))


# The AD bit


async def test_the_ad_bit_of_the_server_shows_when_dnssec_is_requested(
    dns_server: DNSServer,
) -> None:
    dns_server.add_zone("@ A 192.0.2.9", origin="signed.test", authenticated=True)
    dns_server.add_zone("@ A 192.0.2.8", origin="plain.test")
    resolver = resolver_for(dns_server, dnssec=True)
    assert (await resolver.a("signed.test")).authenticated
    assert not (await resolver.a("plain.test")).authenticated
    assert (await resolver.txt("nothing.signed.test")).authenticated  # negative answers too


async def test_the_ad_bit_is_not_requested_without_dnssec(dns_server: DNSServer) -> None:
    dns_server.add_zone("@ A 192.0.2.9", origin="signed.test", authenticated=True)
    assert not (await resolver_for(dns_server).a("signed.test")).authenticated


# The cache


async def test_a_cached_answer_is_not_asked_again(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    first = await resolver.txt("example.org")
    assert await resolver.txt("EXAMPLE.org.") is first
    assert len(zone.queries) == 1


async def test_negative_answers_are_cached(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    await resolver.a("missing.example.org")
    await resolver.a("missing.example.org")
    await resolver.txt("mx1.example.org")
    await resolver.txt("mx1.example.org")
    assert len(zone.queries) == 2


async def test_an_answer_with_ttl_zero_is_not_cached(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    await resolver.a("short.example.org")
    await resolver.a("short.example.org")
    assert len(zone.queries) == 2


async def test_errors_are_not_cached(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    zone.fail("example.org", "SERVFAIL")
    with pytest.raises(DNSTemporaryError):
        await resolver.txt("example.org")
    zone.heal()
    assert (await resolver.txt("example.org")).records


async def test_the_cache_drops_the_least_recently_used_answer(zone: DNSServer) -> None:
    resolver = resolver_for(zone, cache_size=2)
    await resolver.a("mx1.example.org")
    await resolver.a("mx2.example.org")
    await resolver.a("mx1.example.org")  # used again: mx2 is now the oldest
    await resolver.txt("example.org")
    zone.clear_queries()
    await resolver.a("mx1.example.org")
    await resolver.a("mx2.example.org")
    assert zone.queries == (Query("mx2.example.org", "A", False),)


async def test_cache_size_zero_turns_the_cache_off(zone: DNSServer) -> None:
    resolver = resolver_for(zone, cache_size=0)
    await resolver.a("mx1.example.org")
    await resolver.a("mx1.example.org")
    assert len(zone.queries) == 2


async def test_clear_cache_forgets_every_answer(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    await resolver.a("mx1.example.org")
    resolver.clear_cache()
    await resolver.a("mx1.example.org")
    assert len(zone.queries) == 2


async def test_concurrent_identical_queries_are_sent_once(zone: DNSServer) -> None:
    resolver = resolver_for(zone, cache_size=0)
    answers = await asyncio.gather(*(resolver.mx("example.org") for _ in range(20)))
    assert len(set(answers)) == 1
    assert len(zone.queries) == 1


async def test_a_cancelled_caller_does_not_cancel_the_others(zone: DNSServer) -> None:
    resolver = resolver_for(zone)
    first = asyncio.create_task(resolver.a("mx1.example.org"))
    second = asyncio.create_task(resolver.a("mx1.example.org"))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).records == (ipaddress.IPv4Address("192.0.2.1"),)
    with pytest.raises(asyncio.CancelledError):
        await first


# Configuration and the shared instance


async def test_init_takes_the_dns_table(zone: DNSServer) -> None:
    resolver = Resolver()
    cfg = ConfigMap(
        {
            "nameservers": ["127.0.0.1"],
            "port": zone.port,
            "timeout": "300ms",
            "attempts": 1,
            "cache_size": 5,
            "dnssec": True,
        },
        module="dns",
    )
    resolver.init(cfg)
    assert cfg.unknown_keys() == ()
    assert (await resolver.txt("example.org")).records
    assert resolver.settings.dnssec
    assert resolver.settings.timeout == 0.3


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"nameservers": []}, "nameservers"),
        ({"nameservers": ["not-an-ip"]}, "nameservers"),
        ({"nameservers": [53]}, "nameservers"),
        ({"port": 70000}, "port"),
        ({"port": 0}, "port"),
        ({"timeout": "0s"}, "timeout"),
        ({"attempts": 0}, "attempts"),
        ({"cache_size": -1}, "cache_size"),
        ({"dnssec": "maybe"}, "dnssec"),
    ],
)
def test_init_refuses_bad_settings_naming_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Resolver().init(ConfigMap(settings, module="dns"))
    assert info.value.key == key


def test_shared_resolver_is_the_registry_instance_named_dns() -> None:
    registry = Registry(discover_plugins=False)
    mine = Resolver(nameservers=["127.0.0.1"])
    registry.register_instance(mine, {"nameservers": ["127.0.0.1"], "port": 5300})
    cfg = ConfigMap({}, module="check.x", resolver=registry.get_instance)
    assert shared_resolver(cfg) is mine
    assert mine.settings.port == 5300


def test_shared_resolver_without_a_dns_instance_is_the_process_default() -> None:
    registry = Registry(discover_plugins=False)
    assert shared_resolver(ConfigMap({}, resolver=registry.get_instance)) is default_resolver()
    assert shared_resolver(ConfigMap({})) is default_resolver()


def test_shared_resolver_reports_a_broken_dns_table() -> None:
    registry = Registry(discover_plugins=False)
    registry.register_instance(Resolver(), {"port": "fifty-three"})
    with pytest.raises(ModuleInitError, match="port"):
        shared_resolver(ConfigMap({}, resolver=registry.get_instance))


async def test_an_answer_over_16_kib_is_not_cached(dns_server: DNSServer) -> None:
    strings = " ".join(f'"{"x" * 250}"' for _ in range(70))
    dns_server.add_zone(f"@ TXT {strings}", origin="huge.test")
    resolver = resolver_for(dns_server)
    for _ in range(2):
        assert len((await resolver.txt("huge.test")).records[0]) == 17500
    assert [q.tcp for q in dns_server.queries].count(True) == 2
