"""SMTP replies: a value, its wire form, and parsing the wire form back.

Shared by the server (which renders replies) and a client (which parses them).

    >>> reply = Reply(code=250, enhanced_code=(2, 1, 0), lines=("Sender OK",))
    >>> format_reply(reply)
    b'250 2.1.0 Sender OK\\r\\n'
    >>> format_reply(Reply(code=250, lines=("mx.example.org", "PIPELINING")))
    b'250-2.0.0 mx.example.org\\r\\n250 2.0.0 PIPELINING\\r\\n'
    >>> parse_reply(b'250-2.0.0 mx.example.org\\r\\n250 2.0.0 PIPELINING\\r\\n').lines
    ('mx.example.org', 'PIPELINING')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, final

import attrs

from mailmodule.errors import ENHANCED_CODE_NOT_SET, NO_ENHANCED_CODE, SMTPError
from mailmodule.smtp._errors import ProtocolError

__all__ = ["Reply", "format_reply", "parse_reply"]

_ENHANCED: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


def _lines(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _check_code(inst: Reply, attr: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 200 <= value <= 599:
        raise ValueError(f"Reply.code must be an int from 200 to 599, got {value!r}")


def _check_enhanced(
    inst: Reply, attr: attrs.Attribute[tuple[int, int, int] | None], value: object
) -> None:
    if value is None:
        return
    ok = (
        type(value) is tuple
        and len(value) == 3
        and all(type(part) is int for part in value)
        and value[0] == inst.code // 100
        and 0 <= value[1] <= 999
        and 0 <= value[2] <= 999
    )
    if not ok:
        raise ValueError(
            f"Reply.enhanced_code must be None or three ints whose class is the code's "
            f"first digit ({inst.code // 100}), got {value!r}"
        )


def _check_lines(inst: Reply, attr: attrs.Attribute[tuple[str, ...]], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"Reply.lines must hold at least one line, got {value!r}")
    for line in value:
        if type(line) is not str:
            raise ValueError(f"Reply.lines must be str, got {type(line).__name__}")
        if "\r" in line or "\n" in line:
            raise ProtocolError(f"a reply line must not contain CR or LF, got {line!r}")


@final
@attrs.frozen(kw_only=True)
class Reply:
    """One SMTP reply: a code, an RFC 3463 enhanced status code, one or more lines of text.

    `lines` may be given as one str. `enhanced_code` None means "not set": where the reply
    must carry one (a 2xx, 4xx or 5xx reply other than the greeting and the EHLO answer,
    with ENHANCEDSTATUSCODES on) `X.0.0` is written, X the code's first digit. 3xx replies
    never carry one.

    Raises:
        ProtocolError: a line contains CR or LF (a reply cannot smuggle another one).
        ValueError: the code is not 200 to 599, or the enhanced code does not match it.
    """

    code: int = attrs.field(validator=_check_code)
    enhanced_code: tuple[int, int, int] | None = attrs.field(
        default=None, validator=_check_enhanced
    )
    lines: tuple[str, ...] = attrs.field(default=("OK",), converter=_lines, validator=_check_lines)

    @classmethod
    def from_error(cls, error: SMTPError) -> Reply:
        """The reply that relays an `SMTPError` to the client."""
        enhanced: tuple[int, int, int] | None = error.enhanced_code
        if enhanced in (NO_ENHANCED_CODE, ENHANCED_CODE_NOT_SET):
            enhanced = None
        elif enhanced is not None and enhanced[0] != error.code // 100:
            enhanced = None  # a mismatched class: write X.0.0 rather than a contradiction
        return cls(code=error.code, enhanced_code=enhanced, lines=error.message.splitlines() or "")

    @property
    def is_positive(self) -> bool:
        """True for 2xx and 3xx replies: the command was accepted."""
        return self.code < 400


def format_reply(reply: Reply, *, enhanced: bool = True) -> bytes:
    """The wire form of `reply`: one line per text line, "250-" on all but the last.

    With `enhanced`, 2xx, 4xx and 5xx lines start with the enhanced status code (the
    reply's own, or `X.0.0`); without, no line does.
    """
    code = reply.code
    prefix = ""
    if enhanced and code // 100 != 3:
        ec = reply.enhanced_code
        prefix = f"{ec[0]}.{ec[1]}.{ec[2]} " if ec is not None else f"{code // 100}.0.0 "
    last = len(reply.lines) - 1
    out = [
        f"{code}{' ' if i == last else '-'}{prefix}{line}\r\n" for i, line in enumerate(reply.lines)
    ]
    return "".join(out).encode("utf-8")


def parse_reply(data: bytes) -> Reply:
    """Parse one complete reply (all its lines, CRLF-terminated) as `format_reply` writes it.

    An enhanced status code is recognised only when every line of a 2xx, 4xx or 5xx reply
    starts with the same one.

    Raises:
        SMTPError: the text is not a well-formed reply (code 500 5.5.2, as a client would
            report a garbled answer).
    """
    text = data.decode("utf-8", "replace")
    if not text.endswith("\r\n"):
        raise SMTPError(500, (5, 5, 2), "reply does not end with CRLF")
    raw = text[:-2].split("\r\n")
    code = raw[0][:3]
    if not code.isdigit() or not 200 <= int(code) <= 599:
        raise SMTPError(500, (5, 5, 2), "reply has no valid code")
    texts: list[str] = []
    for i, line in enumerate(raw):
        sep = " " if i == len(raw) - 1 else "-"
        if line[:3] != code or line[3:4] not in (sep, ""):
            raise SMTPError(500, (5, 5, 2), f"malformed reply line {i + 1}")
        texts.append(line[4:])
    enhanced: tuple[int, int, int] | None = None
    first = _ENHANCED.match(texts[0])
    if first and first.group(1) == code[0] and all(t.startswith(first.group(0)) for t in texts):
        enhanced = (int(first.group(1)), int(first.group(2)), int(first.group(3)))
        texts = [t[len(first.group(0)) :] for t in texts]
    return Reply(code=int(code), enhanced_code=enhanced, lines=texts)
