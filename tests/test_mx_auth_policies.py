"""The mx_auth policies' levels and refusals: local_policy, dnssec, dane, and their order."""

from __future__ import annotations

import pytest
import trustme

from mailmodule import MsgMetadata
from mailmodule.errors import ConfigError, ModuleInitError, SMTPError
from mailmodule.interfaces import DeliveryMXAuthPolicy, MXAuthPolicy, MXLevel, TLSLevel
from mailmodule.metadata import TLSState
from mailmodule.modules.mx_auth import PolicyGroup
from mailmodule.testing.dnsserver import DNSServer
from tests.mx_auth_kit import chain, policy, tlsa, zone_line

META = MsgMetadata(id="m")
NO_TLS = TLSState(handshake_complete=False)
TLS, ENCRYPTED, AUTHENTICATED = TLSState(), TLSLevel.TLS_ENCRYPTED, TLSLevel.TLS_AUTHENTICATED
MX = "mx.example.net"


def delivery(
    module: str, settings: dict[str, object] | None = None, *, dns_port: int = 53
) -> DeliveryMXAuthPolicy:
    return policy(module, settings, dns_port=dns_port).start(META)


@pytest.mark.parametrize(
    ("setting", "level", "passes"),
    [
        ("none", TLSLevel.TLS_NONE, True),
        ("encrypted", TLSLevel.TLS_NONE, False),
        ("encrypted", ENCRYPTED, True),
        ("authenticated", ENCRYPTED, False),
        ("authenticated", AUTHENTICATED, True),
    ],
)
async def test_local_policy_refuses_a_connection_below_min_tls_level(
    setting: str, level: TLSLevel, passes: bool
) -> None:
    local = delivery("mx_auth.local_policy", {"min_tls_level": setting})
    check = local.check_conn(MXLevel.MX_NONE, level, "example.net", MX, TLS)
    if passes:
        assert await check == level
        return
    with pytest.raises(SMTPError) as refused:
        await check
    assert (refused.value.code, refused.value.enhanced_code) == (451, (4, 7, 1))
    assert refused.value.misc["required"] == setting


async def test_local_policy_refuses_a_missing_starttls_by_default() -> None:
    local = delivery("mx_auth.local_policy")
    with pytest.raises(SMTPError, match="TLS is not available"):
        await local.check_conn(MXLevel.MX_NONE, TLSLevel.TLS_NONE, "example.net", MX, NO_TLS)


@pytest.mark.parametrize(
    ("setting", "level", "passes"),
    [
        ("none", MXLevel.MX_NONE, True),
        ("mtasts", MXLevel.MX_NONE, False),
        ("mtasts", MXLevel.MX_MTASTS, True),
        ("mtasts", MXLevel.MX_DNSSEC, True),
        ("dnssec", MXLevel.MX_MTASTS, False),
    ],
)
async def test_local_policy_refuses_an_mx_below_min_mx_level(
    setting: str, level: MXLevel, passes: bool
) -> None:
    local = delivery("mx_auth.local_policy", {"min_mx_level": setting})
    check = local.check_mx(level, "example.net", MX, False)
    if passes:
        assert await check == level
        return
    with pytest.raises(SMTPError) as refused:
        await check
    assert (refused.value.code, refused.value.enhanced_code) == (451, (4, 7, 0))


def test_local_policy_names_a_level_it_does_not_know() -> None:
    with pytest.raises(ModuleInitError) as failed:
        policy("mx_auth.local_policy", {"min_tls_level": "strong"})
    cause = failed.value.__cause__
    assert isinstance(cause, ConfigError)
    assert cause.key == "min_tls_level"
    assert "none, encrypted or authenticated" in str(cause)


async def test_dnssec_raises_a_signed_mx_to_mx_dnssec_and_leaves_others() -> None:
    dnssec = delivery("mx_auth.dnssec")
    assert await dnssec.check_mx(MXLevel.MX_NONE, "example.net", MX, True) is MXLevel.MX_DNSSEC
    assert await dnssec.check_mx(MXLevel.MX_MTASTS, "example.net", MX, False) is MXLevel.MX_MTASTS
    assert await dnssec.check_conn(MXLevel.MX_DNSSEC, ENCRYPTED, "x", MX, TLS) is ENCRYPTED


