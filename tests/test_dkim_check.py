"""check.dkim against signatures from RFC 6376 and RFC 8463, ours and dkimpy's, with keys
served by the loopback DNS server."""

from __future__ import annotations

import time
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from mailmodule.buffer import FileBuffer
from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.dkim import DKIMCheck
from mailmodule.modules.dkim.keys import dns_record
from mailmodule.testing.dnsserver import DNSServer
from tests.dkim_kit import (
    SHORT_RSA,
    dkim_check,
    ed_key,
    key_records,
    message,
    only,
    outcomes,
    parse,
    publish,
    rsa_key,
    run_check,
    signed,
)

DATA = Path(__file__).parent / "data" / "dkim"
# RFC 8463 appendix A.2 and RFC 6376 appendix C: the keys of the examples.
RFC8463_KEYS = {
    "brisbane._domainkey": "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    "test._domainkey": "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6"
    "NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+"
    "PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
}
RFC6376_KEY = {
    "brisbane._domainkey": "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9"
    "ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+"
    "Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB",
}


def crlf(path: Path) -> bytes:
    return path.read_bytes().replace(b"\n", b"\r\n")


def pem() -> bytes:
    return rsa_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def keys(dns_server: DNSServer) -> DNSServer:
    """example.org publishing the RSA key at sel and the Ed25519 key at ed."""
    publish(dns_server, "example.org", {**key_records(), **key_records("ed", ed_key())})
    return dns_server


# The RFCs' examples


async def test_the_rfc_8463_example_passes_both_its_ed25519_and_rsa_signatures(
    dns_server: DNSServer,
) -> None:
    publish(dns_server, "football.example.com", RFC8463_KEYS)
    result = await run_check(dkim_check(dns_server), crlf(DATA / "rfc8463.eml"))
    assert outcomes(result) == ["pass", "pass"]
    ed, rsa = result.auth_result
    assert (ed.get("header", "d"), ed.get("header", "s")) == ("football.example.com", "brisbane")
    assert ed.get("header", "b") == "/gCrinpc"
    assert rsa.get("header", "s") == "test"
    assert not result.reject


async def test_the_rfc_6376_example_passes_under_simple_canonicalization(
    dns_server: DNSServer,
) -> None:
    publish(dns_server, "example.com", RFC6376_KEY)
    result = await run_check(dkim_check(dns_server), crlf(DATA / "rfc6376.eml"))
    assert only(result).result == "pass"
    assert only(result).get("header", "i") == "joe@football.example.com"


async def test_the_rfc_8463_example_with_a_changed_body_fails_both(dns_server: DNSServer) -> None:
    publish(dns_server, "football.example.com", RFC8463_KEYS)
    data = crlf(DATA / "rfc8463.eml").replace(b"hungry", b"thirsty")
    result = await run_check(dkim_check(dns_server), data)
    assert outcomes(result) == ["fail", "fail"]
    assert {r.reason for r in result.auth_result} == {"body hash did not verify"}


# Signatures of ours and of dkimpy


async def test_our_rsa_and_ed25519_signatures_pass(keys: DNSServer) -> None:
    data = signed(signed(message(), rsa_key()), ed_key(), selector="ed")
    assert outcomes(await run_check(dkim_check(keys), data)) == ["pass", "pass"]


async def test_a_dkimpy_signature_passes(keys: DNSServer) -> None:
    msg = message()
    sig = dkim.sign(msg, b"sel", b"example.org", pem(), include_headers=[b"from", b"subject"])
    assert only(await run_check(dkim_check(keys), sig + msg)).result == "pass"


async def test_our_signatures_pass_dkimpy() -> None:
    for key in (rsa_key(), ed_key()):
        record = dns_record(key).encode()

        def lookup(name: bytes, timeout: int = 5, record: bytes = record) -> bytes:
            return record

        assert dkim.verify(signed(message(), key), dnsfunc=lookup)


async def test_a_changed_header_field_fails_the_signature(keys: DNSServer) -> None:
    data = signed(message(), rsa_key()).replace(b"Is dinner ready?", b"Wire the money")
    result = only(await run_check(dkim_check(keys), data))
    assert (result.result, result.reason) == ("fail", "signature did not verify")


async def test_a_forged_from_field_added_on_top_fails_an_oversigned_signature(
    keys: DNSServer,
) -> None:
    data = signed(message(), rsa_key())
    result = await run_check(dkim_check(keys), b"From: ceo@example.org\r\n" + data)
    assert only(result).result == "fail"


# No signature, broken signatures, the actions


async def test_an_unsigned_message_is_dkim_none_and_passes_by_default(keys: DNSServer) -> None:
    result = await run_check(dkim_check(keys), message())
    assert only(result).result == "none"
    assert not result.reject
    assert result.reason is None


async def test_no_sig_action_reject_refuses_an_unsigned_message(keys: DNSServer) -> None:
    result = await run_check(dkim_check(keys, no_sig_action="reject"), message())
    assert result.reject
    assert result.reason is not None
    assert (result.reason.code, result.reason.enhanced_code) == (550, (5, 7, 20))


