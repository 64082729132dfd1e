"""Verifying one DKIM signature and making one (RFC 6376 sections 3.7, 5, 6; RFC 8463).

Keys and signatures go through `cryptography` (OpenSSL). Everything here is pure
computation on bytes in wire form (CRLF line endings, see `_canon.wire`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailmodule.modules.dkim import _canon
from mailmodule.modules.dkim._canon import Canon
from mailmodule.modules.dkim._tags import Invalid, KeyRecord, Signature

__all__ = [
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "PrivateKey",
    "body_hash",
    "sign",
    "signed_data",
    "verify",
]

#: RSA keys shorter than this do not verify (RFC 8301, go-msgauth and so maddy).
MIN_RSA_BITS: Final = 1024
#: Nor longer ones: a sender's key must not cost us seconds of CPU per message.
MAX_RSA_BITS: Final = 8192
#: How far in the future t= may be before a signature is refused: clocks differ.
CLOCK_SKEW: Final = 15 * 60
_B_VALUE: Final = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class BodyCache:
    """Canonical forms of one body, computed at most once per canonicalization."""

    __slots__ = ("_forms", "wire")

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self._forms: dict[Canon, bytes] = {}

    def canonical(self, canon: Canon) -> bytes:
        form = self._forms.get(canon)
        if form is None:
            form = self._forms[canon] = _canon.body(self.wire, canon)
        return form


def body_hash(body: BodyCache, canon: Canon, length: int | None) -> tuple[bytes, int]:
    """The SHA-256 of the canonical body, cut at `length` when given, and the length of the
    whole canonical body."""
    form = body.canonical(canon)
    data = form if length is None else memoryview(form)[:length]
    return hashlib.sha256(data).digest(), len(form)


def signed_data(
    fields: Sequence[bytes], names: Sequence[str], sig_field: bytes, canon: Canon
) -> bytes:
    """What the header hash covers: the fields `names` picks, bottom-up per name, then the
    signature field with its b= value emptied and no line ending.

    `fields` are the raw fields, top first, in wire form.
    """
    by_name: dict[str, list[bytes]] = {}
    for raw in fields:  # top first: the list ends with the bottom instance
        name = raw.partition(b":")[0].rstrip(b" \t").decode("ascii", "replace").lower()
        by_name.setdefault(name, []).append(raw)
    out: list[bytes] = []
    for name in names:
        instances = by_name.get(name)
        if instances:  # a name with no (more) instances contributes nothing
            out.append(_canon.field(instances.pop(), canon))
    emptied = _B_VALUE.sub(rb"\1", sig_field.partition(b":")[2])
    sig_name = sig_field.partition(b":")[0]
    out.append(_canon.field(sig_name + b":" + emptied, canon).removesuffix(b"\r\n"))
    return b"".join(out)


def _public_key(sig: Signature, key: KeyRecord) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    algorithm = sig.algorithm.partition("-")[0]
    if key.key_type != algorithm:
        raise Invalid("permerror", f"a {key.key_type} key cannot verify an {algorithm} signature")
    if key.hashes is not None and "sha256" not in key.hashes:
        raise Invalid("permerror", "the key does not allow sha256 (h=)")
    try:
        if algorithm == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(key.public_key)
        public = serialization.load_der_public_key(key.public_key)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Invalid("permerror", f"malformed {algorithm} public key") from exc
    if not isinstance(public, rsa.RSAPublicKey):
        raise Invalid("permerror", "the key record's p= is not an RSA key")
    if public.key_size < MIN_RSA_BITS:
        raise Invalid("permerror", f"the RSA key has {public.key_size} bits, under 1024")
    if public.key_size > MAX_RSA_BITS:
        raise Invalid("permerror", f"the RSA key has {public.key_size} bits, over 8192")
    return public


def verify(
    sig: Signature,
    sig_field: bytes,
    fields: Sequence[bytes],
    body: BodyCache,
    key: KeyRecord,
    now: int,
) -> None:
    """Verify one signature with its key; return when it passes.

    Raises:
        Invalid: permerror (key unfit for the signature, t=s broken, expired, made in the
            future, l= beyond the body), fail (body hash or signature does not verify),
            policy (content beyond l=, which the signature does not cover).
    """
    public = _public_key(sig, key)
    if key.strict_identity and sig.identity.rpartition("@")[2].lower() != sig.domain:
        raise Invalid("permerror", "the key allows no subdomain in i= (t=s)")
    if sig.expires is not None and sig.expires < now:
        raise Invalid("permerror", "the signature has expired (x=)")
    if sig.timestamp is not None and sig.timestamp > now + CLOCK_SKEW:
        raise Invalid("permerror", "the signature was made in the future (t=)")
    digest, full_length = body_hash(body, sig.body_canon, sig.length)
    if sig.length is not None and sig.length > full_length:
        raise Invalid("permerror", "the signed length l= exceeds the body")
    if not hmac.compare_digest(digest, sig.body_hash):
        raise Invalid("fail", "body hash did not verify")
    data = signed_data(fields, sig.signed_fields, sig_field, sig.header_canon)
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(sig.signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            public.verify(sig.signature, hashlib.sha256(data).digest())
    except InvalidSignature as exc:
        raise Invalid("fail", "signature did not verify") from exc
    if sig.length is not None and sig.length < full_length:
        raise Invalid("policy", "the body goes on beyond the signed length l=")


def _fold_b64(value: str) -> str:
    return "\r\n\t ".join(value[i : i + 72] for i in range(0, len(value), 72))


def sign(
    *,
    fields: Sequence[bytes],
    body: bytes,
    key: PrivateKey,
    domain: str,
    selector: str,
    names: Sequence[str],
    canon: tuple[Canon, Canon] = ("relaxed", "relaxed"),
    timestamp: int | None = None,
    expires: int | None = None,
    identity: str | None = None,
) -> bytes:
    """A DKIM-Signature field (raw, CRLF) over `fields` (top first, wire form) and `body`.

    `names` are the field names to sign, each as often as it is to be signed (once more
    than it occurs oversigns it). The field is folded by this function and b= starts a
    line, so it verifies under simple header canonicalization too.
    """
    header_canon, body_canon = canon
    algorithm = "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
    bh = base64.b64encode(hashlib.sha256(_canon.body(_canon.wire(body), body_canon)).digest())
    lines = [f"v=1; a={algorithm}; c={header_canon}/{body_canon}; d={domain}; s={selector};"]
    times = []
    if identity is not None:
        times.append(f"i={identity};")
    if timestamp is not None:
        times.append(f"t={timestamp};")
    if expires is not None:
        times.append(f"x={expires};")
    if times:
        lines.append(" ".join(times))
    h_list = ":".join(names)
    lines.extend(_wrap(f"h={h_list};"))
    lines.append(f"bh={bh.decode('ascii')};")
    prefix = "DKIM-Signature: " + "\r\n\t".join(lines) + "\r\n\tb="
    data = signed_data(fields, [n.lower() for n in names], prefix.encode("ascii"), header_canon)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(hashlib.sha256(data).digest())
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    b = base64.b64encode(signature).decode("ascii")
    return (prefix + _fold_b64(b) + "\r\n").encode("ascii")


def _wrap(text: str) -> list[str]:
    """`text` cut at colons into lines of at most about 72 characters."""
    lines: list[str] = []
    current = ""
    for part in text.split(":"):
        piece = part if not current else ":" + part
        if current and len(current) + len(piece) > 72:
            lines.append(current + ":")
            current = part
        else:
            current += piece
    lines.append(current)
    return lines
