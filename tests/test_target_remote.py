"""target.remote against our own endpoint as the MX, found through a loopback DNS server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from mailmodule import (
    ConfigError,
    ConfigMap,
    Header,
    MemoryBuffer,
    ModuleInitError,
    MsgMetadata,
    SMTPError,
)
from mailmodule.dns import Resolver
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.interfaces import PartialDelivery
from mailmodule.metadata import MailOptions
from mailmodule.modules import FileTLSLoader, RemoteTarget
from mailmodule.pipeline import Destination, Pipeline
from mailmodule.testing.dnsserver import DNSServer
from tests.endpoint_kit import endpoint, self_signed
from tests.modules_kit import build, new_registry
from tests.mx_auth_kit import policy_host
from tests.pipeline_kit import MemoryTarget

HEADER = Header([("From", "a@sender.example"), ("Subject", "Hello")])
BODY = b"Hi there.\r\n"
ZONE = """\
@ MX 20 mx
@ MX 10 dead
mx A 127.0.0.1
dead A 127.0.0.2
nomx.example.net. A 127.0.0.1
null.example.net. MX 0 .
"""


class Collector:
    def __init__(self) -> None:
        self.statuses: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses[rcpt_to] = err


class MX:
    """Our endpoint listening on 127.0.0.1, keeping what it receives."""

    def __init__(self, ep: SMTPEndpoint, memory: MemoryTarget, port: int) -> None:
        self.ep, self.memory, self.port = ep, memory, port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed(tmp_path_factory.mktemp("tls"), "mx.example.net")


async def start_mx(certificate: tuple[str, str] | None) -> MX:
    memory = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[memory])))
    if certificate is not None:
        loader = FileTLSLoader("tls.loader.file", "certs")
        loader.init(ConfigMap({"certs": [list(certificate)]}))
        ep.tls = loader
    ((_, port),) = await ep.start()
    return MX(ep, memory, port)


@pytest.fixture
async def mx(certificate: tuple[str, str]) -> AsyncIterator[MX]:
    server = await start_mx(certificate)
    yield server
    await server.ep.stop()


@pytest.fixture
async def plain_mx() -> AsyncIterator[MX]:
    server = await start_mx(None)
    yield server
    await server.ep.stop()


_BUILT: list[RemoteTarget] = []


@pytest.fixture(autouse=True)
async def close_targets() -> AsyncIterator[None]:
    """Each target the test built closes its idle sessions at the end, as at shutdown."""
    yield
    while _BUILT:
        await _BUILT.pop().aclose()


def remote(
    dns_server: DNSServer,
    port: int,
    ca_file: str | None = None,
    policies: dict[str, dict[str, object]] | None = None,
    **settings: object,
) -> RemoteTarget:
    dns_server.add_zone(ZONE, origin="example.net")
    registry = new_registry()
    registry.register_instance(
        Resolver(nameservers=["127.0.0.1"], port=dns_server.port),
        {"nameservers": ["127.0.0.1"], "port": dns_server.port},
    )
    for name, policy_settings in (policies or {}).items():
        build(registry, f"mx_auth.{name}", name, policy_settings)
    full = {"hostname": "out.sender.example", "smtp_port": port, "connect_timeout": "5s"}
    if ca_file is not None:
        full["tls_root_ca"] = ca_file
    full |= {"mx_auth": list(policies or {}), **settings}
    target = build(registry, "target.remote", "remote", full)
    assert isinstance(target, RemoteTarget)
    _BUILT.append(target)
    return target


async def send(target: RemoteTarget, rcpts: list[str], meta: MsgMetadata | None = None) -> None:
    delivery = await target.start(meta or MsgMetadata(id="m"), "a@sender.example")
    try:
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.body(HEADER, MemoryBuffer(BODY))
    except BaseException:
        await delivery.abort()
        raise
    await delivery.commit()


async def test_mail_goes_to_the_mx_by_preference_past_a_dead_one_over_verified_tls(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    target = remote(
        dns_server, mx.port, certificate[0], {"local_policy": {"min_tls_level": "authenticated"}}
    )
    await send(target, ["joe@example.net"])
    (stored,) = mx.memory.messages
    assert stored.rcpts == ["joe@example.net"]
    assert stored.meta.conn is not None
    assert stored.meta.conn.tls is not None


async def test_a_domain_without_mx_records_gets_mail_at_its_address(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    """nomx.example.net is not the certificate's name: TLS without authentication."""
    await send(remote(dns_server, mx.port, certificate[0]), ["joe@nomx.example.net"])
    assert [m.rcpts for m in mx.memory.messages] == [["joe@nomx.example.net"]]


