"""mx_auth.mtasts against a loopback DNS server and a real HTTPS policy host (trustme)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from mailmodule import MsgMetadata
from mailmodule.errors import SMTPError
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import TLSState
from mailmodule.modules.mx_auth import MTASTSPolicy, STSMode
from mailmodule.testing.dnsserver import DNSServer
from tests.mx_auth_kit import Answer, PolicyHost, policy, policy_host

DOMAIN = "example.net"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: *.example.net\r\nmax_age: 86400\r\n"
TESTING = POLICY.replace(b"enforce", b"testing")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def publish(dns_server: DNSServer, policy_id: str = "1") -> None:
    dns_server.add_zone(
        f'_mta-sts 0 TXT "v=STSv1; id={policy_id};"\nmta-sts A 127.0.0.1\n@ MX 10 mx',
        origin=DOMAIN,
    )


def mtasts(dns_server: DNSServer, host: PolicyHost, ca_file: str, **more: object) -> MTASTSPolicy:
    settings = {"ca_file": ca_file, "policy_port": host.port, **more}
    built = policy("mx_auth.mtasts", settings, dns_port=dns_server.port)
    assert isinstance(built, MTASTSPolicy)
    return built


async def test_an_mx_matching_an_enforced_policy_is_raised_to_mx_mtasts(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        delivery = mtasts(dns_server, host, ca_file).start(MsgMetadata(id="m"))
        await delivery.prepare_domain(DOMAIN)
        level = await delivery.check_mx(MXLevel.MX_NONE, DOMAIN, "mx1.example.net", False)
    assert level is MXLevel.MX_MTASTS
    assert host.requests[0].startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert b"\r\nHost: mta-sts.example.net\r\n" in host.requests[0]


async def test_an_mx_outside_an_enforced_policy_is_refused(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        delivery = mtasts(dns_server, host, ca_file).start(MsgMetadata(id="m"))
        with pytest.raises(SMTPError, match="not listed") as refused:
            await delivery.check_mx(MXLevel.MX_NONE, DOMAIN, "mx.attacker.example", False)
    assert (refused.value.code, refused.value.enhanced_code) == (451, (4, 7, 0))
    assert refused.value.misc["mx"] == "mx.attacker.example"


async def test_an_mx_outside_a_testing_policy_keeps_its_level(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=TESTING) as host:
        delivery = mtasts(dns_server, host, ca_file).start(MsgMetadata(id="m"))
        level = await delivery.check_mx(MXLevel.MX_NONE, DOMAIN, "mx.attacker.example", False)
        tls = await delivery.check_conn(
            level,
            TLSLevel.TLS_NONE,
            DOMAIN,
            "mx.attacker.example",
            TLSState(handshake_complete=False),
        )
    assert (level, tls) == (MXLevel.MX_NONE, TLSLevel.TLS_NONE)


@pytest.mark.parametrize(
    ("tls_level", "state", "refusal"),
    [
        (TLSLevel.TLS_NONE, TLSState(handshake_complete=False), "unavailable"),
        (TLSLevel.TLS_ENCRYPTED, TLSState(), "not trusted"),
        (TLSLevel.TLS_AUTHENTICATED, TLSState(), None),
    ],
)
async def test_an_enforced_policy_requires_authenticated_tls(
    dns_server: DNSServer,
    ca: trustme.CA,
    ca_file: str,
    tls_level: TLSLevel,
    state: TLSState,
    refusal: str | None,
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        delivery = mtasts(dns_server, host, ca_file).start(MsgMetadata(id="m"))
        check = delivery.check_conn(MXLevel.MX_MTASTS, tls_level, DOMAIN, "mx.example.net", state)
        if refusal is None:
            assert await check is tls_level
            return
        with pytest.raises(SMTPError, match=refusal) as refused:
            await check
    assert refused.value.enhanced_code == (4, 7, 1)


async def test_a_policy_host_whose_certificate_does_not_verify_gives_no_policy(
    dns_server: DNSServer, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(trustme.CA(), f"mta-sts.{DOMAIN}", body=POLICY) as host:
        assert await mtasts(dns_server, host, ca_file).policy(DOMAIN) is None


async def test_a_certificate_for_another_name_gives_no_policy(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, "mta-sts.other.example", body=POLICY) as host:
        assert await mtasts(dns_server, host, ca_file).policy(DOMAIN) is None


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "302 Found", "body": POLICY},
        {"status": "404 Not Found", "body": POLICY},
        {"content_type": "text/html", "body": POLICY},
        {"body": b"version: STSv1\r\nmode: enforce\r\n"},
        {"body": b"\xff" * 10},
        {"body": POLICY * 2000},
    ],
    ids=["redirect", "not-found", "html", "broken", "not-utf8", "too-long"],
)
async def test_a_reply_other_than_a_valid_text_policy_gives_no_policy(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str, answer: Answer
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", **answer) as host:
        assert await mtasts(dns_server, host, ca_file).policy(DOMAIN) is None


async def test_a_chunked_policy_is_read_whole(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY, chunked=True) as host:
        found = await mtasts(dns_server, host, ca_file).policy(DOMAIN)
    assert found is not None
    assert (found.mode, found.mx, found.max_age) == (STSMode.ENFORCE, ("*.example.net",), 86400)


async def test_a_domain_without_an_sts_record_has_no_policy(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    dns_server.add_zone("mta-sts A 127.0.0.1", origin=DOMAIN)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        assert await mtasts(dns_server, host, ca_file).policy(DOMAIN) is None
    assert host.requests == []


async def test_a_cached_policy_survives_a_restart_and_a_policy_host_gone_down(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    publish(dns_server)
    cache = str(tmp_path / "cache")
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        first = await mtasts(dns_server, host, ca_file, cache_dir=cache).policy(DOMAIN)
    assert (tmp_path / "cache" / "example.net.json").is_file()
    restarted = mtasts(dns_server, host, ca_file, cache_dir=cache)
    assert await restarted.policy(DOMAIN) == first
    dns_server.remove_zone(DOMAIN)
    publish(dns_server, policy_id="2")  # a new id, but its policy cannot be fetched
    assert await restarted.policy(DOMAIN) == first
    assert len(host.requests) == 1


async def test_a_new_policy_id_fetches_the_policy_again(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str
) -> None:
    publish(dns_server)
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        sts = mtasts(dns_server, host, ca_file)
        assert await sts.policy(DOMAIN) is not None
        dns_server.remove_zone(DOMAIN)
        publish(dns_server, policy_id="2")
        host.body = TESTING
        found = await sts.policy(DOMAIN)
    assert found is not None
    assert found.mode is STSMode.TESTING
    assert len(host.requests) == 2


async def test_a_damaged_cache_file_is_ignored(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    publish(dns_server)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "example.net.json").write_text('{"id": "1", "policy": 5}')
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        sts = mtasts(dns_server, host, ca_file, cache_dir=str(tmp_path / "cache"))
        assert await sts.policy(DOMAIN) is not None
    assert len(host.requests) == 1


@pytest.mark.parametrize("domain", ["../../etc", "a..b", "-x.example", ""])
async def test_a_domain_that_is_no_host_name_has_no_policy_and_touches_no_file(
    dns_server: DNSServer, ca: trustme.CA, ca_file: str, tmp_path: Path, domain: str
) -> None:
    async with policy_host(ca, f"mta-sts.{DOMAIN}", body=POLICY) as host:
        sts = mtasts(dns_server, host, ca_file, cache_dir=str(tmp_path / "cache"))
        assert await sts.policy(domain) is None
    assert list((tmp_path / "cache").iterdir()) == []