def test_policies_apply_in_weight_order_as_maddy_orders_them() -> None:
    built = [
        policy(name)
        for name in ("mx_auth.local_policy", "mx_auth.mtasts", "mx_auth.dnssec", "mx_auth.dane")
    ]
    order = [type(p).__name__ for p in PolicyGroup(built).policies]
    assert order == ["DNSSECPolicy", "MTASTSPolicy", "DANEPolicy", "LocalPolicy"]
    assert all(isinstance(p, MXAuthPolicy) for p in built)


async def test_a_group_lets_local_policy_judge_the_level_the_others_established() -> None:
    group = PolicyGroup(
        [policy("mx_auth.local_policy", {"min_mx_level": "dnssec"}), policy("mx_auth.dnssec")]
    ).start(META)
    assert await group.check_mx("example.net", MX, True) is MXLevel.MX_DNSSEC
    with pytest.raises(SMTPError, match="MX record authenticity"):
        await group.check_mx("example.net", MX, False)


# DANE, against a loopback DNS server whose "signed" zone answers with the AD bit.


@pytest.fixture(scope="module")
def certs() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    ca = trustme.CA()
    return chain(ca.issue_cert(MX)), chain(ca.issue_cert(MX))


def dane_zone(dns_server: DNSServer, leaf: tuple[bytes, ...], *, authenticated: bool) -> None:
    records = [
        "mx A 127.0.0.1",
        zone_line("mx", tlsa(3, 1, 1, leaf[0])),
        "plain A 127.0.0.1",
        "junk A 127.0.0.1",
        zone_line("junk", tlsa(1, 1, 1, leaf[0])),
    ]
    dns_server.add_zone("\n".join(records), origin="example.net", authenticated=authenticated)


async def dane_check(
    dns_server: DNSServer, mx: str, state: TLSState, *, mx_signed: bool = True
) -> TLSLevel:
    dane = delivery("mx_auth.dane", dns_port=dns_server.port)
    await dane.prepare_conn(mx)
    level = await dane.check_mx(MXLevel.MX_NONE, "example.net", mx, mx_signed)
    return await dane.check_conn(level, ENCRYPTED, "example.net", mx, state)


async def test_dane_authenticates_a_certificate_matching_the_tlsa_record(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=True)
    state = TLSState(peer_certificates=certs[0])
    assert await dane_check(dns_server, MX, state) is AUTHENTICATED


async def test_dane_refuses_a_certificate_not_matching_the_tlsa_record(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=True)
    with pytest.raises(SMTPError, match="matches no TLSA record") as refused:
        await dane_check(dns_server, MX, TLSState(peer_certificates=certs[1]))
    assert refused.value.enhanced_code == (4, 7, 5)


async def test_dane_requires_tls_where_tlsa_records_exist(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=True)
    with pytest.raises(SMTPError, match="TLS is required by DANE"):
        await dane_check(dns_server, MX, NO_TLS)
    with pytest.raises(SMTPError, match="TLS is required by DANE"):
        await dane_check(dns_server, "junk.example.net", NO_TLS)


async def test_dane_with_only_unusable_records_asks_tls_but_not_authentication(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=True)
    state = TLSState(peer_certificates=certs[1])
    assert await dane_check(dns_server, "junk.example.net", state) is ENCRYPTED


async def test_dane_does_not_apply_without_records_or_validation(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=False)
    assert await dane_check(dns_server, MX, NO_TLS) is ENCRYPTED
    dns_server.remove_zone("example.net")
    dane_zone(dns_server, certs[0], authenticated=True)
    assert await dane_check(dns_server, "plain.example.net", NO_TLS) is ENCRYPTED
    assert await dane_check(dns_server, MX, NO_TLS, mx_signed=False) is ENCRYPTED
    assert await dane_check(dns_server, "127.0.0.1", NO_TLS) is ENCRYPTED


async def test_dane_defers_an_mx_whose_tlsa_lookup_fails(
    dns_server: DNSServer, certs: tuple[tuple[bytes, ...], ...]
) -> None:
    dane_zone(dns_server, certs[0], authenticated=True)
    dns_server.fail(f"_25._tcp.{MX}", "SERVFAIL")
    with pytest.raises(SMTPError, match="TLSA lookup failed") as refused:
        await dane_check(dns_server, MX, TLSState(peer_certificates=certs[0]))
    assert refused.value.code == 451
