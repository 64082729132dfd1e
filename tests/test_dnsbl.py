"""check.dnsbl and check.require_mx_record, against lists and domains served by the
loopback DNS server."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import ConnState, MsgMetadata, SMTPError
from mailmodule.dns import Resolver
from mailmodule.errors import ConfigError, ModuleInitError
from mailmodule.interfaces import Check, CheckResult
from mailmodule.modules import DNSBLCheck, RequireMXCheck
from mailmodule.modules.dnsbl import reversed_name
from mailmodule.testing import CheckSuite
from mailmodule.testing.dnsserver import DNSServer
from tests.modules_kit import build, new_registry

LISTS = """
2.0.0.127       A   127.0.0.2
2.0.0.127       TXT "test entry"
7.100.51.198    A   127.0.0.2
7.100.51.198    TXT "listed for spamming"
8.100.51.198    A   127.0.0.10
9.100.51.198    A   127.0.1.1
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 A 127.0.0.4
spam.example    A   127.0.0.2
"""


@pytest.fixture
def lists(dns_server: DNSServer) -> DNSServer:
    dns_server.add_zone(LISTS, origin="bl.test")
    dns_server.add_zone("7.100.51.198 A 127.0.0.3", origin="other.test")
    dns_server.add_zone("5.2.0.192 A 127.0.0.2", origin="good.test")
    return dns_server


def dnsbl(server: DNSServer, settings: dict[str, object]) -> DNSBLCheck:
    registry = new_registry()
    registry.register_instance(
        Resolver(), {"nameservers": ["127.0.0.1"], "port": server.port, "timeout": "300ms"}
    )
    check = build(registry, "check.dnsbl", "bl", settings)
    assert isinstance(check, DNSBLCheck)
    return check


async def sender_result(
    check: DNSBLCheck | RequireMXCheck,
    ip: str,
    mail_from: str = "joe@example.org",
    helo: str = "mx.example.org",
) -> CheckResult:
    conn = ConnState(proto="ESMTP", hostname=helo, remote_addr=f"[{ip}]:25")
    state = await check.check_state_for_msg(MsgMetadata(id="m", conn=conn))
    return await state.check_sender(mail_from)


async def test_a_listed_ipv4_client_is_quarantined_by_default(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {}}})
    assert (await sender_result(check, "198.51.100.7")).quarantine
    assert await sender_result(check, "198.51.100.77") == CheckResult()


async def test_scores_add_up_to_the_reject_threshold(lists: DNSServer) -> None:
    check = dnsbl(
        lists,
        {"lists": {"bl.test": {"score": 5}, "other.test": {"score": 5, "responses": ["127.0.0.3"]}},
         "reject_threshold": 10},
    )  # fmt: skip
    result = await sender_result(check, "198.51.100.7")
    assert result.reject
    assert result.reason is not None
    assert (result.reason.code, result.reason.enhanced_code) == (554, (5, 7, 0))
    assert result.reason.message == "Client identity is listed in the used DNSBL"
    assert result.reason.misc["score"] == 10


async def test_answers_outside_responses_do_not_count(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {"responses": ["127.0.0.2"]}}})
    assert await sender_result(check, "198.51.100.8") == CheckResult()  # 127.0.0.10
    default = dnsbl(lists, {"lists": {"bl.test": {}}})
    assert await sender_result(default, "198.51.100.9") == CheckResult()  # 127.0.1.1


async def test_response_rules_set_the_score_and_the_message(lists: DNSServer) -> None:
    rules = [
        {"networks": ["127.0.0.2"], "score": 20, "message": "Listed as a spam source"},
        {"networks": ["127.0.0.10/31"], "score": 3},
    ]
    check = dnsbl(lists, {"lists": {"bl.test": {"response": rules}}, "reject_threshold": 10})
    spam = await sender_result(check, "198.51.100.7")
    assert spam.reason is not None
    assert spam.reason.message == "Listed as a spam source"
    assert spam.reject
    other = await sender_result(check, "198.51.100.8")
    assert other.quarantine
    assert not other.reject


async def test_ipv6_clients_are_asked_by_reversed_nibbles_when_enabled(lists: DNSServer) -> None:
    off = dnsbl(lists, {"lists": {"bl.test": {}}})
    assert await sender_result(off, "2001:db8::1") == CheckResult()
    on = dnsbl(lists, {"lists": {"bl.test": {"client_ipv6": True}}})
    assert (await sender_result(on, "2001:db8::1")).quarantine


async def test_an_ipv4_mapped_client_is_asked_as_ipv4(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {}}})
    assert (await sender_result(check, "::ffff:198.51.100.7")).quarantine


async def test_ehlo_and_mailfrom_domains_are_asked_when_enabled(lists: DNSServer) -> None:
    lists.clear_queries()
    check = dnsbl(lists, {"lists": {"bl.test": {"client_ipv4": False, "ehlo": True}}})
    assert (await sender_result(check, "192.0.2.1", helo="spam.example")).quarantine
    by_sender = dnsbl(lists, {"lists": {"bl.test": {"client_ipv4": False, "mailfrom": True}}})
    assert (await sender_result(by_sender, "192.0.2.1", mail_from="a@spam.example")).quarantine
    assert await sender_result(by_sender, "192.0.2.1", mail_from="") == CheckResult()


async def test_an_ehlo_literal_is_not_looked_up(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {"client_ipv4": False, "ehlo": True}}})
    lists.clear_queries()
    assert await sender_result(check, "192.0.2.1", helo="[192.0.2.1]") == CheckResult()
    assert lists.queries == ()


async def test_a_negative_score_offsets_another_list(lists: DNSServer) -> None:
    check = dnsbl(
        lists, {"lists": {"bl.test": {}, "good.test": {"score": -5}}}
    )  # 192.0.2.5 is on good.test only
    assert await sender_result(check, "192.0.2.5") == CheckResult()


async def test_inline_arguments_name_lists_with_the_defaults(lists: DNSServer) -> None:
    registry = new_registry()
    registry.register_instance(Resolver(), {"nameservers": ["127.0.0.1"], "port": lists.port})
    check = DNSBLCheck("check.dnsbl", "bl", [], ["bl.test"])
    registry.register_instance(check, {})
    registry.get_instance("bl")
    assert (await sender_result(check, "198.51.100.7")).quarantine


async def test_a_temporary_dns_failure_defers(lists: DNSServer) -> None:
    lists.fail("7.100.51.198.bl.test", "SERVFAIL")
    result = await sender_result(dnsbl(lists, {"lists": {"bl.test": {}}}), "198.51.100.7")
    assert result.reject
    assert result.reason is not None
    assert result.reason.code == 451


async def test_a_list_that_refuses_queries_is_skipped(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"refusing.test": {}}})
    assert await sender_result(check, "198.51.100.7") == CheckResult()


async def test_a_local_message_is_not_checked(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {}}})
    state = await check.check_state_for_msg(MsgMetadata(id="m"))
    assert await state.check_sender("joe@example.org") == CheckResult()


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"lists": ["bl.test"]},
        {"lists": {"not a zone": {}}},
        {"lists": {"bl.test": {"scor": 1}}},
        {"lists": {"bl.test": {"ehlo": "yes"}}},
        {"lists": {"bl.test": {"score": -1, "ehlo": True}}},
        {"lists": {"bl.test": {"responses": ["127.0.0.300"]}}},
        {"lists": {"bl.test": {"response": [{"score": 1}]}}},
        {"reject_threshold": "high", "lists": {"bl.test": {}}},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ModuleInitError) as info:
        build(new_registry(), "check.dnsbl", "bl", settings)
    assert isinstance(info.value.__cause__, ConfigError)


@given(st.ip_addresses())
def test_reversed_names_are_the_rfc5782_form(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    name = reversed_name(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # asked as the IPv4 address it is
    if isinstance(ip, ipaddress.IPv4Address):
        assert ipaddress.IPv4Address(".".join(reversed(name.split(".")))) == ip
    else:
        nibbles = "".join(reversed(name.split(".")))
        assert len(nibbles) == 32
        assert ipaddress.IPv6Address(int(nibbles, 16)) == ip


# check.require_mx_record

DOMAINS = """
@        MX 10 mx
mx       A  192.0.2.1
nullmx   MX 0 .
aonly    A  192.0.2.2
"""


@pytest.fixture
def require_mx(dns_server: DNSServer) -> RequireMXCheck:
    dns_server.add_zone(DOMAINS, origin="example.org")
    registry = new_registry()
    registry.register_instance(
        Resolver(), {"nameservers": ["127.0.0.1"], "port": dns_server.port, "timeout": "300ms"}
    )
    check = build(registry, "check.require_mx_record", "mx", {})
    assert isinstance(check, RequireMXCheck)
    return check


def reason_of(result: CheckResult) -> tuple[int, tuple[int, int, int]]:
    assert result.reason is not None
    assert not result.reject  # the pipeline's fail_action decides
    return result.reason.code, result.reason.enhanced_code


async def test_a_sender_domain_with_mx_passes(require_mx: RequireMXCheck) -> None:
    assert await require_mx.verdict("joe@example.org") == CheckResult()
    assert await require_mx.verdict("") == CheckResult()
    assert await require_mx.verdict("joe@[192.0.2.1]") == CheckResult()


async def test_a_null_mx_is_refused(require_mx: RequireMXCheck) -> None:
    result = await require_mx.verdict("joe@nullmx.example.org")
    assert reason_of(result) == (550, (5, 7, 27))
    assert result.reason is not None
    assert "null MX" in result.reason.message


@pytest.mark.parametrize("domain", ["aonly.example.org", "missing.example.org"])
async def test_no_mx_is_refused(require_mx: RequireMXCheck, domain: str) -> None:
    assert reason_of(await require_mx.verdict(f"joe@{domain}")) == (550, (5, 7, 27))


@pytest.mark.parametrize("sender", ["joe", "joe@", "joe@xn--a.example", "joe@a..b"])
async def test_a_malformed_sender_is_refused(require_mx: RequireMXCheck, sender: str) -> None:
    assert reason_of(await require_mx.verdict(sender)) == (550, (5, 1, 7))


async def test_a_temporary_dns_failure_is_a_4xx(
    require_mx: RequireMXCheck, dns_server: DNSServer
) -> None:
    dns_server.fail("example.org", "SERVFAIL")
    assert reason_of(await require_mx.verdict("joe@example.org")) == (450, (4, 7, 0))


async def test_the_check_runs_at_mail_from(require_mx: RequireMXCheck) -> None:
    result = await sender_result(require_mx, "192.0.2.1", mail_from="joe@nullmx.example.org")
    assert reason_of(result) == (550, (5, 7, 27))


class TestDNSBLConformance(CheckSuite):
    @pytest.fixture
    def check(self, lists: DNSServer) -> Check:
        return dnsbl(lists, {"lists": {"bl.test": {}}})


class TestRequireMXConformance(CheckSuite):
    @pytest.fixture
    def check(self, require_mx: RequireMXCheck) -> Check:
        return require_mx


async def test_check_early_refuses_a_listed_client_when_it_connects(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {"score": 10}}, "reject_threshold": 10,
                          "check_early": True})  # fmt: skip
    with pytest.raises(SMTPError) as info:
        await check.check_connection(ConnState(remote_addr="198.51.100.7:25"))
    assert (info.value.code, info.value.enhanced_code) == (554, (5, 7, 0))
    await check.check_connection(ConnState(remote_addr="198.51.100.77:25"))  # not listed


async def test_without_check_early_a_connection_is_not_judged(lists: DNSServer) -> None:
    check = dnsbl(lists, {"lists": {"bl.test": {"score": 10}}, "reject_threshold": 10})
    lists.clear_queries()
    await check.check_connection(ConnState(remote_addr="198.51.100.7:25"))
    assert lists.queries == ()
