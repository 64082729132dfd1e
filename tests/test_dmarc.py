"""DMARC: policies from the loopback DNS server applied to SPF and DKIM results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import (
    AuthResult,
    AuthResultProperty,
    CheckResult,
    Header,
    MemoryBuffer,
    MsgMetadata,
)
from mailmodule.config import ConfigMap
from mailmodule.modules.dmarc import (
    DMARC,
    DMARCRecord,
    _from_domain,
    aligned,
    evaluate,
    organizational_domain,
)
from mailmodule.pipeline import Destination, Pipeline, parse_authentication_results
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import (
    dkim_check,
    key_records,
    message,
    parse,
    publish,
    resolver_for,
    rsa_key,
    signed,
)
from tests.pipeline_kit import MemoryTarget, RecordingCheck

FROM = Header([("From", "Joe <joe@example.org>")])


def dkim(result: str, d: str) -> AuthResult:
    return AuthResult(
        method="dkim", result=result, properties=[AuthResultProperty("header", "d", d)]
    )


def spf(result: str, mailfrom: str) -> AuthResult:
    return AuthResult(
        method="spf", result=result, properties=[AuthResultProperty("smtp", "mailfrom", mailfrom)]
    )


def dmarc(server: DNSServer) -> DMARC:
    module = DMARC()
    module.resolver = resolver_for(server)
    module.init(ConfigMap({}, module="dmarc"))
    return module


async def judge(server: DNSServer, results: list[AuthResult], header: Header = FROM) -> CheckResult:
    return await dmarc(server).check_results(MsgMetadata(id="m1"), header, tuple(results))


def verdict(result: CheckResult) -> tuple[str, str | None]:
    (res,) = result.auth_result
    assert res.method == "dmarc"
    return res.result, res.get("header", "from")


FAILING = [dkim("fail", "example.org"), spf("fail", "joe@example.org")]


@pytest.fixture
def rejecting(dns_server: DNSServer) -> DNSServer:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=reject; sp=quarantine"})
    return dns_server


async def test_an_aligned_dkim_pass_passes(rejecting: DNSServer) -> None:
    result = await judge(rejecting, [dkim("pass", "example.org"), spf("fail", "x@evil.example")])
    assert verdict(result) == ("pass", "example.org")
    assert not result.reject


async def test_an_aligned_spf_pass_passes(rejecting: DNSServer) -> None:
    result = await judge(rejecting, [dkim("none", ""), spf("pass", "bounce@mail.example.org")])
    assert verdict(result) == ("pass", "example.org")


async def test_the_mail_from_result_counts_rather_than_a_helo_result(rejecting: DNSServer) -> None:
    helo = AuthResult(
        method="spf", result="pass", properties=[AuthResultProperty("smtp", "helo", "example.org")]
    )
    results = [dkim("none", ""), helo, spf("fail", "x@example.org")]
    assert verdict(await judge(rejecting, results))[0] == "fail"
    null_sender = [dkim("none", ""), helo]
    assert verdict(await judge(rejecting, null_sender))[0] == "pass"


async def test_a_failure_under_p_reject_refuses_with_550_5_7_1(rejecting: DNSServer) -> None:
    result = await judge(rejecting, FAILING)
    assert verdict(result) == ("fail", "example.org")
    assert result.reject
    assert result.reason is not None
    assert (result.reason.code, result.reason.enhanced_code) == (550, (5, 7, 1))


async def test_a_pass_of_an_unrelated_domain_does_not_align(rejecting: DNSServer) -> None:
    result = await judge(rejecting, [dkim("pass", "evil.example"), spf("pass", "a@evil.example")])
    assert verdict(result)[0] == "fail"
    assert result.reject


async def test_strict_dkim_alignment_refuses_a_subdomain_signature(dns_server: DNSServer) -> None:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=reject; adkim=s"})
    results = [dkim("pass", "mail.example.org"), spf("fail", "a@example.org")]
    assert verdict(await judge(dns_server, results))[0] == "fail"
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=reject"})
    assert verdict(await judge(dns_server, results))[0] == "pass"


async def test_p_quarantine_sends_a_failure_to_junk(dns_server: DNSServer) -> None:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=quarantine"})
    result = await judge(dns_server, FAILING)
    assert result.quarantine
    assert not result.reject


async def test_p_none_only_reports(dns_server: DNSServer) -> None:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=none"})
    result = await judge(dns_server, FAILING)
    assert verdict(result)[0] == "fail"
    assert not result.reject
    assert not result.quarantine


async def test_pct_0_applies_the_policy_to_no_message(dns_server: DNSServer) -> None:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=reject; pct=0"})
    result = await judge(dns_server, FAILING)
    assert not result.reject


async def test_a_subdomain_without_a_record_gets_the_organizational_sp(
    rejecting: DNSServer,
) -> None:
    header = Header([("From", "joe@news.example.org")])
    results = [dkim("fail", "news.example.org"), spf("fail", "a@news.example.org")]
    result = await judge(rejecting, results, header)
    assert verdict(result) == ("fail", "news.example.org")
    assert result.quarantine  # sp=quarantine, not p=reject
    assert not result.reject


async def test_a_subdomain_with_its_own_record_gets_its_own_policy(rejecting: DNSServer) -> None:
    publish(rejecting, "news.example.org", {"_dmarc": "v=DMARC1; p=none"})
    header = Header([("From", "joe@news.example.org")])
    result = await judge(rejecting, FAILING, header)
    assert not result.reject
    assert not result.quarantine


async def test_no_record_is_dmarc_none(dns_server: DNSServer) -> None:
    publish(dns_server, "example.org", {"www": "not a policy"})
    result = await judge(dns_server, FAILING)
    assert verdict(result) == ("none", "example.org")
    assert not result.reject


async def test_two_records_count_as_none(dns_server: DNSServer) -> None:
    dns_server.add_zone(
        '_dmarc TXT "v=DMARC1; p=reject"\n_dmarc TXT "v=DMARC1; p=none"\n', origin="example.org"
    )
    assert verdict(await judge(dns_server, FAILING))[0] == "none"


async def test_a_malformed_record_is_a_permerror_and_applies_nothing(
    dns_server: DNSServer,
) -> None:
    publish(dns_server, "example.org", {"_dmarc": "v=DMARC1; p=bounce"})
    result = await judge(dns_server, FAILING)
    assert verdict(result)[0] == "permerror"
    assert not result.reject


async def test_a_temporary_dns_error_refuses_for_now(rejecting: DNSServer) -> None:
    rejecting.fail("_dmarc.example.org", "SERVFAIL")
    result = await judge(rejecting, FAILING)
    assert verdict(result)[0] == "temperror"
    assert result.reason is not None
    assert (result.reason.code, result.reason.enhanced_code) == (450, (4, 7, 1))


async def test_without_dkim_or_spf_results_dmarc_is_none(rejecting: DNSServer) -> None:
    result = await judge(rejecting, [spf("fail", "a@example.org")])
    assert verdict(result)[0] == "none"
    assert not result.reject


async def test_a_dkim_temperror_that_could_align_is_a_temperror(rejecting: DNSServer) -> None:
    results = [dkim("temperror", "example.org"), spf("fail", "a@example.org")]
    assert verdict(await judge(rejecting, results))[0] == "temperror"


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [("From", "a@example.org"), ("From", "b@example.org")],
        [("From", "a@example.org, b@example.net")],
        [("From", "no address here")],
    ],
)
async def test_anything_but_one_from_address_is_refused(
    rejecting: DNSServer, fields: list[tuple[str, str]]
) -> None:
    result = await judge(rejecting, FAILING, Header(fields))
    assert result.reject
    assert result.reason is not None
    assert result.reason.code == 550
    assert result.auth_result[0].result == "permerror"


def test_organizational_domains_follow_the_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("Mail.Example.ORG") == "example.org"
    assert organizational_domain("co.uk") == "co.uk"


def test_relaxed_alignment_needs_the_same_organizational_domain() -> None:
    assert aligned("example.co.uk", "mail.example.co.uk", "r")
    assert not aligned("example.co.uk", "other.co.uk", "r")
    assert not aligned("co.uk", "example.co.uk", "r")  # a public suffix aligns only with itself
    assert not aligned("example.org", "mail.example.org", "s")


@given(st.sampled_from(["pass", "fail", "none", "temperror", "permerror", "neutral"]))
def test_no_result_of_an_unaligned_domain_makes_dmarc_pass(outcome: str) -> None:
    record = DMARCRecord(policy="reject")
    results = [dkim(outcome, "evil.example"), spf(outcome, "a@evil.example")]
    assert evaluate("example.org", record, results)[0] != "pass"


async def test_a_pipeline_with_check_dkim_and_dmarc_writes_one_field_with_both(
    dns_server: DNSServer,
) -> None:
    publish(dns_server, "example.org", {**key_records(), "_dmarc": "v=DMARC1; p=reject"})
    spf_check = RecordingCheck(
        "check.spf", results={"body": CheckResult(auth_result=[spf("fail", "a@evil.example")])}
    )
    target = MemoryTarget()
    pipeline = Pipeline(
        checks=[dkim_check(dns_server), spf_check],
        result_checks=[dmarc(dns_server)],
        default=Destination(targets=[target]),
        hostname="mx.example.net",
    )
    header, body = parse(signed(message(), rsa_key()))
    delivery = await pipeline.start(MsgMetadata(id="m1"), "a@evil.example")
    await delivery.add_rcpt("suzie@example.net")
    await delivery.body(header, MemoryBuffer(body))
    await delivery.commit()
    stored = Header.parse(target.messages[0].header)
    assert len(stored.fields("Authentication-Results")) == 1
    authserv, results = parse_authentication_results(stored.values("Authentication-Results")[0])
    assert authserv == "mx.example.net"
    assert [(r.method, r.result) for r in results] == [
        ("dkim", "pass"),
        ("spf", "fail"),
        ("dmarc", "pass"),
    ]
    assert results[0].get("header", "d") == "example.org"
    assert results[0].get("header", "s") == "sel"
    assert len(results[0].get("header", "b") or "") == 8
    assert results[2].get("header", "from") == "example.org"


@given(st.text(max_size=80).filter(lambda t: "\r" not in t and "\n" not in t and "\0" not in t))
def test_any_from_value_gives_a_domain_or_none_and_never_raises(value: str) -> None:
    found = _from_domain(Header([("From", value)]))
    assert found is None or "@" not in found
