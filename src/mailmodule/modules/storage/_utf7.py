"""Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of IMAP folder names on disk."""

from __future__ import annotations

import base64
import binascii

__all__ = ["decode", "encode"]


def _b64(chars: str) -> str:
    raw = chars.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    """`name` in modified UTF-7: printable ASCII stays, "&" is "&-", the rest is base64.

    Raises:
        UnicodeEncodeError: `name` holds a lone surrogate.
    """
    out: list[str] = []
    pending: list[str] = []
    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            if pending:
                out.append(f"&{_b64(''.join(pending))}-")
                pending.clear()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    if pending:
        out.append(f"&{_b64(''.join(pending))}-")
    return "".join(out)


def decode(text: str) -> str:
    """The name `text` encodes; only the canonical encoding (what `encode` writes) is taken.

    Raises:
        ValueError: `text` is not canonical modified UTF-7.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if not 0x20 <= ord(char) <= 0x7E:
            raise ValueError(f"not modified UTF-7: {char!r} at {i}")
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError(f"not modified UTF-7: unterminated '&' at {i}")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"not modified UTF-7 at {i}: {exc}") from exc
        i = end + 1
    name = "".join(out)
    if encode(name) != text:  # padding bits, split runs, encoded ASCII
        raise ValueError(f"not canonical modified UTF-7: {text!r}")
    return name
