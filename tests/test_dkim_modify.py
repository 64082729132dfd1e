"""modify.dkim: keys on disk, the domain chosen, the fields signed, signatures that verify."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailmodule.buffer import MemoryBuffer
from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.dkim import DKIMSigner
from mailmodule.modules.dkim._tags import parse_signature
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import BODY, HEADER, dkim_check, message, only, parse, publish, run_check


def signer(tmp_path: Path, **settings: object) -> DKIMSigner:
    module = DKIMSigner()
    values = {
        "domains": ["example.org"],
        "selector": "sel",
        "key_path": str(tmp_path / "keys" / "{domain}_{selector}.key"),
        **settings,
    }
    module.init(ConfigMap(values, module="modify.dkim"))
    return module


async def sign(module: DKIMSigner, data: bytes, mail_from: str = "joe@example.org") -> bytes:
    header, body = parse(data)
    state = await module.mod_state_for_msg(MsgMetadata(id="m1"))
    try:
        await state.rewrite_sender(mail_from)
        await state.rewrite_body(header, MemoryBuffer(body))
    finally:
        state.close()
    return header.to_bytes() + body


def published(tmp_path: Path, domain: str = "example.org") -> str:
    return (tmp_path / "keys" / f"{domain}_sel.dns").read_text().strip()


def signature_of(data: bytes) -> str | None:
    header, _ = parse(data)
    fields = header.fields("DKIM-Signature")
    return fields[0].value if fields else None


async def test_a_missing_key_is_generated_with_its_record_and_kept_private(tmp_path: Path) -> None:
    signer(tmp_path)
    key = tmp_path / "keys" / "example.org_sel.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert published(tmp_path).startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # RSA-2048


async def test_an_existing_key_is_loaded_not_replaced(tmp_path: Path) -> None:
    signer(tmp_path)
    key = tmp_path / "keys" / "example.org_sel.key"
    before = key.read_bytes()
    signer(tmp_path)
    assert key.read_bytes() == before


@pytest.mark.parametrize("algo", ["rsa2048", "ed25519"])
async def test_a_signed_message_passes_check_dkim(
    tmp_path: Path, dns_server: DNSServer, algo: str
) -> None:
    data = await sign(signer(tmp_path, newkey_algo=algo), message())
    publish(dns_server, "example.org", {"sel._domainkey": published(tmp_path)})
    result = only(await run_check(dkim_check(dns_server), data))
    assert result.result == "pass"
    assert result.get("header", "d") == "example.org"


async def test_a_message_changed_after_signing_fails_check_dkim(
    tmp_path: Path, dns_server: DNSServer
) -> None:
    data = await sign(signer(tmp_path), message())
    publish(dns_server, "example.org", {"sel._domainkey": published(tmp_path)})
    result = await run_check(dkim_check(dns_server), data.replace(b"hungry", b"angry"))
    assert only(result).result == "fail"


async def test_simple_canonicalization_signs_verifiably(
    tmp_path: Path, dns_server: DNSServer
) -> None:
    module = signer(tmp_path, header_canon="simple", body_canon="simple", newkey_algo="ed25519")
    data = await sign(module, message())
    publish(dns_server, "example.org", {"sel._domainkey": published(tmp_path)})
    assert only(await run_check(dkim_check(dns_server), data)).result == "pass"
    assert "c=simple/simple" in (signature_of(data) or "")


async def test_present_fields_are_oversigned_and_list_fields_signed_once(tmp_path: Path) -> None:
    data = await sign(signer(tmp_path), HEADER + b"List-Id: <l.example.org>\r\n\r\n" + BODY)
    value = signature_of(data)
    assert value is not None
    names = parse_signature(value.encode()).signed_fields
    assert names.count("from") == 2
    assert names.count("subject") == 2
    assert names.count("cc") == 1  # absent: signed once so that none can be added
    assert names.count("list-id") == 1


async def test_the_signing_domain_is_the_envelope_senders(tmp_path: Path) -> None:
    module = signer(tmp_path, domains=["example.org", "example.com"])
    data = await sign(module, message(), mail_from="joe@EXAMPLE.com")
    assert "d=example.com;" in (signature_of(data) or "")


async def test_a_sender_of_another_domain_is_not_signed(tmp_path: Path) -> None:
    data = await sign(signer(tmp_path), message(), mail_from="joe@elsewhere.example")
    assert signature_of(data) is None


async def test_the_null_sender_signs_for_the_from_domain_else_the_first(tmp_path: Path) -> None:
    module = signer(tmp_path, domains=["example.com", "example.org"])
    assert "d=example.org;" in (signature_of(await sign(module, message(), "")) or "")
    other = message(HEADER.replace(b"joe@example.org", b"joe@elsewhere.example"))
    assert "d=example.com;" in (signature_of(await sign(module, other, "")) or "")


async def test_sign_subdomains_signs_a_subdomain_sender_with_the_domain(tmp_path: Path) -> None:
    module = signer(tmp_path, sign_subdomains=True)
    data = await sign(module, message(), mail_from="joe@news.example.org")
    assert "d=example.org;" in (signature_of(data) or "")


async def test_several_from_fields_are_not_signed_unless_allowed(tmp_path: Path) -> None:
    data = b"From: a@example.org\r\n" + message()
    assert signature_of(await sign(signer(tmp_path), data)) is None
    allowed = signer(tmp_path, allow_multiple_from=True)
    assert signature_of(await sign(allowed, data)) is not None


async def test_an_lf_header_gets_an_lf_signature_field(tmp_path: Path) -> None:
    data = await sign(signer(tmp_path), message().replace(b"\r\n", b"\n"))
    assert b"\r" not in data


def test_the_inline_form_takes_domains_then_the_selector(tmp_path: Path) -> None:
    module = DKIMSigner(inline_args=["example.org", "example.com", "s1"])
    path = str(tmp_path / "{domain}.{selector}.key")
    module.init(ConfigMap({"key_path": path, "newkey_algo": "ed25519"}, module="modify.dkim"))
    assert (module.domains, module.selector) == (["example.org", "example.com"], "s1")
    assert (tmp_path / "example.com.s1.key").exists()


def test_a_file_that_is_not_a_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0IHN0dWZm\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="is not an unencrypted PEM private key") as info:
        signer(tmp_path, key_path=str(path))
    assert info.value.key == "key_path"
    assert "c2VjcmV0" not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"domains": []}, "domains"),
        ({"selector": ""}, "selector"),
        ({"newkey_algo": "dsa"}, "newkey_algo"),
        ({"header_canon": "loose"}, "header_canon"),
        ({"hash": "sha1"}, "hash"),
        ({"domains": ["a.example", "b.example"], "sign_subdomains": True}, "domains"),
        ({"domains": ["bad domain!"]}, "domains"),
        ({"domains": ["../../etc"]}, "domains"),
        ({"selector": "../x"}, "selector"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, settings: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        signer(tmp_path, **settings)
    assert info.value.key == key


async def test_the_signature_goes_on_top_of_the_header(tmp_path: Path) -> None:
    header, _ = parse(await sign(signer(tmp_path), message()))
    assert header.fields()[0].key == "dkim-signature"
