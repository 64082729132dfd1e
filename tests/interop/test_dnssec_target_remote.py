"""target.remote with mx_auth.dane over real DNSSEC (Knot signing, Unbound validating):
a self-signed MX certificate no CA vouches for is authenticated by its TLSA record, and
an MX whose certificate does not match its record gets nothing."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailmodule import ConfigMap, Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.dns import Resolver
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.modules import FileTLSLoader, RemoteTarget
from mailmodule.pipeline import Destination, Pipeline
from tests.endpoint_kit import endpoint, self_signed
from tests.interop.dnssec_kit import SignedDNS
from tests.modules_kit import build, new_registry
from tests.mx_auth_kit import tlsa, zone_line
from tests.pipeline_kit import MemoryTarget

HEADER = Header([("From", "a@sender.example"), ("Subject", "DANE")])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[str, str], bytes]:
    """The MX's self-signed certificate and key, and another certificate's DER."""
    directory = tmp_path_factory.mktemp("certs")
    mine = self_signed(directory, "mx.dane.example")
    other = self_signed(directory, "other.dane.example")
    return mine, ssl.PEM_cert_to_DER_cert(Path(other[0]).read_text())


@pytest.fixture(scope="module")
def signed_dns(
    tmp_path_factory: pytest.TempPathFactory, certificates: tuple[tuple[str, str], bytes]
) -> Iterator[SignedDNS]:
    (cert, _key), other = certificates
    mine = ssl.PEM_cert_to_DER_cert(Path(cert).read_text())
    records = [
        "@ MX 10 mx",
        "mx A 127.0.0.1",
        zone_line("mx", tlsa(3, 1, 1, mine)),
        "bad MX 10 badmx",
        "badmx A 127.0.0.1",
        zone_line("badmx", tlsa(3, 1, 1, other)),
    ]
    with SignedDNS.start(tmp_path_factory.mktemp("dns"), {"dane.example": records}) as running:
        yield running


@pytest.fixture
async def mx(
    certificates: tuple[tuple[str, str], bytes],
) -> AsyncIterator[tuple[MemoryTarget, int]]:
    memory = MemoryTarget()
    ep: SMTPEndpoint = endpoint("smtp", Pipeline(default=Destination(targets=[memory])))
    loader = FileTLSLoader("tls.loader.file", "certs")
    loader.init(ConfigMap({"certs": [list(certificates[0])]}))
    ep.tls = loader
    ((_, port),) = await ep.start()
    yield memory, port
    await ep.stop()


def remote(signed_dns: SignedDNS, port: int) -> RemoteTarget:
    registry = new_registry()
    dns_settings = {"nameservers": ["127.0.0.1"], "port": signed_dns.port, "dnssec": True}
    registry.register_instance(Resolver(nameservers=["127.0.0.1"]), dns_settings)
    build(registry, "mx_auth.dane", "dane", {})
    build(registry, "mx_auth.local_policy", "local", {"min_tls_level": "authenticated"})
    settings = {"smtp_port": port, "mx_auth": ["dane", "local"], "hostname": "out.test"}
    target = build(registry, "target.remote", "remote", settings)
    assert isinstance(target, RemoteTarget)
    return target


async def test_a_tlsa_record_authenticates_a_self_signed_mx(
    signed_dns: SignedDNS, mx: tuple[MemoryTarget, int]
) -> None:
    memory, port = mx
    delivery = await remote(signed_dns, port).start(MsgMetadata(id="m"), "a@sender.example")
    await delivery.add_rcpt("joe@dane.example")
    await delivery.body(HEADER, MemoryBuffer(b"Vouched for by DNSSEC.\r\n"))
    await delivery.commit()
    assert [m.rcpts for m in memory.messages] == [["joe@dane.example"]]


async def test_an_mx_whose_certificate_does_not_match_its_tlsa_record_gets_nothing(
    signed_dns: SignedDNS, mx: tuple[MemoryTarget, int]
) -> None:
    memory, port = mx
    delivery = await remote(signed_dns, port).start(MsgMetadata(id="m"), "a@sender.example")
    with pytest.raises(SMTPError, match="matches no TLSA record") as refused:
        await delivery.add_rcpt("joe@bad.dane.example")
    await delivery.abort()
    assert refused.value.code == 451
    assert memory.messages == []