async def test_min_tls_level_authenticated_refuses_a_certificate_for_another_name(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    policies: dict[str, dict[str, object]] = {"local_policy": {"min_tls_level": "authenticated"}}
    target = remote(dns_server, mx.port, certificate[0], policies)
    with pytest.raises(SMTPError, match="No usable MX") as refused:
        await send(target, ["joe@nomx.example.net"])
    assert refused.value.enhanced_code == (4, 7, 1)
    assert mx.memory.messages == []


async def test_min_tls_level_refuses_an_mx_without_starttls(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    target = remote(dns_server, plain_mx.port, None, {"local_policy": {}})
    with pytest.raises(SMTPError, match="TLS is not available") as refused:
        await send(target, ["joe@example.net"])
    assert refused.value.code == 451
    assert plain_mx.memory.messages == []


async def test_without_policies_an_mx_without_starttls_gets_the_mail(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    await send(remote(dns_server, plain_mx.port), ["joe@example.net"])
    assert len(plain_mx.memory.messages) == 1


async def test_a_null_mx_refuses_mail_permanently(dns_server: DNSServer, mx: MX) -> None:
    with pytest.raises(SMTPError, match="null MX") as refused:
        await send(remote(dns_server, mx.port), ["joe@null.example.net"])
    assert (refused.value.code, refused.value.enhanced_code) == (556, (5, 1, 10))


async def test_a_domain_that_does_not_exist_fails_permanently(
    dns_server: DNSServer, mx: MX
) -> None:
    with pytest.raises(SMTPError, match="does not exist") as refused:
        await send(remote(dns_server, mx.port), ["joe@gone.example.net"])
    assert refused.value.code == 554


async def test_an_mx_lookup_failing_for_now_fails_temporarily(
    dns_server: DNSServer, mx: MX
) -> None:
    target = remote(dns_server, mx.port)
    dns_server.fail("broken.example.net", "SERVFAIL")
    with pytest.raises(SMTPError, match="MX lookup failed") as refused:
        await send(target, ["joe@broken.example.net"])
    assert (refused.value.code, refused.value.enhanced_code) == (451, (4, 4, 4))


async def test_an_address_literal_is_delivered_to_as_it_is(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    await send(remote(dns_server, mx.port, certificate[0]), ["joe@[127.0.0.1]"])
    assert [m.rcpts for m in mx.memory.messages] == [["joe@[127.0.0.1]"]]


async def test_requiretls_refuses_an_mx_not_authenticated_by_mta_sts_or_dnssec(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    target = remote(dns_server, mx.port, certificate[0])
    meta = MsgMetadata(id="m", smtp_opts=MailOptions(require_tls=True))
    with pytest.raises(SMTPError, match="REQUIRETLS") as refused:
        await send(target, ["joe@example.net"], meta)
    assert (refused.value.code, refused.value.enhanced_code) == (550, (5, 7, 30))
    assert mx.memory.messages == []


async def test_quarantined_mail_is_refused_unless_configured(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    quarantined = MsgMetadata(id="m", quarantine=True)
    with pytest.raises(SMTPError, match="quarantined") as refused:
        await send(remote(dns_server, mx.port, certificate[0]), ["joe@example.net"], quarantined)
    assert refused.value.code == 554
    target = remote(dns_server, mx.port, certificate[0], deliver_quarantined=True)
    await send(target, ["joe@example.net"], quarantined)
    assert len(mx.memory.messages) == 1


async def test_each_recipient_gets_the_outcome_of_its_own_domain(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    target = remote(dns_server, mx.port, certificate[0])
    delivery = await target.start(MsgMetadata(id="m"), "a@sender.example")
    for rcpt in ("joe@example.net", "ann@example.net", "bob@nomx.example.net"):
        await delivery.add_rcpt(rcpt)
    assert isinstance(delivery, PartialDelivery)
    collector = Collector()
    await delivery.body_non_atomic(collector, HEADER, MemoryBuffer(BODY))
    await delivery.commit()
    assert collector.statuses == dict.fromkeys(
        ["joe@example.net", "ann@example.net", "bob@nomx.example.net"]
    )
    assert sorted(m.rcpts for m in mx.memory.messages) == [
        ["bob@nomx.example.net"],
        ["joe@example.net", "ann@example.net"],
    ]


def test_an_mx_auth_name_that_is_no_policy_is_a_config_error() -> None:
    with pytest.raises(ModuleInitError) as failed:
        build(new_registry(), "target.remote", "remote", {"mx_auth": ["nothing"]})
    assert isinstance(failed.value.__cause__, ConfigError)
    assert failed.value.__cause__.key == "mx_auth"


async def test_an_enforced_mta_sts_policy_keeps_mail_from_an_mx_it_does_not_list(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str], tmp_path: Path
) -> None:
    """other.example's MX is mx.example.net; its policy lists only *.other.example."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    dns_server.add_zone(
        '@ MX 10 mx.example.net.\n_mta-sts TXT "v=STSv1; id=1;"\nmta-sts A 127.0.0.1',
        origin="other.example",
    )
    body = b"version: STSv1\nmode: enforce\nmx: *.other.example\nmax_age: 600\n"
    async with policy_host(ca, "mta-sts.other.example", body=body) as host:
        policies: dict[str, dict[str, object]] = {
            "mtasts": {"ca_file": str(ca_file), "policy_port": host.port}
        }
        target = remote(dns_server, mx.port, certificate[0], policies)
        with pytest.raises(SMTPError, match="MTA-STS") as refused:
            await send(target, ["joe@other.example"])
        await send(target, ["joe@example.net"])  # no policy there: delivered
    assert refused.value.code == 451
    assert [m.rcpts for m in mx.memory.messages] == [["joe@example.net"]]


async def test_a_domain_whose_mx_failed_is_not_looked_up_again_for_its_next_recipient(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    target = remote(dns_server, plain_mx.port, None, {"local_policy": {}})
    delivery = await target.start(MsgMetadata(id="m"), "a@sender.example")
    with pytest.raises(SMTPError) as first:
        await delivery.add_rcpt("joe@example.net")
    asked = len(dns_server.queries)
    with pytest.raises(SMTPError) as second:
        await delivery.add_rcpt("ann@example.net")
    await delivery.abort()
    assert second.value is first.value
    assert len(dns_server.queries) == asked


POOL_ZONES = {
    "other.example": "@ MX 10 mx\nmx A 127.0.0.1",  # its own MX host, the same address
    "alias.example": "@ MX 10 mx.example.net.",  # served by example.net's MX host
}


async def test_two_messages_to_one_domain_share_one_connection(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    target = remote(dns_server, mx.port, certificate[0])
    await send(target, ["joe@example.net"])
    await send(target, ["ann@example.net"])
    assert [m.rcpts for m in mx.memory.messages] == [["joe@example.net"], ["ann@example.net"]]
    assert mx.ep.sessions_started == 1


async def test_an_idle_connection_the_mx_closed_is_replaced_transparently(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    target = remote(dns_server, plain_mx.port)
    await send(target, ["joe@example.net"])
    await plain_mx.ep.stop()  # closes the session the target keeps idle
    again = SMTPEndpoint("smtp", [f"127.0.0.1:{plain_mx.port}"])
    again.init(ConfigMap({"hostname": "mx.test"}))
    again.pipeline = Pipeline(default=Destination(targets=[plain_mx.memory]))
    await again.start()
    try:
        await send(target, ["ann@example.net"])
    finally:
        await target.aclose()
        await again.stop()
    assert [m.rcpts for m in plain_mx.memory.messages] == [["joe@example.net"], ["ann@example.net"]]
    assert again.sessions_started == 1


async def test_an_idle_connection_older_than_the_idle_timeout_is_not_reused(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    target = remote(dns_server, plain_mx.port, idle_timeout="0s")
    await send(target, ["joe@example.net"])
    await send(target, ["ann@example.net"])
    assert len(plain_mx.memory.messages) == 2
    assert plain_mx.ep.sessions_started == 2


async def test_domains_share_a_connection_only_through_the_same_mx_host(
    dns_server: DNSServer, plain_mx: MX
) -> None:
    target = remote(dns_server, plain_mx.port)
    for origin, zone in POOL_ZONES.items():
        dns_server.add_zone(zone, origin=origin)
    await send(target, ["joe@example.net"])
    await send(target, ["ann@alias.example"])  # mx.example.net again: its idle session
    assert plain_mx.ep.sessions_started == 1
    await send(target, ["bob@other.example"])  # mx.other.example: the same address, no matter
    assert plain_mx.ep.sessions_started == 2
    assert len(plain_mx.memory.messages) == 3


async def test_a_reused_connection_is_judged_at_the_tls_level_it_reached(
    dns_server: DNSServer, mx: MX, certificate: tuple[str, str]
) -> None:
    """nomx.example.net's certificate check fails: its session is only encrypted, which
    the policy refuses, when it is new and again when it is reused; example.net's MX
    host, whose certificate checks, gets its own authenticated session."""
    policies: dict[str, dict[str, object]] = {"local_policy": {"min_tls_level": "authenticated"}}
    target = remote(dns_server, mx.port, certificate[0], policies)
    with pytest.raises(SMTPError, match="No usable MX"):
        await send(target, ["joe@nomx.example.net"])
    opened = mx.ep.sessions_started
    with pytest.raises(SMTPError, match="No usable MX") as refused:
        await send(target, ["ann@nomx.example.net"])
    assert refused.value.enhanced_code == (4, 7, 1)
    assert mx.ep.sessions_started == opened  # the refused session was reused, not remade
    await send(target, ["bob@example.net"])
    assert mx.ep.sessions_started == opened + 1
    assert [m.rcpts for m in mx.memory.messages] == [["bob@example.net"]]
