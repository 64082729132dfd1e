"""The `[dns]` table of the server configuration, and check.iprev on the shared resolver."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailmodule import ConnState, MsgMetadata, Resolved
from mailmodule.config import ConfigMap
from mailmodule.dns import Resolver, shared_resolver
from mailmodule.errors import ConfigError
from mailmodule.interfaces import AuthResult
from mailmodule.modules import IPRevCheck
from mailmodule.server import Server
from mailmodule.testing.dnsserver import DNSServer
from tests.modules_kit import build, new_registry


def server_with(dns: dict[str, object], modules: dict[str, object] | None = None) -> Server:
    server = Server({"dns": dns, "modules": modules or {}}, source="mail.toml")
    server.initialize()
    return server


def test_the_dns_table_configures_the_shared_resolver(dns_server: DNSServer) -> None:
    server = server_with(
        {"nameservers": ["127.0.0.1"], "port": dns_server.port, "dnssec": True},
        {"rev": {"module": "check.iprev"}},
    )
    resolver = server.registry.get_instance("dns")
    assert isinstance(resolver, Resolver)
    assert resolver.settings.port == dns_server.port
    assert resolver.settings.dnssec
    check = server.registry.get_instance("rev")
    assert isinstance(check, IPRevCheck)
    assert check.resolver is resolver


def test_a_bad_dns_setting_names_the_file_the_table_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        server_with({"port": "fifty-three"})
    assert (info.value.file, info.value.section, info.value.key) == ("mail.toml", "dns", "port")


def test_an_unknown_dns_setting_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        server_with({"nameserver": ["127.0.0.1"]})
    assert (info.value.section, info.value.key) == ("dns", "nameserver")


def test_a_module_may_not_take_the_name_dns() -> None:
    with pytest.raises(ConfigError, match=r"\[dns\]"):
        server_with({}, {"dns": {"module": "table.static"}})


def test_without_a_dns_table_modules_share_the_default_resolver() -> None:
    server = Server({"modules": {"rev": {"module": "check.iprev"}}})
    server.initialize()
    check = server.registry.get_instance("rev")
    assert isinstance(check, IPRevCheck)
    assert check.resolver is shared_resolver(ConfigMap({}, resolver=server.registry.get_instance))


# check.iprev


def iprev_for(server: DNSServer) -> IPRevCheck:
    registry = new_registry()
    registry.register_instance(Resolver(), {"nameservers": ["127.0.0.1"], "port": server.port})
    check = build(registry, "check.iprev", "rev", {"timeout": "500ms"})
    assert isinstance(check, IPRevCheck)
    return check


async def iprev(check: IPRevCheck, ip: str, name: str) -> AuthResult:
    conn = ConnState(remote_addr=f"{ip}:25", rdns_name=Resolved(name))
    state = await check.check_state_for_msg(MsgMetadata(id="m", conn=conn))
    (result,) = (await state.check_connection()).auth_result
    return result


@pytest.fixture
def reverse(dns_server: DNSServer) -> DNSServer:
    dns_server.add_zone("mail A 192.0.2.1\nv6 AAAA 2001:db8::1", origin="example.org")
    return dns_server


async def test_iprev_passes_a_name_that_points_back(reverse: DNSServer) -> None:
    check = iprev_for(reverse)
    assert (await iprev(check, "192.0.2.1", "mail.example.org")).result == "pass"
    assert (await iprev(check, "[2001:db8::1]", "v6.example.org")).result == "pass"


async def test_iprev_fails_a_name_that_points_elsewhere(reverse: DNSServer) -> None:
    check = iprev_for(reverse)
    assert (await iprev(check, "192.0.2.9", "mail.example.org")).result == "fail"
    assert (await iprev(check, "192.0.2.9", "missing.example.org")).result == "fail"


async def test_iprev_is_a_temperror_when_the_dns_fails(reverse: DNSServer) -> None:
    reverse.fail("mail.example.org", "SERVFAIL")
    assert (await iprev(iprev_for(reverse), "192.0.2.1", "mail.example.org")).result == (
        "temperror"
    )


def test_the_examples_of_docs_dns_md_configure_a_server() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "dns.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    for block in blocks:
        Server(tomllib.loads(block), source="docs/dns.md").initialize()
    assert len(blocks) == 2
