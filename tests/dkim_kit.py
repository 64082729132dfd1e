"""Keys, signed messages and DNS zones for the DKIM and DMARC tests."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailmodule.buffer import MemoryBuffer
from mailmodule.config import ConfigMap
from mailmodule.dns import Resolver
from mailmodule.header import Header, read_header
from mailmodule.interfaces import AuthResult, CheckResult
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.dkim import DKIMCheck
from mailmodule.modules.dkim._canon import Canon
from mailmodule.modules.dkim._crypto import PrivateKey, sign
from mailmodule.modules.dkim.keys import dns_record
from mailmodule.testing.dnsserver import DNSServer

HEADER = (
    b"From: Joe <joe@example.org>\r\n"
    b"To: Suzie <suzie@example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n"
    b"Message-ID: <1@example.org>\r\n"
)
BODY = b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"
SIGNED = ["From", "To", "Subject", "Date", "Message-ID", "From", "Subject"]
#: A 512-bit RSA public key (SubjectPublicKeyInfo): too short to verify anything.
SHORT_RSA = (
    "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMJDGTicuwA+NmtE+GLEFikjyxBEFWuB/LVDgNIvSIC0abkJuyrL3"
    "NnIpiRLDbs+/f7dd6xT1mn2GOeJuLk9GbcCAwEAAQ=="
)


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def signature(
    message: bytes,
    key: PrivateKey,
    *,
    domain: str = "example.org",
    selector: str = "sel",
    names: Sequence[str] = SIGNED,
    canon: tuple[Canon, Canon] = ("relaxed", "relaxed"),
    timestamp: int | None = None,
    expires: int | None = None,
    identity: str | None = None,
) -> bytes:
    """The DKIM-Signature field for `message` (header and body)."""
    header, offset = read_header(message)
    return sign(
        fields=[f.raw for f in header],
        body=message[offset:],
        key=key,
        domain=domain,
        selector=selector,
        names=names,
        canon=canon,
        timestamp=timestamp,
        expires=expires,
        identity=identity,
    )


def signed(
    message: bytes,
    key: PrivateKey,
    *,
    domain: str = "example.org",
    selector: str = "sel",
    names: Sequence[str] = SIGNED,
    canon: tuple[Canon, Canon] = ("relaxed", "relaxed"),
    timestamp: int | None = None,
    expires: int | None = None,
    identity: str | None = None,
) -> bytes:
    """`message` with a signature on top."""
    field = signature(
        message,
        key,
        domain=domain,
        selector=selector,
        names=names,
        canon=canon,
        timestamp=timestamp,
        expires=expires,
        identity=identity,
    )
    return field + message


def message(header: bytes = HEADER, body: bytes = BODY) -> bytes:
    return header + b"\r\n" + body


def zone(records: Mapping[str, str]) -> str:
    """Zone text with a TXT record per owner name; long values split in 255-byte strings."""
    lines = []
    for owner, value in records.items():
        parts = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
        lines.append(f"{owner} TXT {parts}")
    return "\n".join(lines) + "\n"


def publish(server: DNSServer, origin: str, records: Mapping[str, str]) -> None:
    server.add_zone(zone(records), origin=origin)


def key_records(selector: str = "sel", key: PrivateKey | None = None) -> dict[str, str]:
    return {f"{selector}._domainkey": dns_record(key or rsa_key())}


def resolver_for(server: DNSServer) -> Resolver:
    return Resolver(nameservers=["127.0.0.1"], port=server.port, timeout=2.0)


def dkim_check(server: DNSServer, **settings: object) -> DKIMCheck:
    check = DKIMCheck()
    check.resolver = resolver_for(server)
    check.init(ConfigMap(settings, module="check.dkim"))
    return check


async def run_check(check: DKIMCheck, data: bytes) -> CheckResult:
    header, offset = read_header(data)
    state = await check.check_state_for_msg(MsgMetadata(id="m1"))
    try:
        return await state.check_body(header, MemoryBuffer(data[offset:]))
    finally:
        state.close()


def outcomes(result: CheckResult) -> list[str]:
    return [r.result for r in result.auth_result]


def only(result: CheckResult) -> AuthResult:
    assert len(result.auth_result) == 1, result.auth_result
    return result.auth_result[0]


def parse(data: bytes) -> tuple[Header, bytes]:
    header, offset = read_header(data)
    return header, data[offset:]
