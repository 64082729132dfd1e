"""check.spf through a real pipeline, its evaluator's edges, and macros; DNS from the
loopback server of the testing kit."""

from __future__ import annotations

import asyncio
import ipaddress

import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import ConnState, Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.config import ConfigMap
from mailmodule.dns import Resolver
from mailmodule.errors import ConfigError, ModuleInitError
from mailmodule.interfaces import Check
from mailmodule.modules.spf import Evaluator, SPFCheck, check_host
from mailmodule.modules.spf._macro import SyntaxProblem, expand, parse_macro_string
from mailmodule.pipeline import Destination, Pipeline
from mailmodule.registry import Registry
from mailmodule.testing import CheckSuite
from mailmodule.testing.dnsserver import DNSServer
from tests.modules_kit import build, new_registry
from tests.pipeline_kit import MemoryTarget

ZONE = """
@            TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all exp=why.%{d}"
why          TXT "%{i} may not send for %{d}"
soft         TXT "v=spf1 ~all"
broken       TXT "v=spf1 ip4:192.0.2.300 -all"
mx.example.org. TXT "v=spf1 a -all"
mx           A   192.0.2.25
badhelo      TXT "v=spf1 -all"
"""
GOOD = "192.0.2.10"
BAD = "198.51.100.7"


@pytest.fixture
def zone(dns_server: DNSServer) -> DNSServer:
    dns_server.add_zone(ZONE, origin="example.org")
    dns_server.add_zone('@ TXT "v=DMARC1; p=reject"', origin="_dmarc.example.org")
    dns_server.add_zone('@ TXT "v=spf1 -all"', origin="nodmarc.test")
    return dns_server


def spf_pipeline(
    server: DNSServer, target: MemoryTarget, **settings: object
) -> tuple[Pipeline, SPFCheck]:
    registry = new_registry()
    registry.register_instance(
        Resolver(), {"nameservers": ["127.0.0.1"], "port": server.port, "timeout": "300ms"}
    )
    check = build(registry, "check.spf", "spf", settings)
    assert isinstance(check, SPFCheck)
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]), hostname="mx.test")
    return pipeline, check


async def send(
    pipeline: Pipeline,
    *,
    ip: str,
    mail_from: str,
    helo: str = "mx.example.org",
    from_field: str = "x@nodmarc.test",
    conn: bool = True,
) -> None:
    state = ConnState(proto="ESMTP", hostname=helo, remote_addr=f"[{ip}]:4000") if conn else None
    delivery = await pipeline.start(MsgMetadata(id="m", conn=state), mail_from)
    try:
        await delivery.add_rcpt("rcpt@mx.test")
        await delivery.body(
            Header([("From", from_field), ("Subject", "x")]), MemoryBuffer(b"hi\r\n")
        )
    except SMTPError:
        await delivery.abort()
        raise
    await delivery.commit()


def auth_results(target: MemoryTarget) -> str:
    value = Header.parse(target.messages[0].header).get("Authentication-Results")
    assert value is not None
    return " ".join(value.split())


async def test_a_pass_is_reported_with_the_mailfrom_address(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target)
    await send(pipeline, ip=GOOD, mail_from="joe@example.org")
    assert auth_results(target).startswith("mx.test; spf=pass")
    assert "smtp.mailfrom=joe@example.org" in auth_results(target)
    assert not target.messages[0].meta.quarantine


async def test_a_fail_is_quarantined_by_default(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target)
    await send(pipeline, ip=BAD, mail_from="joe@example.org", from_field="x@nodmarc.test")
    assert target.messages[0].meta.quarantine
    assert "spf=fail" in auth_results(target)


async def test_a_rejected_fail_carries_the_domains_explanation(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(zone, MemoryTarget(), fail_action="reject", enforce_early=True)
    with pytest.raises(SMTPError) as info:
        await send(pipeline, ip=BAD, mail_from="joe@example.org")
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 7, 23))
    assert info.value.message == (
        "SPF authentication failed: 198.51.100.7 may not send for example.org"
    )


