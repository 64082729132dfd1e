"""SMTP command lines: the verbs, MAIL FROM and RCPT TO parameters, HELO names, BDAT.

Shared by the server (which parses commands) and a client (which formats them): what
`format_mail_from` writes, `parse_mail_from` reads back to the same values.

    >>> parse_mail_from("FROM:<joe@example.org> BODY=8BITMIME", allowed=frozenset({"BODY"}))
    ('joe@example.org', MailOptions(body='8BITMIME', size=0, require_tls=False, utf8=False, \
return_='', envelope_id='', auth=None))
    >>> xtext_encode("a+b=c")
    'a+2Bb+3Dc'
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Final

from mailmodule import address
from mailmodule.errors import AddressError, SMTPError
from mailmodule.metadata import MailOptions, RcptOptions

__all__ = [
    "MAIL_PARAMETERS",
    "RCPT_PARAMETERS",
    "Verb",
    "format_mail_from",
    "format_rcpt_to",
    "is_valid_hello_name",
    "parse_bdat",
    "parse_mail_from",
    "parse_rcpt_to",
    "split_command",
    "xtext_decode",
    "xtext_encode",
]

#: Every MAIL FROM parameter this module knows (SIZE, 8BITMIME, SMTPUTF8, REQUIRETLS, DSN,
#: AUTH); a server passes the ones its enabled extensions allow.
MAIL_PARAMETERS: Final = frozenset(
    {"SIZE", "BODY", "SMTPUTF8", "REQUIRETLS", "RET", "ENVID", "AUTH"}
)
#: Every RCPT TO parameter this module knows (DSN's).
RCPT_PARAMETERS: Final = frozenset({"NOTIFY", "ORCPT"})

_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_XTEXT: Final = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_XCHAR: Final = re.compile(r"\+([0-9A-F]{2})")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")
_MAX_ENVID: Final = 100  # RFC 3461 section 4.4


class Verb(enum.StrEnum):
    """The SMTP and LMTP commands this package knows."""

    HELO = "HELO"
    EHLO = "EHLO"
    LHLO = "LHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BDAT = "BDAT"
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"
    VRFY = "VRFY"
    EXPN = "EXPN"
    HELP = "HELP"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"


def _syntax(text: str) -> SMTPError:
    return SMTPError(501, (5, 5, 4), text)


def split_command(line: str) -> tuple[str, str]:
    """The verb (upper-cased) and the argument (leading and trailing spaces removed) of a
    command line without its CRLF."""
    verb, _, arg = line.partition(" ")
    return verb.upper(), arg.strip(" ")


def xtext_decode(text: str) -> str:
    """Undo RFC 3461 xtext encoding ("+2B" is "+"); the octets are read as UTF-8.

    Raises:
        SMTPError: `text` is not valid xtext (501 5.5.4).
    """
    if not _XTEXT.fullmatch(text):
        raise _syntax("Syntax: invalid xtext")
    if "+" not in text:
        return text
    out = bytearray()
    pos = 0
    for m in _XCHAR.finditer(text):
        out += text[pos : m.start()].encode("ascii")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += text[pos:].encode("ascii")
    try:
        return out.decode("utf-8")
    except UnicodeError:
        raise _syntax("Syntax: xtext is not UTF-8") from None


def xtext_encode(text: str) -> str:
    """RFC 3461 xtext: "+", "=", spaces, controls and non-ASCII as "+XX" per UTF-8 octet."""
    return "".join(
        ch if "!" <= ch <= "~" and ch not in "+=" else "".join(f"+{b:02X}" for b in ch.encode())
        for ch in text
    )


def is_valid_hello_name(name: str) -> bool:
    """Whether a HELO/EHLO/LHLO argument is a domain or an address literal (RFC 5321 4.1.3).

    >>> [is_valid_hello_name(n) for n in ("mx.example.org", "[192.0.2.1]", "[IPv6:::1]", "x y")]
    [True, True, True, False]
    """
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        try:
            if inner[:5].upper() == "IPV6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    return address.is_valid_domain(name)


def parse_bdat(arg: str) -> tuple[int, bool] | None:
    """The size and the LAST flag of `BDAT <size> [LAST]`, or None when malformed."""
    words = arg.split(" ")
    if not 1 <= len(words) <= 2 or not _DIGITS.fullmatch(words[0]):
        return None
    if len(words) == 2 and words[1].upper() != "LAST":
        return None
    return int(words[0]), len(words) == 2


def _split_path(arg: str, keyword: str, *, null_ok: bool) -> tuple[str, dict[str, str | None]]:
    usage = f"Syntax: {'MAIL FROM' if null_ok else 'RCPT TO'}:<address> [parameters]"
    if arg[: len(keyword)].upper() != keyword:
        raise _syntax(usage)
    text = arg[len(keyword) :].lstrip(" ")
    if not text.startswith("<"):
        raise _syntax(usage)
    end = _closing_bracket(text)
    if end < 0:
        raise _syntax("Syntax: missing closing angle bracket")
    path = text[1:end]
    if path.startswith("@") and ":" in path:  # an RFC 5321 source route: ignored
        path = path.split(":", 1)[1]
    params: dict[str, str | None] = {}
    rest = text[end + 1 :]
    if rest and not rest.startswith(" "):
        raise _syntax(usage)
    for word in rest.split():
        key, eq, value = word.partition("=")
        key = key.upper()
        if not _KEYWORD.fullmatch(key) or (eq and not value):
            raise _syntax("Syntax: malformed parameter")
        if key in params:
            raise _syntax(f"Syntax: {key} given twice")
        params[key] = value if eq else None
    if not path:
        if not null_ok:
            raise SMTPError(501, (5, 1, 3), "Syntax: an empty recipient")
        return "", params
    bad = (5, 1, 7) if null_ok else (5, 1, 3)
    if not address.is_valid(path) or (null_ok and "@" not in path):
        raise SMTPError(501, bad, "Bad address syntax")
    return path, params


def _closing_bracket(text: str) -> int:
    if '"' not in text:
        return text.find(">")
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def _not_supported(verb: str, key: str) -> SMTPError:
    return SMTPError(555, (5, 5, 4), f"{verb} parameter {key} is not supported")


def _clean(addr: str, enhanced: tuple[int, int, int]) -> str:
    try:
        return address.clean_domain(addr)
    except AddressError:
        raise SMTPError(501, enhanced, "Bad address syntax") from None


def parse_mail_from(
    arg: str, *, allowed: frozenset[str], max_size: int | None = None
) -> tuple[str, MailOptions]:
    """The sender ("" for `<>`) and `MailOptions` of MAIL FROM (`arg` is "FROM:<...> ...").

    Only the parameters in `allowed` (a subset of `MAIL_PARAMETERS`, the ones the enabled
    extensions offer) are accepted. A non-ASCII sender needs the SMTPUTF8 parameter.

    Raises:
        SMTPError: with the reply the RFCs ask for: 501 5.5.4 (syntax), 501 5.1.7 (bad
            address), 552 5.3.4 (SIZE above `max_size`), 553 5.6.7 (non-ASCII without
            SMTPUTF8), 555 5.5.4 (a parameter not offered).
    """
    sender, params = _split_path(arg, "FROM:", null_ok=True)
    size, body, utf8, require_tls, ret, envid = 0, "", False, False, "", ""
    auth: str | None = None
    for key, value in params.items():
        if key not in allowed:
            raise _not_supported("MAIL FROM", key)
        if key in ("SMTPUTF8", "REQUIRETLS"):
            if value is not None:
                raise _syntax(f"Syntax: {key} takes no value")
            utf8 = utf8 or key == "SMTPUTF8"
            require_tls = require_tls or key == "REQUIRETLS"
        elif value is None:
            raise _syntax(f"Syntax: {key}=<value>")
        elif key == "SIZE":
            if not _DIGITS.fullmatch(value):
                raise _syntax("Syntax: SIZE=<number>")
            size = int(value)
            if size >= 1 << 63:  # what no queue file can hold (Go's int64)
                raise SMTPError(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
            if max_size is not None and size > max_size:
                raise SMTPError(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
        elif key == "BODY":
            body = value.upper()
            if body not in ("7BIT", "8BITMIME"):
                raise _syntax("BODY must be 7BIT or 8BITMIME")
        elif key == "RET":
            ret = value.upper()
            if ret not in ("FULL", "HDRS"):
                raise _syntax("RET must be FULL or HDRS")
        elif key == "ENVID":
            if len(value) > _MAX_ENVID:
                raise _syntax("Syntax: ENVID=<xtext of at most 100 characters>")
            envid = xtext_decode(value)
        else:  # AUTH
            auth = xtext_decode(value)
            if auth != "<>" and not address.is_valid(auth):
                raise _syntax("Syntax: AUTH=<mailbox> or AUTH=<>")
            auth = "" if auth == "<>" else auth
    opts = MailOptions(
        size=size,
        body=body,
        utf8=utf8,
        require_tls=require_tls,
        return_=ret,
        envelope_id=envid,
        auth=auth,
    )
    if not sender.isascii() and not utf8:
        raise SMTPError(553, (5, 6, 7), "Non-ASCII address without SMTPUTF8")
    return (_clean(sender, (5, 1, 7)) if sender else ""), opts


def parse_rcpt_to(
    arg: str, *, allowed: frozenset[str], utf8: bool = False
) -> tuple[str, RcptOptions]:
    """The recipient and `RcptOptions` of RCPT TO (`arg` is "TO:<...> ...").

    `<postmaster>` without a domain is accepted in any case (RFC 5321 4.5.1). Only the
    parameters in `allowed` (a subset of `RCPT_PARAMETERS`) are accepted; `utf8` says
    whether the transaction's MAIL FROM had SMTPUTF8.

    Raises:
        SMTPError: 501 5.5.4 (syntax), 501 5.1.3 (bad address), 553 5.6.7 (non-ASCII
            without SMTPUTF8), 555 5.5.4 (a parameter not offered).
    """
    rcpt, params = _split_path(arg, "TO:", null_ok=False)
    notify: tuple[str, ...] = ()
    orcpt_type = orcpt = ""
    for key, value in params.items():
        if key not in allowed:
            raise _not_supported("RCPT TO", key)
        if key == "NOTIFY":
            notify = tuple((value or "").upper().split(","))
            try:
                RcptOptions(notify=notify)
            except ValueError:
                raise _syntax("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY") from None
        else:  # ORCPT
            kind, sep, addr = (value or "").partition(";")
            if not sep or not _KEYWORD.fullmatch(kind) or not addr:
                raise _syntax("Syntax: ORCPT=<type>;<address>")
            orcpt_type, orcpt = kind.lower(), xtext_decode(addr)
    if not rcpt.isascii() and not utf8:
        raise SMTPError(553, (5, 6, 7), "Non-ASCII address without SMTPUTF8")
    options = RcptOptions(
        notify=notify, original_recipient_type=orcpt_type, original_recipient=orcpt
    )
    return _clean(rcpt, (5, 1, 3)), options


def format_mail_from(sender: str, options: MailOptions | None = None) -> str:
    """The MAIL command line (without CRLF) that sends `sender` with `options`."""
    opts = options or MailOptions()
    words = [f"MAIL FROM:<{sender}>"]
    if opts.size:
        words.append(f"SIZE={opts.size}")
    if opts.body:
        words.append(f"BODY={opts.body}")
    if opts.utf8:
        words.append("SMTPUTF8")
    if opts.require_tls:
        words.append("REQUIRETLS")
    if opts.return_:
        words.append(f"RET={opts.return_}")
    if opts.envelope_id:
        words.append(f"ENVID={xtext_encode(opts.envelope_id)}")
    if opts.auth is not None:
        words.append(f"AUTH={xtext_encode(opts.auth or '<>')}")
    return " ".join(words)


def format_rcpt_to(recipient: str, options: RcptOptions | None = None) -> str:
    """The RCPT command line (without CRLF) that sends `recipient` with `options`."""
    opts = options or RcptOptions()
    words = [f"RCPT TO:<{recipient}>"]
    if opts.notify:
        words.append(f"NOTIFY={','.join(opts.notify)}")
    if opts.original_recipient:
        kind = opts.original_recipient_type or "rfc822"
        words.append(f"ORCPT={kind};{xtext_encode(opts.original_recipient)}")
    return " ".join(words)