async def test_broken_sig_action_quarantine_sends_a_failed_message_to_junk(
    keys: DNSServer,
) -> None:
    data = signed(message(), rsa_key()).replace(b"hungry", b"angry")
    result = await run_check(dkim_check(keys, broken_sig_action="quarantine"), data)
    assert result.quarantine
    assert not result.reject
    assert result.reason is None  # or the pipeline's own fail action would refuse it
    assert only(result).result == "fail"


async def test_one_passing_signature_is_enough_whatever_the_others_say(keys: DNSServer) -> None:
    broken = signed(message(), ed_key(), selector="ed").replace(b"hungry", b"angry")
    data = signed(broken, rsa_key())
    result = await run_check(dkim_check(keys, broken_sig_action="reject"), data)
    assert outcomes(result) == ["pass", "fail"]
    assert not result.reject


def test_an_unknown_action_is_refused_naming_the_setting() -> None:
    check = DKIMCheck()
    with pytest.raises(ConfigError, match="reject, quarantine or ignore") as info:
        check.init(ConfigMap({"no_sig_action": "drop"}, module="check.dkim"))
    assert info.value.key == "no_sig_action"


# DNS outcomes


async def test_a_temporary_dns_error_refuses_for_now_unless_fail_open(keys: DNSServer) -> None:
    keys.fail("sel._domainkey.example.org", "SERVFAIL")
    data = signed(message(), rsa_key())
    refused = await run_check(dkim_check(keys), data)
    assert refused.reject
    assert refused.reason is not None
    assert (refused.reason.code, refused.reason.enhanced_code) == (451, (4, 7, 20))
    opened = await run_check(dkim_check(keys, fail_open=True), data)
    assert only(opened).result == "temperror"
    assert not opened.reject


async def test_a_missing_key_is_a_permerror(keys: DNSServer) -> None:
    data = signed(message(), rsa_key(), selector="gone")
    result = only(await run_check(dkim_check(keys), data))
    assert result.result == "permerror"
    assert result.reason == "no key published at gone._domainkey.example.org"


async def key_result(server: DNSServer, record: str, data: bytes) -> tuple[str, str | None]:
    publish(server, "example.org", {"sel._domainkey": record})
    result = only(await run_check(dkim_check(server), data))
    return result.result, result.reason


def rsa_record(extra: str = "") -> str:
    return dns_record(rsa_key()).replace("k=rsa;", f"k=rsa;{extra}")


async def test_a_revoked_key_is_a_permerror(dns_server: DNSServer) -> None:
    got = await key_result(dns_server, "v=DKIM1; k=rsa; p=", signed(message(), rsa_key()))
    assert got == ("permerror", "the key is revoked (empty p=)")


async def test_an_rsa_key_under_1024_bits_is_a_permerror(dns_server: DNSServer) -> None:
    got = await key_result(dns_server, f"v=DKIM1; p={SHORT_RSA}", signed(message(), rsa_key()))
    assert got == ("permerror", "the RSA key has 512 bits, under 1024")


async def test_an_rsa_key_over_8192_bits_is_refused_before_any_work(
    dns_server: DNSServer,
) -> None:
    big = (DATA / "rsa9000.b64").read_text().strip()
    got = await key_result(dns_server, f"v=DKIM1; p={big}", signed(message(), rsa_key()))
    assert got == ("permerror", "the RSA key has 9000 bits, over 8192")


async def test_a_key_of_another_type_is_a_permerror(dns_server: DNSServer) -> None:
    got = await key_result(dns_server, dns_record(ed_key()), signed(message(), rsa_key()))
    assert got == ("permerror", "a ed25519 key cannot verify an rsa signature")


async def test_a_key_whose_h_excludes_sha256_is_a_permerror(dns_server: DNSServer) -> None:
    got = await key_result(dns_server, rsa_record(" h=sha1;"), signed(message(), rsa_key()))
    assert got == ("permerror", "the key does not allow sha256 (h=)")


async def test_a_key_for_another_service_is_a_permerror(dns_server: DNSServer) -> None:
    got = await key_result(dns_server, rsa_record(" s=tlsrpt;"), signed(message(), rsa_key()))
    assert got == ("permerror", "the key is not for email (s=)")


async def test_a_strict_key_refuses_an_identity_in_a_subdomain(dns_server: DNSServer) -> None:
    data = signed(message(), rsa_key(), identity="@news.example.org")
    assert (await key_result(dns_server, rsa_record(" t=s;"), data))[0] == "permerror"
    assert (await key_result(dns_server, rsa_record(""), data))[0] == "pass"


async def test_a_failure_under_a_testing_key_is_neutral_and_counts_as_unsigned(
    dns_server: DNSServer,
) -> None:
    publish(dns_server, "example.org", {"sel._domainkey": rsa_record(" t=y;")})
    data = signed(message(), rsa_key()).replace(b"hungry", b"angry")
    check = dkim_check(dns_server, broken_sig_action="reject", no_sig_action="quarantine")
    result = await run_check(check, data)
    assert only(result).result == "neutral"
    assert result.quarantine
    assert not result.reject


# The signature's own tags


