"""MAIL FROM and RCPT TO arguments, parsed without any I/O."""

from __future__ import annotations

import re
from typing import Final

import attrs

from mailmodule import address
from mailmodule.errors import AddressError, SMTPError
from mailmodule.metadata import MailOptions, RcptOptions

__all__ = ["parse_mail", "parse_rcpt", "xtext_decode"]

_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_XCHAR: Final = re.compile(r"\+([0-9A-F]{2})")


def xtext_decode(text: str) -> str:
    """Undo RFC 3461 xtext encoding ("+2B" is "+")."""
    return _XCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)


def _split_path(arg: str, keyword: str, *, null_ok: bool) -> tuple[str, dict[str, str | None]]:
    text = arg.strip()
    if not text[: len(keyword)].upper() == keyword:
        raise SMTPError(501, (5, 5, 4), f"Syntax: {keyword.rstrip(':')} <address>")
    text = text[len(keyword) :].lstrip()
    if not text.startswith("<"):
        raise SMTPError(501, (5, 5, 4), f"Syntax: {keyword.rstrip(':')} <address>")
    # Find the closing bracket outside a quoted local part.
    quoted = escaped = False
    end = -1
    for i, ch in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            end = i
            break
    if end < 0:
        raise SMTPError(501, (5, 5, 4), "Syntax: missing closing angle bracket")
    path = text[1:end]
    if ":" in path and path.startswith("@"):  # RFC 5321 source route: ignored
        path = path.split(":", 1)[1]
    params: dict[str, str | None] = {}
    for word in text[end + 1 :].split():
        key, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(key):
            raise SMTPError(501, (5, 5, 4), f"Syntax: bad parameter {word!r}")
        params[key.upper()] = value if eq else None
    if not path:
        if not null_ok:
            raise SMTPError(501, (5, 1, 3), "Syntax: an empty recipient")
        return "", params
    if not address.is_valid(path):
        code = (5, 1, 7) if null_ok else (5, 1, 3)
        raise SMTPError(501, code, "Bad address syntax")
    return path, params


def parse_mail(arg: str, *, max_size: int | None, smtputf8: bool) -> tuple[str, MailOptions]:
    """The sender and `MailOptions` of a MAIL FROM command (its text after "MAIL ").

    Raises:
        SMTPError: the command's syntax or one of its parameters is wrong, with the reply
            RFC 5321 and the extensions ask for (501, 552, 555).
    """
    sender, params = _split_path(arg, "FROM:", null_ok=True)
    opts = MailOptions()
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit():
                raise SMTPError(501, (5, 5, 4), "Syntax: SIZE=<number>")
            if max_size is not None and int(value) > max_size:
                raise SMTPError(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
            opts = attrs.evolve(opts, size=int(value))
        elif key == "BODY":
            body = (value or "").upper()
            if body not in ("7BIT", "8BITMIME"):
                raise SMTPError(501, (5, 5, 4), "BODY must be 7BIT or 8BITMIME")
            opts = attrs.evolve(opts, body=body)
        elif key == "SMTPUTF8":
            if value is not None or not smtputf8:
                raise SMTPError(555, (5, 5, 4), "SMTPUTF8 is not enabled")
            opts = attrs.evolve(opts, utf8=True)
        elif key == "REQUIRETLS":
            opts = attrs.evolve(opts, require_tls=True)
        elif key == "RET":
            ret = (value or "").upper()
            if ret not in ("FULL", "HDRS"):
                raise SMTPError(501, (5, 5, 4), "RET must be FULL or HDRS")
            opts = attrs.evolve(opts, return_=ret)
        elif key == "ENVID":
            opts = attrs.evolve(opts, envelope_id=xtext_decode(value or ""))
        elif key == "AUTH":
            auth = xtext_decode(value or "")
            opts = attrs.evolve(opts, auth="" if auth == "<>" else auth)
        else:
            raise SMTPError(555, (5, 5, 4), f"MAIL FROM parameter {key} is not supported")
    if sender and not address.is_ascii(sender) and not opts.utf8:
        raise SMTPError(553, (5, 6, 7), "Non-ASCII address without SMTPUTF8")
    try:
        sender = address.clean_domain(sender) if sender else ""
    except AddressError:
        raise SMTPError(501, (5, 1, 7), "Bad sender address syntax") from None
    return sender, opts


def parse_rcpt(arg: str, *, utf8: bool) -> tuple[str, RcptOptions]:
    """The recipient and `RcptOptions` (DSN NOTIFY, ORCPT) of a RCPT TO command.

    Raises:
        SMTPError: the syntax or a parameter is wrong (501, 555).
    """
    rcpt, params = _split_path(arg, "TO:", null_ok=False)
    notify: tuple[str, ...] = ()
    orcpt_type = orcpt = ""
    for key, value in params.items():
        if key == "NOTIFY":
            notify = tuple((value or "").upper().split(","))
            try:
                RcptOptions(notify=notify)
            except ValueError:
                raise SMTPError(
                    501, (5, 5, 4), "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"
                ) from None
        elif key == "ORCPT":
            kind, sep, addr = (value or "").partition(";")
            if not sep or not kind or not addr:
                raise SMTPError(501, (5, 5, 4), "Syntax: ORCPT=<type>;<address>")
            orcpt_type, orcpt = kind.lower(), xtext_decode(addr)
        else:
            raise SMTPError(555, (5, 5, 4), f"RCPT TO parameter {key} is not supported")
    if not address.is_ascii(rcpt) and not utf8:
        raise SMTPError(553, (5, 6, 7), "Non-ASCII address without SMTPUTF8")
    try:
        rcpt = address.clean_domain(rcpt)
    except AddressError:
        raise SMTPError(501, (5, 1, 3), "Bad recipient address syntax") from None
    return rcpt, RcptOptions(
        notify=notify, original_recipient_type=orcpt_type, original_recipient=orcpt
    )
