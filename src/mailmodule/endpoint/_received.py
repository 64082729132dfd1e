"""The Received field an endpoint adds to each message (RFC 5321 section 4.4).

What the client said (its HELO name) is written only in a form that cannot forge
another hop or break the field: a valid domain or address literal as it is, anything else
reduced to harmless characters inside the comment, never with parentheses, semicolons,
CR, LF or (unless the message is SMTPUTF8) non-ASCII characters.
"""

from __future__ import annotations

import email.utils
import re
from typing import Final

from mailmodule import address
from mailmodule.errors import AddressError

__all__ = ["protocol_name", "received_field", "safe_helo"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9.:_-]")
_MAX_SHOWN: Final = 64
_FOR_UNSAFE: Final = re.compile(r"[\s();\\]")


def protocol_name(*, lmtp: bool, esmtp: bool, tls: bool, auth: bool, utf8: bool) -> str:
    """The `with` value of RFC 3848 and RFC 6531: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA,
    LMTP, LMTPS, LMTPA, LMTPSA, and the UTF8SMTP and UTF8LMTP forms for SMTPUTF8 mail.

        >>> protocol_name(lmtp=False, esmtp=True, tls=True, auth=True, utf8=False)
        'ESMTPSA'
        >>> protocol_name(lmtp=False, esmtp=True, tls=True, auth=False, utf8=True)
        'UTF8SMTPS'
    """
    if not lmtp and not esmtp:
        return "SMTP"  # HELO: no extensions, hence no SMTPUTF8, no AUTH
    base = "LMTP" if lmtp else ("UTF8SMTP" if utf8 else "ESMTP")
    if lmtp and utf8:
        base = "UTF8LMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def safe_helo(name: str, *, valid: bool, utf8: bool) -> str | None:
    """The HELO name as it may stand in `from`, or None when it may not (invalid, or
    non-ASCII with no ASCII form outside SMTPUTF8).

        >>> safe_helo("mx.example.org", valid=True, utf8=False)
        'mx.example.org'
        >>> safe_helo("bücher.example", valid=True, utf8=False)
        'xn--bcher-kva.example'
        >>> safe_helo("evil (forged.example [10.1.2.3]) by mx", valid=False, utf8=False) is None
        True
    """
    if not valid:
        return None
    if name.isascii() or utf8:
        return name
    try:
        return address.to_ascii(f"helo@{name}").partition("@")[2]
    except AddressError:
        return None


def _shown(name: str) -> str:
    """An invalid HELO name reduced to letters, digits and ".:_-" (others become "?"),
    at most 64 characters: something to read in the comment, never syntax."""
    text = _UNSAFE.sub("?", name[:_MAX_SHOWN])
    return text + ("..." if len(name) > _MAX_SHOWN else "")


def _literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def _safe_rdns(name: str | None, utf8: bool) -> str:
    if not name or not address.is_valid_domain(name):
        return "unknown"
    return safe_helo(name, valid=True, utf8=utf8) or "unknown"


def received_field(
    *,
    helo: str,
    helo_valid: bool,
    ip: str | None,
    rdns: str | None,
    hostname: str,
    proto: str,
    msg_id: str,
    rcpt: str | None,
    utf8: bool,
    trace_sender: bool = True,
) -> str:
    """The value of a Received field, such as
    `from helo.example (rdns.example [192.0.2.1]) by mx.example with ESMTPS id 1a2b3c4d
    for <joe@example.org>; Tue, 1 Jul 2025 10:00:00 +0200`.

    Args:
        helo: the client's HELO/EHLO/LHLO argument as sent ("" if none).
        helo_valid: whether it is a domain or an address literal.
        ip: the client's IP address, None for a Unix socket.
        rdns: the client's reverse DNS name, None when unknown.
        hostname: ours.
        proto: the `with` value (`protocol_name`).
        msg_id: the message id.
        rcpt: the one recipient, or None (several recipients are never named).
        utf8: whether the message is SMTPUTF8 (non-ASCII names may be written).
        trace_sender: False to leave out the `from` clause (MsgMetadata.dont_trace_sender).
    """
    parts = []
    if trace_sender:
        name = safe_helo(helo, valid=helo_valid, utf8=utf8)
        comment = []
        if ip is not None:
            comment.append(f"{_safe_rdns(rdns, utf8)} [{ip}]")
        if name is None:
            if helo:
                comment.append(f"helo={_shown(helo)}")
            name = _literal(ip) if ip is not None else "unknown"
        parts.append(f"from {name}" + (f" ({' '.join(comment)})" if comment else ""))
    parts.append(f"by {hostname} with {proto} id {msg_id}")
    if rcpt is not None and not _FOR_UNSAFE.search(rcpt) and (utf8 or rcpt.isascii()):
        parts.append(f"for <{rcpt}>")
    return " ".join(parts) + "; " + email.utils.format_datetime(email.utils.localtime())