async def test_rsa_sha1_is_refused_as_rfc_8301_says(keys: DNSServer) -> None:
    msg = message()
    sig = dkim.sign(msg, b"sel", b"example.org", pem(), signature_algorithm=b"rsa-sha1")
    result = only(await run_check(dkim_check(keys), sig + msg))
    assert (result.result, result.reason) == (
        "permerror",
        "rsa-sha1 signatures are refused (RFC 8301)",
    )
    assert result.get("header", "d") == "example.org"


async def test_an_expired_signature_is_a_permerror(keys: DNSServer) -> None:
    now = int(time.time())
    data = signed(message(), rsa_key(), timestamp=now - 100, expires=now - 10)
    assert only(await run_check(dkim_check(keys), data)).reason == "the signature has expired (x=)"


async def test_a_signature_from_the_future_is_a_permerror(keys: DNSServer) -> None:
    data = signed(message(), rsa_key(), timestamp=int(time.time()) + 3600)
    result = only(await run_check(dkim_check(keys), data))
    assert (result.result, result.reason) == (
        "permerror",
        "the signature was made in the future (t=)",
    )


async def test_a_body_length_covering_the_whole_body_passes(keys: DNSServer) -> None:
    msg = message()
    sig = dkim.sign(msg, b"sel", b"example.org", pem(), length=True)
    assert only(await run_check(dkim_check(keys), sig + msg)).result == "pass"


async def test_content_beyond_the_signed_length_is_not_vouched_for(keys: DNSServer) -> None:
    msg = message()
    sig = dkim.sign(msg, b"sel", b"example.org", pem(), length=True)
    result = only(await run_check(dkim_check(keys), sig + msg + b"Click here: evil.example\r\n"))
    assert (result.result, result.reason) == (
        "policy",
        "the body goes on beyond the signed length l=",
    )


async def test_a_signed_length_beyond_the_body_is_a_permerror(keys: DNSServer) -> None:
    msg = message()
    sig = dkim.sign(msg, b"sel", b"example.org", pem(), length=True)
    result = only(await run_check(dkim_check(keys), sig + msg.replace(b"Joe.\r\n", b"")))
    assert result.result == "permerror"


async def test_a_required_field_left_unsigned_is_a_permerror(keys: DNSServer) -> None:
    data = signed(message(), rsa_key(), names=["From", "To"])
    result = only(await run_check(dkim_check(keys), data))
    assert (result.result, result.reason) == ("permerror", "subject not signed")
    relaxed = dkim_check(keys, required_fields=["From"])
    assert only(await run_check(relaxed, data)).result == "pass"


BASE = "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AA==; b=AA=="


@pytest.mark.parametrize(
    ("change", "to", "reason"),
    [
        ("; b=AA==", "", "the signature has no b= tag"),
        ("v=1", "v=2", "unknown signature version v=2"),
        ("rsa-sha256", "rsa-md5", "unknown algorithm a=rsa-md5"),
        ("h=from", "h=to", "the From field is not signed"),
        ("h=from", "h=from; i=@evil.example", "the identity i= is not within the domain d="),
        ("bh=AA==", "bh=!!", "bh= of the signature is not base64"),
        ("h=from", "h=from; h=to", "tag h= given twice in the signature"),
        ("h=from", "h=from; t=99; x=9", "the signature expires (x=) before it was made (t=)"),
        ("s=sel", "s=../x", "malformed selector s=../x"),
    ],
)
async def test_a_malformed_signature_is_a_permerror_saying_why(
    keys: DNSServer, change: str, to: str, reason: str
) -> None:
    data = f"DKIM-Signature: {BASE.replace(change, to)}\r\n".encode() + message()
    result = only(await run_check(dkim_check(keys), data))
    assert (result.result, result.reason) == ("permerror", reason)
    assert result.get("header", "d") == "example.org"


async def test_a_signature_with_bytes_that_are_not_ascii_is_a_permerror(keys: DNSServer) -> None:
    data = b"DKIM-Signature: v=1; d=\xff\xfe.example\r\n" + message()
    assert only(await run_check(dkim_check(keys), data)).result == "permerror"


async def test_at_most_ten_signatures_are_verified(keys: DNSServer) -> None:
    data = message()
    for _ in range(12):
        data = signed(data, ed_key(), selector="ed")
    result = await run_check(dkim_check(keys), data)
    assert outcomes(result) == ["pass"] * 10


async def test_a_message_with_bare_lf_line_endings_verifies_as_sent_with_crlf(
    keys: DNSServer,
) -> None:
    data = signed(message(), rsa_key()).replace(b"\r\n", b"\n")
    assert only(await run_check(dkim_check(keys), data)).result == "pass"


async def test_a_body_that_cannot_be_read_fails_for_now(keys: DNSServer, tmp_path: Path) -> None:
    header, body = parse(signed(message(), rsa_key()))
    gone = tmp_path / "body"
    gone.write_bytes(body)
    buffer = FileBuffer(gone)
    gone.unlink()
    state = await dkim_check(keys).check_state_for_msg(MsgMetadata(id="m1"))
    result = await state.check_body(header, buffer)
    assert result.reject
    assert result.reason is not None
    assert result.reason.code == 451
