"""The DKIM-Signature field and the key record, read from their tag lists (RFC 6376 3.2,
3.5, 3.6.1), with every malformed or refused value reported as `Invalid`."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final, final

import attrs

from mailmodule.modules.dkim._canon import Canon

__all__ = [
    "ALGORITHMS",
    "SELECTOR",
    "Invalid",
    "KeyRecord",
    "Signature",
    "parse_key",
    "parse_signature",
]

#: The algorithms verified and signed: RFC 8301 forbids rsa-sha1, as go-msgauth (maddy).
ALGORITHMS: Final = frozenset({"rsa-sha256", "ed25519-sha256"})
_TAG_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_FWS: Final = re.compile(r"[ \t\r\n]+")
_DIGITS: Final = re.compile(r"[0-9]{1,12}")  # RFC 6376: at most 12 digits for t= and x=
_LENGTH: Final = re.compile(r"[0-9]{1,76}")
SELECTOR: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*")
_DOMAIN: Final = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]+")
_CANONS: Final = ("simple", "relaxed")


@final
class Invalid(Exception):
    """Raised inside the DKIM package when a signature cannot pass; never leaves it.

    `result` is the RFC 8601 result it gives (`permerror`, `fail`, `neutral`,
    `temperror`), `reason` says why in words for the Authentication-Results field.
    """

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def tag_list(text: str, what: str) -> dict[str, str]:
    """The tags of a tag list, their values with folding white space at the ends removed.

    Raises:
        Invalid: permerror: a tag without "=", a bad tag name, a tag given twice.
    """
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip(" \t\r\n"):
            continue  # a trailing ";" or an empty spec
        name, eq, value = spec.partition("=")
        name = name.strip(" \t\r\n")
        if not eq or not _TAG_NAME.fullmatch(name):
            raise Invalid("permerror", f"malformed tag in the {what}: {spec.strip()[:40]!r}")
        if name in tags:
            raise Invalid("permerror", f"tag {name}= given twice in the {what}")
        tags[name] = value.strip(" \t\r\n")
    return tags


def _b64(value: str, tag: str, what: str) -> bytes:
    try:
        return base64.b64decode(_FWS.sub("", value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("permerror", f"{tag}= of the {what} is not base64") from exc


def _colon_list(value: str) -> tuple[str, ...]:
    return tuple(_FWS.sub("", item) for item in value.split(":"))


@final
@attrs.frozen(kw_only=True)
class Signature:
    """One DKIM-Signature field's tags, checked for form (not for validity)."""

    algorithm: str
    signature: bytes
    body_hash: bytes
    header_canon: Canon
    body_canon: Canon
    domain: str
    signed_fields: tuple[str, ...]
    identity: str
    length: int | None
    selector: str
    timestamp: int | None
    expires: int | None
    #: The b= value as written, white space removed (what header.b quotes).
    b_text: str


