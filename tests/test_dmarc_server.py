"""`dmarc = true` in the server's TOML: DMARC after check.dkim, on the server's resolver."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailmodule import ConfigError, Header, MsgMetadata, Registry
from mailmodule.buffer import MemoryBuffer
from mailmodule.dns import Resolver
from mailmodule.modules import SPFCheck
from mailmodule.pipeline import parse_authentication_results
from mailmodule.server import Server
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import key_records, message, parse, publish, rsa_key, signed

CONFIG = """
hostname = "mx.example.net"

[modules.dkim]
module = "check.dkim"

[modules.inbox]
module = "target.maildir"
autocreate = true
root = "{root}"

[pipeline]
checks = ["&dkim"]
dmarc = {dmarc}
default = {{ targets = ["&inbox"] }}
"""


def server(tmp_path: Path, dns: DNSServer, dmarc: str = "true") -> Server:
    registry = Registry(discover_plugins=False)
    registry.register_instance(Resolver(), {"nameservers": ["127.0.0.1"], "port": dns.port})
    data = tomllib.loads(CONFIG.format(root=tmp_path / "inbox", dmarc=dmarc))
    built = Server(data, registry=registry)
    built.initialize()
    return built


async def test_dmarc_true_adds_a_dmarc_result_found_through_the_servers_resolver(
    tmp_path: Path, dns_server: DNSServer
) -> None:
    publish(dns_server, "example.org", {**key_records(), "_dmarc": "v=DMARC1; p=reject"})
    built = server(tmp_path, dns_server)
    header, body = parse(signed(message(), rsa_key()))
    async with await built.pipeline.start(MsgMetadata(id="m1"), "joe@example.org") as delivery:
        await delivery.add_rcpt("suzie@example.net")
        await delivery.body(header, MemoryBuffer(body))
        await delivery.commit()
    (stored,) = (tmp_path / "inbox").glob("*/new/*")
    field = Header.parse(stored.read_bytes().split(b"\r\n\r\n")[0] + b"\r\n")
    _, results = parse_authentication_results(field.values("Authentication-Results")[0])
    assert [(r.method, r.result) for r in results] == [("dkim", "pass"), ("dmarc", "none")]
    assert results[1].get("header", "from") == "example.org"  # none: no SPF result yet
    assert any(q.name == "_dmarc.example.org" for q in dns_server.queries)


def test_dmarc_must_be_true_or_false(tmp_path: Path, dns_server: DNSServer) -> None:
    with pytest.raises(ConfigError) as info:
        server(tmp_path, dns_server, dmarc='"yes"')
    assert (info.value.section, info.value.key) == ("pipeline", "dmarc")


def test_dmarc_false_adds_no_evaluation(tmp_path: Path, dns_server: DNSServer) -> None:
    assert server(tmp_path, dns_server, dmarc="false").pipeline.result_checks == ()


SPF_CONFIG = """
[modules.spf]
module = "check.spf"

[modules.inbox]
module = "target.maildir"
autocreate = true
root = "{root}"

[pipeline]
checks = ["&spf"]
dmarc = {dmarc}
default = {{ targets = ["&inbox"] }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]

[endpoints.pipeline]
checks = ["&spf"]
dmarc = {second}
default = {{ targets = ["&inbox"] }}
"""


@pytest.mark.parametrize(
    ("dmarc", "second", "follows"),
    [("true", "true", True), ("false", "false", False), ("true", "false", False)],
)
def test_spf_leaves_its_action_to_dmarc_only_where_every_pipeline_has_it(
    tmp_path: Path, dns_server: DNSServer, dmarc: str, second: str, follows: bool
) -> None:
    registry = Registry(discover_plugins=False)
    registry.register_instance(Resolver(), {"nameservers": ["127.0.0.1"], "port": dns_server.port})
    text = SPF_CONFIG.format(root=tmp_path / "inbox", dmarc=dmarc, second=second)
    built = Server(tomllib.loads(text), registry=registry)
    built.initialize()
    spf = registry.get_instance("spf")
    assert isinstance(spf, SPFCheck)
    assert spf.dmarc_follows is follows