async def test_a_custom_reply_replaces_the_rejection(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(
        zone, MemoryTarget(), softfail_action="reject 550 5.7.1 Go away", enforce_early=True
    )
    with pytest.raises(SMTPError, match="Go away"):
        await send(pipeline, ip=BAD, mail_from="joe@soft.example.org")


async def test_a_temporary_dns_failure_defers_the_message(zone: DNSServer) -> None:
    zone.fail("example.org", "SERVFAIL", rdtype="TXT")
    pipeline, _ = spf_pipeline(zone, MemoryTarget())
    with pytest.raises(SMTPError) as info:
        await send(pipeline, ip=GOOD, mail_from="joe@example.org")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 7, 24))


async def test_a_broken_record_is_refused_as_permerror(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(zone, MemoryTarget())
    with pytest.raises(SMTPError) as info:
        await send(pipeline, ip=GOOD, mail_from="joe@broken.example.org")
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 7, 24))


async def test_ignored_results_are_still_reported(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target, permerr_action="ignore")
    await send(pipeline, ip=GOOD, mail_from="joe@broken.example.org")
    assert "spf=permerror" in auth_results(target)


async def test_the_null_sender_is_checked_by_its_helo_name(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target)
    await send(pipeline, ip="192.0.2.25", mail_from="", helo="mx.example.org")
    assert "spf=pass" in auth_results(target)
    assert "smtp.helo=mx.example.org" in auth_results(target)