def parse_signature(value: bytes) -> Signature:
    """The tags of a DKIM-Signature field value.

    Raises:
        Invalid: permerror for a missing or malformed tag, a version other than 1, an
            algorithm other than rsa-sha256 and ed25519-sha256, From not signed, an i=
            outside d=, t= after x=, or no dns/txt query method.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Invalid("permerror", "the signature holds bytes that are not ASCII") from exc
    tags = tag_list(text, "signature")
    for tag in ("v", "a", "b", "bh", "d", "h", "s"):
        if tag not in tags:
            raise Invalid("permerror", f"the signature has no {tag}= tag")
    if tags["v"] != "1":
        raise Invalid("permerror", f"unknown signature version v={tags['v'][:10]}")
    algorithm = tags["a"].lower()
    if algorithm == "rsa-sha1":
        raise Invalid("permerror", "rsa-sha1 signatures are refused (RFC 8301)")
    if algorithm not in ALGORITHMS:
        raise Invalid("permerror", f"unknown algorithm a={algorithm[:30]}")
    header_canon, _, body_canon = tags.get("c", "simple").lower().partition("/")
    body_canon = body_canon or "simple"
    if header_canon not in _CANONS or body_canon not in _CANONS:
        raise Invalid("permerror", f"unknown canonicalization c={tags['c'][:30]}")
    domain = tags["d"].lower().rstrip(".")
    if not _DOMAIN.fullmatch(domain) or "." not in domain:
        raise Invalid("permerror", f"malformed domain d={domain[:60]}")
    selector = tags["s"].lower()
    if not SELECTOR.fullmatch(selector):
        raise Invalid("permerror", f"malformed selector s={selector[:60]}")
    signed = tuple(f.lower() for f in _colon_list(tags["h"]))
    if "from" not in signed:
        raise Invalid("permerror", "the From field is not signed")
    if any(not f for f in signed):
        raise Invalid("permerror", "an empty field name in h=")
    identity = tags.get("i", "@" + domain)
    i_domain = identity.rpartition("@")[2].lower().rstrip(".")
    if "@" not in identity or not (i_domain == domain or i_domain.endswith("." + domain)):
        raise Invalid("permerror", "the identity i= is not within the domain d=")
    if "q" in tags and "dns/txt" not in (m.lower() for m in _colon_list(tags["q"])):
        raise Invalid("permerror", "no supported key query method in q=")
    length = _number(tags, "l", _LENGTH)
    timestamp = _number(tags, "t", _DIGITS)
    expires = _number(tags, "x", _DIGITS)
    if timestamp is not None and expires is not None and expires < timestamp:
        raise Invalid("permerror", "the signature expires (x=) before it was made (t=)")
    b_text = _FWS.sub("", tags["b"])
    signature = _b64(tags["b"], "b", "signature")
    if not signature:
        raise Invalid("permerror", "the signature b= is empty")
    return Signature(
        algorithm=algorithm,
        signature=signature,
        body_hash=_b64(tags["bh"], "bh", "signature"),
        header_canon="relaxed" if header_canon == "relaxed" else "simple",
        body_canon="relaxed" if body_canon == "relaxed" else "simple",
        domain=domain,
        signed_fields=signed,
        identity=identity,
        length=length,
        selector=selector,
        timestamp=timestamp,
        expires=expires,
        b_text=b_text,
    )


def _number(tags: dict[str, str], tag: str, form: re.Pattern[str]) -> int | None:
    if tag not in tags:
        return None
    if not form.fullmatch(tags[tag]):
        raise Invalid("permerror", f"malformed {tag}= value in the signature")
    return int(tags[tag])


@final
@attrs.frozen(kw_only=True)
class KeyRecord:
    """A DKIM key record (RFC 6376 3.6.1), checked for form."""

    key_type: str
    public_key: bytes
    hashes: tuple[str, ...] | None
    services: tuple[str, ...]
    flags: tuple[str, ...]

    @property
    def testing(self) -> bool:
        """t=y: the domain is testing DKIM; a failure must count as no signature."""
        return "y" in self.flags

    @property
    def strict_identity(self) -> bool:
        """t=s: i= must be in d= itself, not in a subdomain."""
        return "s" in self.flags


def parse_key(record: bytes) -> KeyRecord:
    """The tags of a key record, as published in TXT.

    Raises:
        Invalid: permerror for a malformed record, a version other than DKIM1 or not first,
            an empty p= (a revoked key), or a key whose s= excludes email.
    """
    try:
        text = record.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Invalid("permerror", "the key record holds bytes that are not ASCII") from exc
    tags = tag_list(text, "key record")
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        raise Invalid("permerror", "the key record's v= is not DKIM1, first")
    if "p" not in tags:
        raise Invalid("permerror", "the key record has no p= tag")
    public_key = _b64(tags["p"], "p", "key record")
    if not public_key:
        raise Invalid("permerror", "the key is revoked (empty p=)")
    services = tuple(s.lower() for s in _colon_list(tags.get("s", "*")))
    if "*" not in services and "email" not in services:
        raise Invalid("permerror", "the key is not for email (s=)")
    hashes = tuple(h.lower() for h in _colon_list(tags["h"])) if "h" in tags else None
    return KeyRecord(
        key_type=tags.get("k", "rsa").lower(),
        public_key=public_key,
        hashes=hashes,
        services=services,
        flags=tuple(f.lower() for f in _colon_list(tags.get("t", ""))),
    )
