"""mailmodule.testing.dnsserver: the authoritative loopback DNS server of the testing kit,
queried with dnspython's own synchronous client (no mailmodule code on the client side)."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import pytest

from mailmodule.testing.dnsserver import DNSServer, Query, ZoneError

pytest_plugins = ["pytester"]


def ask(server: DNSServer, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=server.port, timeout=2)


def texts(response: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


def test_the_server_answers_over_udp_and_tcp_with_authority(dns_server: DNSServer) -> None:
    dns_server.add_zone("www A 192.0.2.1", origin="example.org")
    for tcp in (False, True):
        response = ask(dns_server, "www.example.org", "A", tcp=tcp)
        assert texts(response) == ["192.0.2.1"]
        assert response.flags & dns.flags.AA
    assert [q.tcp for q in dns_server.queries] == [False, True]


def test_names_outside_every_zone_are_refused(dns_server: DNSServer) -> None:
    assert ask(dns_server, "example.net", "A").rcode() == dns.rcode.REFUSED


def test_the_closest_enclosing_zone_answers(dns_server: DNSServer) -> None:
    dns_server.add_zone("www A 192.0.2.1", origin="example.org")
    dns_server.add_zone("www A 192.0.2.2", origin="sub.example.org")
    assert texts(ask(dns_server, "www.sub.example.org", "A")) == ["192.0.2.2"]


def test_a_root_zone_serves_every_name(dns_server: DNSServer) -> None:
    dns_server.add_zone("anything.test. TXT hello", origin=".")
    assert texts(ask(dns_server, "anything.test", "TXT")) == ['"hello"']


def test_wildcards_answer_names_that_do_not_exist(dns_server: DNSServer) -> None:
    dns_server.add_zone("*.w TXT wild\nreal.w A 192.0.2.1", origin="example.org")
    response = ask(dns_server, "a.b.w.example.org", "TXT")
    assert texts(response) == ['"wild"']
    assert response.answer[0].name.to_text() == "a.b.w.example.org."
    # A name that exists is not covered by the wildcard: NODATA.
    assert ask(dns_server, "real.w.example.org", "TXT").answer == []


def test_nxdomain_carries_the_soa(dns_server: DNSServer) -> None:
    dns_server.add_zone("@ SOA ns h 1 2 3 4 42", origin="example.org")
    response = ask(dns_server, "nope.example.org", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_a_cname_chain_is_answered_across_zones(dns_server: DNSServer) -> None:
    dns_server.add_zone("alias CNAME target.example.net.", origin="example.org")
    dns_server.add_zone("target A 192.0.2.7", origin="example.net")
    assert texts(ask(dns_server, "alias.example.org", "A")) == ["192.0.2.7", "target.example.net."]


def test_faults_are_injected_by_name_and_type_and_healed(dns_server: DNSServer) -> None:
    dns_server.add_zone("www A 192.0.2.1\nwww TXT x", origin="example.org")
    dns_server.fail("www.example.org", "REFUSED", rdtype="TXT")
    assert ask(dns_server, "www.example.org", "TXT").rcode() == dns.rcode.REFUSED
    assert ask(dns_server, "www.example.org", "A").rcode() == dns.rcode.NOERROR
    dns_server.fail("www.example.org", "timeout")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(
            dns.message.make_query("www.example.org", "A"),
            "127.0.0.1",
            port=dns_server.port,
            timeout=0.2,
        )
    dns_server.heal()
    assert texts(ask(dns_server, "www.example.org", "A")) == ["192.0.2.1"]


def test_an_unknown_fault_rcode_is_refused_at_once(dns_server: DNSServer) -> None:
    with pytest.raises(dns.rcode.UnknownRcode):
        dns_server.fail("www.example.org", "NOPE")


def test_a_large_udp_answer_is_truncated(dns_server: DNSServer) -> None:
    dns_server.add_zone(" ".join(["@ TXT", *(f'"{"x" * 200}"' for _ in range(5))]), origin="t")
    response = ask(dns_server, "t", "TXT")
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert texts(ask(dns_server, "t", "TXT", tcp=True))


def test_garbage_gets_no_reply(dns_server: DNSServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(b"\x00garbage", ("127.0.0.1", dns_server.port))
        with pytest.raises(TimeoutError):
            sock.recv(512)
    assert ask(dns_server, "example.org", "A").rcode() == dns.rcode.REFUSED  # still serving


def test_zone_text_that_does_not_parse_is_a_zone_error_naming_the_zone() -> None:
    with pytest.raises(ZoneError, match=r"example\.org"):
        DNSServer({"example.org": "www A not-an-address"})


def test_the_queries_are_recorded_in_order(dns_server: DNSServer) -> None:
    dns_server.add_zone("", origin="example.org")
    ask(dns_server, "A.Example.org", "MX")
    ask(dns_server, "b.example.org", "TXT")
    assert dns_server.queries == (
        Query("a.example.org", "MX", False),
        Query("b.example.org", "TXT", False),
    )
    dns_server.clear_queries()
    assert not dns_server.queries


def test_the_fixture_is_offered_by_the_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import dns.message, dns.query

        def test_it(dns_server):
            dns_server.add_zone("www A 192.0.2.1", origin="example.org")
            query = dns.message.make_query("www.example.org", "A")
            response = dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=2)
            assert response.answer
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_zone_data_that_cannot_be_sent_is_a_servfail_with_the_reason(
    dns_server: DNSServer,
) -> None:
    dns_server.add_zone("", origin="example.org")
    relative = dns.rdata.from_text("IN", "MX", "10 mx", relativize=False)  # no origin: relative
    dns_server.add_record("example.org.", "MX", relative)
    assert ask(dns_server, "example.org", "MX").rcode() == dns.rcode.SERVFAIL
    assert "example.org. MX" in dns_server.errors[0]
