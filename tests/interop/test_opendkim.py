"""DKIM against OpenDKIM (Debian's opendkim): what it signs passes check.dkim, what
modify.dkim signs passes opendkim, and a changed body fails both.

opendkim runs in its test mode (`-t FILE`), which signs or verifies one message and exits;
it reads our public key from `TestDNSData` (it cannot be pointed at a DNS server's port),
while check.dkim reads opendkim's key from the loopback DNS server.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from mailmodule.config import ConfigMap
from mailmodule.modules.dkim import DKIMSigner
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import BODY, HEADER, dkim_check, message, only, publish, run_check
from tests.interop.conftest import require_peer
from tests.test_dkim_modify import sign


@pytest.fixture
def opendkim() -> str:
    return require_peer("opendkim")


def run(opendkim: str, conf: Path, message_file: Path) -> str:
    done = subprocess.run(
        [opendkim, "-x", str(conf), "-t", str(message_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def new_key(tmp_path: Path, kind: str = "rsa2048") -> tuple[Path, str]:
    """A key made by modify.dkim's key generation: its file and its TXT record."""
    signer = DKIMSigner()
    template = str(tmp_path / "{domain}_{selector}.key")
    settings = {"domains": ["example.org"], "selector": "od", "key_path": template}
    signer.init(ConfigMap({**settings, "newkey_algo": kind}, module="modify.dkim"))
    return tmp_path / "example.org_od.key", (tmp_path / "example.org_od.dns").read_text().strip()


async def opendkim_signed(opendkim: str, tmp_path: Path, key: Path, canon: str) -> bytes:
    conf = tmp_path / "sign.conf"
    conf.write_text(
        "Mode s\nSyslog no\nDomain example.org\nSelector od\n"
        f"KeyFile {key}\nRequireSafeKeys false\nCanonicalization {canon}\n"
        "SignatureAlgorithm rsa-sha256\nOversignHeaders From\n"
    )
    unsigned = tmp_path / "unsigned.eml"
    unsigned.write_bytes(message())
    out = await asyncio.to_thread(run, opendkim, conf, unsigned)
    field = out[out.index("DKIM-Signature:") :].split("\n\n")[0].rstrip("\n")
    return field.replace("\n", "\r\n").encode() + b"\r\n" + message()


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
async def test_what_opendkim_signs_passes_check_dkim(
    opendkim: str, tmp_path: Path, dns_server: DNSServer, canon: str
) -> None:
    key, record = new_key(tmp_path)
    data = await opendkim_signed(opendkim, tmp_path, key, canon)
    publish(dns_server, "example.org", {"od._domainkey": record})
    result = only(await run_check(dkim_check(dns_server), data))
    assert result.result == "pass", result.reason
    assert result.get("header", "s") == "od"


async def test_a_body_opendkim_signed_then_changed_fails_check_dkim(
    opendkim: str, tmp_path: Path, dns_server: DNSServer
) -> None:
    key, record = new_key(tmp_path)
    data = await opendkim_signed(opendkim, tmp_path, key, "relaxed/relaxed")
    publish(dns_server, "example.org", {"od._domainkey": record})
    result = await run_check(dkim_check(dns_server), data.replace(b"hungry", b"angry"))
    assert only(result).result == "fail"


async def opendkim_verdict(opendkim: str, tmp_path: Path, record: str, data: bytes) -> str:
    dns_data = tmp_path / "dnsdata"
    dns_data.write_text(f"od._domainkey.example.org {record.replace(' ', '')}\n")
    conf = tmp_path / "verify.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestDNSData file:{dns_data}\n")
    signed_file = tmp_path / "signed.eml"
    signed_file.write_bytes(data)
    return await asyncio.to_thread(run, opendkim, conf, signed_file)


@pytest.mark.parametrize(
    ("kind", "canon"), [("rsa2048", "relaxed"), ("rsa2048", "simple"), ("ed25519", "relaxed")]
)
async def test_what_modify_dkim_signs_passes_opendkim(
    opendkim: str, tmp_path: Path, kind: str, canon: str
) -> None:
    signer = DKIMSigner()
    template = str(tmp_path / "{domain}_{selector}.key")
    settings = {"domains": ["example.org"], "selector": "od", "key_path": template}
    canons = {"header_canon": canon, "body_canon": canon, "newkey_algo": kind}
    signer.init(ConfigMap({**settings, **canons}, module="modify.dkim"))
    record = (tmp_path / "example.org_od.dns").read_text().strip()
    data = await sign(signer, message(HEADER + b"Cc: team@example.org\r\n", BODY))
    said = await opendkim_verdict(opendkim, tmp_path, record, data)
    assert "verification (s=od, d=example.org" in said
    assert "succeeded" in said


async def test_a_body_modify_dkim_signed_then_changed_fails_opendkim(
    opendkim: str, tmp_path: Path
) -> None:
    signer = DKIMSigner()
    template = str(tmp_path / "{domain}_{selector}.key")
    signer.init(ConfigMap({"domains": ["example.org"], "selector": "od", "key_path": template}))
    record = (tmp_path / "example.org_od.dns").read_text().strip()
    data = (await sign(signer, message())).replace(b"hungry", b"angry")
    said = await opendkim_verdict(opendkim, tmp_path, record, data)
    assert "failed" in said
    assert "succeeded" not in said
