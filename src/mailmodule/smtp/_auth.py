"""AUTH PLAIN and LOGIN (RFC 4954, RFC 4616): the base64 exchange, without I/O."""

from __future__ import annotations

import base64
import binascii
from typing import Final

from mailmodule.errors import SMTPError

__all__ = [
    "LOGIN_PASSWORD_PROMPT",
    "LOGIN_USERNAME_PROMPT",
    "MECHANISMS",
    "decode_login_field",
    "decode_plain",
    "encode_plain",
]

#: The mechanisms a server offers, in the order EHLO lists them.
MECHANISMS: Final = ("PLAIN", "LOGIN")
#: The 334 challenges of LOGIN: base64 of "Username:" and "Password:".
LOGIN_USERNAME_PROMPT: Final = "VXNlcm5hbWU6"
LOGIN_PASSWORD_PROMPT: Final = "UGFzc3dvcmQ6"


def _b64decode(text: str) -> bytes:
    if text == "=":  # RFC 4954: an empty initial response
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError):
        raise SMTPError(501, (5, 5, 2), "Invalid base64 data") from None


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeError:
        raise SMTPError(501, (5, 5, 2), "Credentials are not UTF-8") from None


def decode_plain(text: str) -> tuple[str, str, str]:
    """The authorization id, username and password of a PLAIN response (base64).

    Raises:
        SMTPError: 501 5.5.2 when the base64 is invalid, the decoded message is not
            three NUL-separated UTF-8 fields, or the username is empty.
    """
    parts = _b64decode(text).split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SMTPError(501, (5, 5, 2), "Invalid PLAIN response")
    authzid, username, password = (_utf8(p) for p in parts)
    return authzid, username, password


def decode_login_field(text: str) -> str:
    """A LOGIN username or password (base64 of UTF-8).

    Raises:
        SMTPError: 501 5.5.2 when the base64 or the UTF-8 is invalid.
    """
    return _utf8(_b64decode(text))


def encode_plain(authorization_id: str, username: str, password: str) -> str:
    """The base64 PLAIN response a client sends for these credentials."""
    raw = "\0".join((authorization_id, username, password)).encode("utf-8")
    return base64.b64encode(raw).decode("ascii") or "="
