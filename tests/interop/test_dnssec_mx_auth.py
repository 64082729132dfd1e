"""The mx_auth policies against real DNSSEC: Knot DNS signs the zones, Unbound validates
them (tests/interop/dnssec_kit.py), and the policies judge what the AD bit says.

signed.example is signed and anchored, plain.example unsigned, bogus.example signed with
a trust anchor that does not match (every answer SERVFAILs, as under a broken signature).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from mailmodule import MsgMetadata
from mailmodule.dns import DNSTemporaryError
from mailmodule.errors import SMTPError
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import TLSState
from mailmodule.modules.mx_auth import MTASTSPolicy, PolicyGroup
from tests.interop.dnssec_kit import SignedDNS
from tests.mx_auth_kit import chain, policy, policy_host, tlsa, zone_line

META = MsgMetadata(id="m")
ENCRYPTED, AUTHENTICATED = TLSLevel.TLS_ENCRYPTED, TLSLevel.TLS_AUTHENTICATED
POLICY = b"version: STSv1\nmode: enforce\nmx: *.signed.example\nmax_age: 600\n"


class Certs:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        intermediate = self.ca.create_child_ca()
        self.mx = chain(self.ca.issue_cert("mx.signed.example", "mx.plain.example"))
        self.other = chain(self.ca.issue_cert("bad.signed.example"))
        self.ta = chain(intermediate.issue_cert("ta.signed.example"))


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs()


@pytest.fixture(scope="module")
def signed_dns(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SignedDNS]:
    mx_record = tlsa(3, 1, 1, certs.mx[0])
    signed = [
        "@ MX 10 mx",
        "mx A 127.0.0.1",
        zone_line("mx", mx_record),
        "bad A 127.0.0.1",
        zone_line("bad", mx_record),
        "ta A 127.0.0.1",
        zone_line("ta", tlsa(2, 0, 1, certs.ta[1])),
        '_mta-sts TXT "v=STSv1; id=1;"',
        "mta-sts A 127.0.0.1",
    ]
    plain = ["@ MX 10 mx", "mx A 127.0.0.1", zone_line("mx", tlsa(3, 1, 1, certs.other[0]))]
    bogus = ["@ MX 10 mx", "mx A 127.0.0.1", zone_line("mx", mx_record)]
    with SignedDNS.start(
        tmp_path_factory.mktemp("dnssec"),
        {"signed.example": signed},
        unsigned={"plain.example": plain},
        bogus={"bogus.example": bogus},
    ) as running:
        yield running


async def test_unbound_marks_the_signed_zone_authenticated_and_the_others_not(
    signed_dns: SignedDNS,
) -> None:
    resolver = signed_dns.resolver()
    assert (await resolver.mx("signed.example")).authenticated
    assert not (await resolver.mx("plain.example")).authenticated
    with pytest.raises(DNSTemporaryError, match="SERVFAIL"):
        await resolver.mx("bogus.example")


async def test_mx_auth_dnssec_raises_only_the_validated_mx(signed_dns: SignedDNS) -> None:
    resolver = signed_dns.resolver()
    dnssec = policy("mx_auth.dnssec", dns_port=signed_dns.port).start(META)
    levels = []
    for domain in ("signed.example", "plain.example"):
        answer = await resolver.mx(domain)
        mx = answer.records[0].exchange
        levels.append(await dnssec.check_mx(MXLevel.MX_NONE, domain, mx, answer.authenticated))
    assert levels == [MXLevel.MX_DNSSEC, MXLevel.MX_NONE]


async def dane(signed_dns: SignedDNS, domain: str, mx: str, state: TLSState) -> TLSLevel:
    delivery = policy("mx_auth.dane", dns_port=signed_dns.port).start(META)
    await delivery.prepare_conn(mx)
    secure = (await signed_dns.resolver().mx(domain)).authenticated
    level = await delivery.check_mx(MXLevel.MX_NONE, domain, mx, secure)
    return await delivery.check_conn(level, ENCRYPTED, domain, mx, state)


async def test_dane_ee_from_a_validated_tlsa_record_authenticates_the_mx(
    signed_dns: SignedDNS, certs: Certs
) -> None:
    state = TLSState(peer_certificates=certs.mx)
    assert await dane(signed_dns, "signed.example", "mx.signed.example", state) is AUTHENTICATED


async def test_dane_ta_from_a_validated_tlsa_record_authenticates_the_mx(
    signed_dns: SignedDNS, certs: Certs
) -> None:
    state = TLSState(peer_certificates=certs.ta)
    assert await dane(signed_dns, "signed.example", "ta.signed.example", state) is AUTHENTICATED


async def test_dane_refuses_a_certificate_not_matching_the_validated_record(
    signed_dns: SignedDNS, certs: Certs
) -> None:
    state = TLSState(peer_certificates=certs.other)
    with pytest.raises(SMTPError, match="matches no TLSA record"):
        await dane(signed_dns, "signed.example", "bad.signed.example", state)


async def test_dane_refuses_plaintext_to_an_mx_with_validated_records(
    signed_dns: SignedDNS,
) -> None:
    state = TLSState(handshake_complete=False)
    with pytest.raises(SMTPError, match="TLS is required by DANE"):
        await dane(signed_dns, "signed.example", "mx.signed.example", state)


async def test_dane_ignores_tlsa_records_of_an_unsigned_zone(
    signed_dns: SignedDNS, certs: Certs
) -> None:
    state = TLSState(peer_certificates=certs.mx)  # does not match plain's record: unused
    assert await dane(signed_dns, "plain.example", "mx.plain.example", state) is ENCRYPTED


async def test_dane_defers_an_mx_of_a_zone_that_fails_validation(
    signed_dns: SignedDNS, certs: Certs
) -> None:
    delivery = policy("mx_auth.dane", dns_port=signed_dns.port).start(META)
    await delivery.prepare_conn("mx.bogus.example")
    await delivery.check_mx(MXLevel.MX_NONE, "bogus.example", "mx.bogus.example", True)
    state = TLSState(peer_certificates=certs.mx)
    with pytest.raises(SMTPError, match="TLSA lookup failed") as refused:
        await delivery.check_conn(
            MXLevel.MX_NONE, ENCRYPTED, "bogus.example", "mx.bogus.example", state
        )
    assert refused.value.code == 451


async def test_all_policies_together_refuse_a_missing_starttls_and_an_mx_off_the_policy(
    signed_dns: SignedDNS, certs: Certs, tmp_path: Path
) -> None:
    """The `_mta-sts` record comes validated from Unbound; the policy from HTTPS."""
    ca_file = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca_file))
    async with policy_host(certs.ca, "mta-sts.signed.example", body=POLICY) as host:
        settings = {"ca_file": str(ca_file), "policy_port": host.port}
        mtasts = policy("mx_auth.mtasts", settings, dns_port=signed_dns.port)
        assert isinstance(mtasts, MTASTSPolicy)
        group = PolicyGroup(
            [
                policy(
                    "mx_auth.local_policy", {"min_mx_level": "mtasts"}, dns_port=signed_dns.port
                ),
                mtasts,
                policy("mx_auth.dane", dns_port=signed_dns.port),
                policy("mx_auth.dnssec", dns_port=signed_dns.port),
            ]
        ).start(META)
        await group.prepare_domain("signed.example")
        level = await group.check_mx("signed.example", "mx.signed.example", True)
        assert level is MXLevel.MX_DNSSEC
        with pytest.raises(SMTPError, match="not listed"):
            await group.check_mx("signed.example", "mx.plain.example", False)
        await group.prepare_conn("mx.signed.example")
        plaintext = TLSState(handshake_complete=False)
        with pytest.raises(SMTPError, match="TLS is required by MTA-STS"):
            await group.check_conn(
                level, TLSLevel.TLS_NONE, "signed.example", "mx.signed.example", plaintext
            )
        verified = TLSState(peer_certificates=certs.mx)
        found = await group.check_conn(
            level, AUTHENTICATED, "signed.example", "mx.signed.example", verified
        )
        assert found is AUTHENTICATED
