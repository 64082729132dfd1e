"""Matching a server's certificate chain against TLSA records (RFC 6698, RFC 7672).

Only the usages RFC 7672 lets SMTP use count: DANE-EE (3), the leaf's certificate or key
itself, with no name or date checks (section 3.1.1); DANE-TA (2), a CA certificate of the
chain the server sent, to which the leaf must chain with the MX host name (in its
subjectAltName) and the dates checked (section 3.1.2). PKIX-TA (0) and PKIX-EE (1) are
unusable, as are unknown selectors and matching types.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mailmodule.dns import TLSA

__all__ = ["DANE_EE", "DANE_TA", "authenticates", "usable_records"]

DANE_TA: Final = 2
DANE_EE: Final = 3
_DIGESTS: Final = {0: None, 1: "sha256", 2: "sha512"}
# The CA/Browser Forum's extension rules (critical SANs, key usages) are the web's, not
# SMTP's: a private CA named by DANE-TA need only make CAs CAs and name the server.
_CA_RULES: Final = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, None
)
_EE_RULES: Final = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def usable_records(records: Iterable[TLSA]) -> tuple[TLSA, ...]:
    """The records SMTP may use: DANE-TA or DANE-EE, selector 0 or 1, matching type 0-2."""
    return tuple(
        r
        for r in records
        if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.mtype in _DIGESTS
    )


def authenticates(
    records: Iterable[TLSA],
    chain: Sequence[bytes],
    host: str,
    *,
    now: datetime.datetime | None = None,
) -> bool:
    """Whether a usable record authenticates `chain` (DER, leaf first) for MX `host`.

    `now` is the time DANE-TA checks dates against (the current time by default).
    A chain that does not parse authenticates nothing; this never raises for it.
    """
    usable = usable_records(records)
    if not chain or not usable:
        return False
    if any(r.usage == DANE_EE and _matches(r, chain[0]) for r in usable):
        return True
    anchors = [r for r in usable if r.usage == DANE_TA]
    return bool(anchors) and _chains_to(anchors, chain, host, now)


def _matches(record: TLSA, der: bytes) -> bool:
    if record.selector == 0:
        data = der
    else:
        try:
            key = x509.load_der_x509_certificate(der).public_key()
            data = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        except (ValueError, TypeError):  # not a certificate, or a key type it cannot read
            return False
    digest = _DIGESTS[record.mtype]
    found = data if digest is None else hashlib.new(digest, data).digest()
    return found == record.data


def _chains_to(
    anchors: Sequence[TLSA], chain: Sequence[bytes], host: str, now: datetime.datetime | None
) -> bool:
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return False
    roots = [
        cert
        for der, cert in zip(chain[1:], certs[1:], strict=True)
        if _is_ca(cert) and any(_matches(r, der) for r in anchors)
    ]
    if not roots:
        return False
    builder = PolicyBuilder().store(Store(roots))
    builder = builder.extension_policies(ca_policy=_CA_RULES, ee_policy=_EE_RULES)
    if now is not None:
        builder = builder.time(now)
    try:
        verifier = builder.build_server_verifier(x509.DNSName(host))
        verifier.verify(certs[0], certs[1:])
    except (VerificationError, ValueError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False