async def test_check_helo_lets_a_helo_fail_decide(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(zone, MemoryTarget(), check_helo=True, fail_action="reject")
    with pytest.raises(SMTPError, match="SPF authentication failed"):
        await send(pipeline, ip=GOOD, mail_from="joe@example.org", helo="badhelo.example.org")


async def test_check_helo_reports_both_identities(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target, check_helo=True)
    await send(pipeline, ip="192.0.2.25", mail_from="joe@example.org")
    results = auth_results(target)
    assert "spf=pass" in results
    assert "smtp.helo=mx.example.org" in results
    assert "smtp.mailfrom=joe@example.org" in results


async def test_a_dmarc_policy_of_the_from_domain_takes_over_the_action(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, check = spf_pipeline(zone, target, fail_action="reject")
    check.dmarc_follows = True
    await send(pipeline, ip=BAD, mail_from="joe@example.org", from_field="Joe <joe@example.org>")
    assert "spf=fail" in auth_results(target)
    assert not target.messages[0].meta.quarantine


async def test_a_dmarc_policy_of_a_parent_domain_counts(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, check = spf_pipeline(zone, target, fail_action="reject")
    check.dmarc_follows = True
    await send(pipeline, ip=BAD, mail_from="joe@example.org", from_field="a@deep.sub.example.org")
    assert "spf=fail" in auth_results(target)


async def test_a_dmarc_policy_does_not_stop_the_action_when_no_dmarc_follows(
    zone: DNSServer,
) -> None:
    target = MemoryTarget()
    pipeline, check = spf_pipeline(zone, target, fail_action="reject")
    assert not check.dmarc_follows
    with pytest.raises(SMTPError, match="SPF authentication failed"):
        await send(pipeline, ip=BAD, mail_from="joe@example.org", from_field="joe@example.org")
    assert target.messages == []


async def test_without_dmarc_the_action_applies_after_the_body(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target, fail_action="reject")
    delivery = await pipeline.start(
        MsgMetadata(id="m", conn=ConnState(hostname="h.test", remote_addr=f"{BAD}:1")),
        "joe@example.org",
    )
    await delivery.add_rcpt("rcpt@mx.test")  # nothing refused before the body
    with pytest.raises(SMTPError, match="SPF authentication failed"):
        await delivery.body(Header([("From", "x@nodmarc.test")]), MemoryBuffer(b"hi\r\n"))
    await delivery.abort()


async def test_enforce_early_refuses_at_mail_from(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(zone, MemoryTarget(), fail_action="reject", enforce_early=True)
    with pytest.raises(SMTPError, match="SPF"):
        await pipeline.start(
            MsgMetadata(id="m", conn=ConnState(hostname="h.test", remote_addr=f"{BAD}:1")),
            "joe@example.org",
        )


async def test_a_local_message_is_not_checked(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target, fail_action="reject")
    await send(pipeline, ip=BAD, mail_from="joe@example.org", conn=False)
    assert target.messages
    assert zone.queries == ()


async def test_a_sender_domain_that_is_no_idn_is_refused(zone: DNSServer) -> None:
    pipeline, _ = spf_pipeline(zone, MemoryTarget())
    with pytest.raises(SMTPError) as info:
        await send(pipeline, ip=GOOD, mail_from="joe@xn--a.example")
    assert info.value.enhanced_code == (5, 1, 7)


async def test_a_message_abandoned_before_the_body_ends_the_lookup(zone: DNSServer) -> None:
    zone.fail("example.org", "timeout")
    pipeline, _ = spf_pipeline(zone, MemoryTarget())
    delivery = await pipeline.start(
        MsgMetadata(id="m", conn=ConnState(hostname="h.test", remote_addr=f"{GOOD}:1")),
        "joe@example.org",
    )
    await delivery.abort()
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if "evaluate" in repr(t.get_coro())]
    assert all(t.cancelled() or t.done() for t in pending)


@pytest.mark.parametrize(
    ("key", "value"),
    [("fail_action", "bounce"), ("temperr_action", "reject 250 2.0.0 fine"), ("check_helo", "x")],
)
def test_bad_settings_are_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ModuleInitError) as info:
        build(new_registry(), "check.spf", "spf", {key: value})
    assert isinstance(info.value.__cause__, ConfigError)
    assert info.value.__cause__.key == key


def test_the_check_uses_the_servers_resolver() -> None:
    registry = Registry(discover_plugins=False)
    resolver = Resolver()
    registry.register_instance(resolver, {})
    check = SPFCheck("check.spf", "spf")
    check.init(ConfigMap({}, resolver=registry.get_instance))
    assert check.resolver is resolver


# The evaluator's edges beyond the suite


async def test_an_ipv4_mapped_client_is_evaluated_as_ipv4(zone: DNSServer) -> None:
    resolver = Resolver(nameservers=["127.0.0.1"], port=zone.port)
    ip = ipaddress.IPv6Address(f"::ffff:{GOOD}")
    assert (await check_host(resolver, ip, "example.org", "joe@example.org")).result == "pass"


async def test_an_ipv6_client_matches_ip6(zone: DNSServer) -> None:
    resolver = Resolver(nameservers=["127.0.0.1"], port=zone.port)
    ip = ipaddress.IPv6Address("2001:db8::77")
    assert (await check_host(resolver, ip, "example.org", "joe@example.org")).result == "pass"


def test_any_record_gives_one_of_the_seven_results() -> None:
    terms = st.sampled_from(
        ["a", "mx", "ptr", "-all", "~all", "?all", "include:x.test", "exists:%{i}.x.test",
         "redirect=x.test", "exp=%{d}", "ip4:192.0.2.0/24", "ip6:::/0", "a:%{l}.x.test/24",
         "mx//64", "%", "a:", "=x", "foo=bar", "ip4:1.2.3", "a/33", "%{z}"]
    )  # fmt: skip
    with DNSServer({"x.test": "@ A 192.0.2.1"}) as server:

        @settings(max_examples=80)
        @given(st.lists(terms | st.text(max_size=8), max_size=6))
        def evaluate(parts: list[str]) -> None:
            server.add_zone("", origin="rec.test")
            record = " ".join(["v=spf1", *parts])
            txt = dns.rdtypes.ANY.TXT.TXT(
                dns.rdataclass.IN, dns.rdatatype.TXT, [record.encode()[:255]]
            )
            server.add_record("rec.test.", "TXT", txt)

            async def run() -> str:
                resolver = Resolver(nameservers=["127.0.0.1"], port=server.port, timeout=0.2)
                ip = ipaddress.IPv4Address("192.0.2.1")
                return (await check_host(resolver, ip, "rec.test", "a@rec.test")).result

            assert asyncio.run(run()) in {
                "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
            }  # fmt: skip

        evaluate()


# Macros


async def test_macro_transformers_and_delimiters() -> None:
    async def value(letter: str) -> str:
        return {"l": "philip-gladstone-test", "d": "a.b.example.com"}[letter]

    cases = {
        "%{d}": "a.b.example.com",
        "%{d2}": "example.com",
        "%{dr}": "com.example.b.a",
        "%{d1r}": "a",
        "%{l-}": "philip.gladstone.test",
        "%{l2r-}": "gladstone.philip",
        "%{L}%%%_%-": "philip-gladstone-test% %20",
    }
    for text, expected in cases.items():
        assert await expand(parse_macro_string(text), value) == expected


@pytest.mark.parametrize("text", ["%", "%x", "%{d0}", "%{c}", "%{q}", "%{d", "a b", "\x7f"])
def test_bad_macro_strings_are_syntax_problems(text: str) -> None:
    with pytest.raises(SyntaxProblem):
        parse_macro_string(text)


def test_c_r_and_t_are_allowed_only_in_explanations() -> None:
    for letter in "crt":
        assert parse_macro_string(f"%{{{letter}}} and more", explanation=True)
        with pytest.raises(SyntaxProblem):
            parse_macro_string(f"%{{{letter}}}")


@given(st.text(max_size=30))
def test_any_text_parses_or_is_a_syntax_problem(text: str) -> None:
    try:
        parse_macro_string(text, explanation=True)
    except SyntaxProblem:
        pass


# Kept verdicts


def evaluator_for(server: DNSServer) -> Evaluator:
    return Evaluator(Resolver(nameservers=["127.0.0.1"], port=server.port, timeout=0.3))


async def test_a_verdict_is_kept_while_its_answers_are_cached(zone: DNSServer) -> None:
    evaluator = evaluator_for(zone)
    ip = ipaddress.IPv4Address(GOOD)
    first = await evaluator.check_host(ip, "example.org", "joe@example.org")
    assert evaluator.cached(ip, "example.org", "joe@example.org") is first
    zone.clear_queries()
    assert await evaluator.check_host(ip, "example.org", "joe@example.org") is first
    assert zone.queries == ()
    assert evaluator.cached(ip, "example.org", "ann@example.org") is None  # another question


async def test_a_verdict_resting_on_an_uncached_answer_is_not_kept(zone: DNSServer) -> None:
    zone.add_zone('@ 0 TXT "v=spf1 -all"', origin="nottl.test")
    evaluator = evaluator_for(zone)
    ip = ipaddress.IPv4Address(GOOD)
    assert (await evaluator.check_host(ip, "nottl.test", "a@nottl.test")).result == "fail"
    assert evaluator.cached(ip, "nottl.test", "a@nottl.test") is None


async def test_a_temperror_is_not_kept(zone: DNSServer) -> None:
    zone.fail("example.org", "SERVFAIL", rdtype="TXT")
    evaluator = evaluator_for(zone)
    ip = ipaddress.IPv4Address(GOOD)
    assert (await evaluator.check_host(ip, "example.org", "a@example.org")).result == "temperror"
    assert evaluator.cached(ip, "example.org", "a@example.org") is None


async def test_a_verdict_goes_when_the_cache_is_full(zone: DNSServer) -> None:
    evaluator = Evaluator(evaluator_for(zone).resolver, cache_size=1)
    one, two = ipaddress.IPv4Address(GOOD), ipaddress.IPv4Address(BAD)
    await evaluator.check_host(one, "example.org", "a@example.org")
    await evaluator.check_host(two, "example.org", "a@example.org")
    assert evaluator.cached(one, "example.org", "a@example.org") is None
    assert evaluator.cached(two, "example.org", "a@example.org") is not None


class TestSPFCheckConformance(CheckSuite):
    @pytest.fixture
    def check(self, dns_server: DNSServer) -> Check:
        dns_server.add_zone(ZONE, origin="example.org")
        _, check = spf_pipeline(dns_server, MemoryTarget())
        return check


async def test_a_helo_fail_still_reports_the_mailfrom_result_for_dmarc(zone: DNSServer) -> None:
    target = MemoryTarget()
    pipeline, _ = spf_pipeline(zone, target, check_helo=True)  # fail quarantines
    await send(pipeline, ip=GOOD, mail_from="joe@example.org", helo="badhelo.example.org")
    results = auth_results(target)
    assert "spf=fail" in results
    assert "smtp.helo=badhelo.example.org" in results
    assert "spf=pass" in results
    assert "smtp.mailfrom=joe@example.org" in results
    assert target.messages[0].meta.quarantine
