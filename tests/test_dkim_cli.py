"""`mailmodule dkim keygen`: a key that modify.dkim signs with and the record that verifies."""

from __future__ import annotations

import io
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from mailmodule import cli
from mailmodule.config import ConfigMap
from mailmodule.modules.dkim import DKIMSigner
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import dkim_check, message, only, publish, run_check
from tests.test_dkim_modify import sign


def keygen(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    code = cli.main(["dkim", "keygen", *args])
    return code, out.getvalue()


def record_of(printed: str) -> str:
    line = printed.splitlines()[0]
    assert line.startswith("s1._domainkey.example.org. IN TXT ( ")
    return "".join(re.findall(r'"([^"]*)"', line))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
async def test_a_generated_key_signs_what_its_printed_record_verifies(
    tmp_path: Path, dns_server: DNSServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    out = tmp_path / "example.org_s1.key"
    code, printed = keygen(
        monkeypatch, "--domain", "example.org", "--selector", "s1", "--type", kind, str(out)
    )
    assert code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    record = record_of(printed)
    assert (tmp_path / "example.org_s1.dns").read_text().strip() == record
    signer = DKIMSigner()
    template = str(tmp_path / "{domain}_{selector}.key")
    signer.init(ConfigMap({"domains": ["example.org"], "selector": "s1", "key_path": template}))
    publish(dns_server, "example.org", {"s1._domainkey": record})
    result = only(await run_check(dkim_check(dns_server), await sign(signer, message())))
    assert result.result == "pass"


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.key"
    out.write_text("keep me")
    code, _ = keygen(monkeypatch, "--domain", "example.org", "--selector", "s1", str(out))
    assert code == cli.EX_CONFIG
    assert out.read_text() == "keep me"
    assert "exists; not overwritten" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"), [("--selector", "../x"), ("--domain", "bad_\u2603..example")]
)
def test_a_malformed_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str
) -> None:
    names = {"--domain": "example.org", "--selector": "s1", option: value}
    args = [arg for pair in names.items() for arg in pair]
    code, _ = keygen(monkeypatch, *args, str(tmp_path / "k.key"))
    assert code == cli.EX_CONFIG
    assert not (tmp_path / "k.key").exists()
