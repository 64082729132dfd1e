"""The Authentication-Results field (RFC 8601), built and read with `authres`.

authres 1.2 writes a value containing "@" unquoted even when it holds spaces or non-ASCII
characters, and cannot parse non-ASCII at all. Internationalized addresses (RFC 8616) put
UTF-8 into these fields, so this module quotes values itself and reads UTF-8 by handing
authres an ASCII stand-in for every non-ASCII character, restored afterwards.

A border MTA must also remove the fields that claim to come from itself (RFC 8601 section 5):
`remove_forged_authentication_results`, built on `authserv_id_of`, which reads the
authserv-id alone and tolerantly, without authres.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Collection, Sequence

import authres
from authres import AuthenticationResult

from mailmodule.address import domain_for_lookup
from mailmodule.errors import AddressError, HeaderError
from mailmodule.header import Header, HeaderField
from mailmodule.interfaces import AuthResult, AuthResultProperty

__all__ = [
    "authserv_id_of",
    "format_authentication_results",
    "parse_authentication_results",
    "remove_forged_authentication_results",
]

# RFC 2045 token: printable ASCII without tspecials or space.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# RFC 5322 dot-atom on both sides of "@" (ASCII only).
_ATOM = r"[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+(?:\.[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+)*"
_ADDR = re.compile(rf"(?:{_ATOM})?@{_ATOM}")
_STANDIN = re.compile(r"%u([0-9A-F]{6})")
_QUOTED_PAIR = re.compile(r"\\(.)")


def _value(text: str) -> str:
    if _TOKEN.fullmatch(text) or _ADDR.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str | None) -> str:
    if not text:
        return ""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f" ({escaped})"


def _result(res: AuthResult | AuthenticationResult) -> str:
    out = res.method
    if res.version:
        out += f"/{res.version}"
    out += f"={res.result}{_comment(res.result_comment)}"
    if res.reason:
        out += f" reason={_value(str(res.reason))}{_comment(res.reason_comment)}"
    for prop in res.properties:
        value = "" if prop.value is None else str(prop.value)
        out += f" {prop.type}.{prop.name}={_value(value)}{_comment(prop.comment)}"
    return out


def format_authentication_results(
    authserv_id: str, results: Sequence[AuthResult | AuthenticationResult]
) -> str:
    """The value of an Authentication-Results field: `authserv-id; method=result ...`.

    Values are quoted where RFC 8601 needs it, UTF-8 included; "none" stands in for an empty
    list. Folding to 78 columns is left to `Header.add`, which folds at white space.
    """
    parts = [_result(r) for r in results] or ["none"]
    return "; ".join([authserv_id, *parts])


def _hide(text: str) -> str:
    return "".join(c if c.isascii() and c != "%" else f"%u{ord(c):06X}" for c in text)


def _show(text: str | None) -> str | None:
    if text is None:
        return None
    # authres keeps quoted-pairs escaped; a backslash can only come from one.
    return _STANDIN.sub(lambda m: chr(int(m.group(1), 16)), _QUOTED_PAIR.sub(r"\1", text))


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """Read the value of an Authentication-Results field (unfolded), UTF-8 included.

    Returns:
        The authserv-id and the results ("none" gives an empty list).

    Raises:
        HeaderError: the value is not RFC 8601 syntax.
    """
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(_hide(value))
    except authres.AuthResError as exc:
        raise HeaderError(f"malformed Authentication-Results value: {exc}") from exc
    results: list[AuthResult] = []
    for res in parsed.results:
        if not isinstance(res, AuthenticationResult):
            continue  # the "none" result
        results.append(
            AuthResult(
                method=res.method,
                version=res.version,
                result=res.result,
                result_comment=_show(res.result_comment),
                reason=_show(res.reason),
                reason_comment=_show(res.reason_comment),
                properties=[
                    AuthResultProperty(p.type, p.name, _show(p.value), _show(p.comment))
                    for p in res.properties
                ],
            )
        )
    return _show(parsed.authserv_id) or "", results


# Reading the authserv-id (RFC 8601 section 2.2):
#   authres-payload = [CFWS] authserv-id [ CFWS authres-version ] ( no-result / 1*resinfo )
#   authserv-id = value (RFC 2045: token / quoted-string); authres-version = 1*DIGIT [CFWS]
# Comments (RFC 5322) nest and hold quoted-pairs. Tokens here also allow non-ASCII (RFC 8616).

_FIELD = "authentication-results"
# A fold is a line break before white space (CRLF, or a bare LF as header.py reads it).
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACE = frozenset(" \t\r\n")
_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')


def _is_token_char(c: str) -> bool:
    return c not in _TSPECIALS and c not in _SPACE and c >= "\x21" and c != "\x7f"


def _skip_cfws(text: str, i: int, *, nested: bool, pairs: bool) -> int | None:
    """The index after the white space and comments at `i`; None if a comment is unclosed."""
    n = len(text)
    while i < n:
        if text[i] in _SPACE:
            i += 1
        elif text[i] == "(":
            depth = 0
            while True:
                if i >= n:
                    return None
                c = text[i]
                if c == "\\" and pairs:
                    i += 1
                elif c == "(" and (nested or depth == 0):
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        else:
            break
    return i


def _read_value(text: str, i: int, *, pairs: bool) -> tuple[str, int] | None:
    """The token or quoted-string (unquoted) at `i` and the index after it, or None."""
    n = len(text)
    if i < n and text[i] == '"':
        out: list[str] = []
        i += 1
        while i < n:
            c = text[i]
            if c == "\\" and pairs:
                if i + 1 >= n:
                    return None
                out.append(text[i + 1])
                i += 2
            elif c == '"':
                return "".join(out), i + 1
            else:
                out.append(c)
                i += 1
        return None
    start = i
    while i < n and _is_token_char(text[i]):
        i += 1
    return text[start:i], i


def _read_id(text: str, *, nested: bool = True, pairs: bool = True) -> str | None:
    text = _UNFOLD.sub("", text)
    i = _skip_cfws(text, 0, nested=nested, pairs=pairs)
    if i is None:
        return None
    read = _read_value(text, i, pairs=pairs)
    if read is None or not read[0]:
        return None
    authserv_id, i = read
    after = _skip_cfws(text, i, nested=nested, pairs=pairs)
    if after is None:
        return None
    if after > i:  # a version needs white space or a comment before it
        i = after
        while i < len(text) and text[i] in "0123456789":
            i += 1
        after = _skip_cfws(text, i, nested=nested, pairs=pairs)
        if after is None:
            return None
    if after < len(text) and text[after] != ";":
        return None
    return authserv_id


def authserv_id_of(value: str) -> str | None:
    """The authserv-id of an Authentication-Results field value, as written.

    The value may still be folded (CRLF or bare LF before white space). Comments (nested,
    with quoted-pairs) and white space may surround the id; the id is a token or a
    quoted-string, whose quotes and quoted-pairs are undone; a version number may follow it
    (`mx.example.org 1; spf=pass`); then comes `;` or the end of the value. Nothing is
    normalised: compare ids case-insensitively, as domains.

        >>> authserv_id_of('(ours) "mx.example.org" 1; spf=pass')
        'mx.example.org'
        >>> authserv_id_of("mx.example.org junk; spf=pass") is None
        True

    Returns:
        The authserv-id, or None when none can be read: the value is empty or starts with
        `;`, a comment or quoted-string is unclosed, or something other than a version
        comes between the id and the `;`.
    """
    return _read_id(value)


def _first_word(text: str, *, nested: bool) -> str | None:
    # What a careless reader takes for the id: the first word after comments, quote or not.
    text = _UNFOLD.sub("", text)
    i = _skip_cfws(text, 0, nested=nested, pairs=True)
    if i is None:
        return None
    n = len(text)
    if text.startswith('"', i):  # the quoted text, backslashes kept
        start = i = i + 1
        while i < n and text[i] not in '";' and not text[i].isspace():
            i += 1
    else:
        start = i
        while i < n and _is_token_char(text[i]) and not text[i].isspace():
            i += 1
    return text[start:i] or None


@functools.lru_cache(maxsize=256)
def _own_forms(authserv_id: str) -> frozenset[str]:
    return frozenset(_id_forms(authserv_id))


def _id_forms(authserv_id: str) -> set[str]:
    """Every key a reader might compare an id by: casefolded, and as lower-case U-labels."""
    forms: set[str] = set()
    stripped = authserv_id.strip()
    for text in {stripped, unicodedata.normalize("NFKC", stripped)}:
        text = text.rstrip(".")
        if not text:
            continue
        forms.add(text.casefold())
        with contextlib.suppress(AddressError):  # not a domain: the casefolded form stands
            forms.add(domain_for_lookup(text))
    return forms


def _readings(field: HeaderField) -> list[str]:
    """The field's value text, in each decoding a reader might use when it is not UTF-8."""
    raw = field.raw
    colon = raw.find(b":")
    body = raw[colon + 1 :] if colon >= 0 else raw
    try:
        return [body.decode("utf-8")]
    except UnicodeDecodeError:
        return [
            body.decode("utf-8", "replace"),
            body.decode("utf-8", "ignore"),
            body.decode("latin-1"),
        ]


def _claims(field: HeaderField, ours: frozenset[str]) -> bool:
    for text in _readings(field):
        candidates = [
            _read_id(text),
            _read_id(text, nested=False),
            _read_id(text, nested=False, pairs=False),
            _first_word(text, nested=True),
            _first_word(text, nested=False),
        ]
        if any(c is not None and not ours.isdisjoint(_id_forms(c)) for c in candidates):
            return True
    return False


def remove_forged_authentication_results(
    header: Header, authserv_id: str, *, keep: Collection[HeaderField] = ()
) -> int:
    """Remove the Authentication-Results fields that claim our authserv-id (RFC 8601 section 5).

    A border MTA calls this on every message it receives, before its own checks add fields:
    such a field came from outside, so it is forged. `header` is changed in place; the
    fields that stay keep their order and raw bytes.

    Callers may assume: a field is removed when its name is `Authentication-Results` in any
    case (`Authentication-Results :` too, which header.py reads as that name) and its
    authserv-id equals `authserv_id` ignoring trailing dots: equal casefolded, or equal as
    lower-case U-labels where IDNA conversion succeeds (so `xn--...` matches its U-label).
    The id is read by `authserv_id_of` and also as careless readers downstream might read
    it (comments not nested, quoted-pairs not undone, just the first word after the
    comments, bytes that are not UTF-8 dropped or read as Latin-1): removing a field is
    never harmful, keeping a forged one is. So an unparsable field goes unless it does not
    even start with our id. A field is kept when it is in `keep` by identity (`is`, not
    `==`: a forged copy of one of our fields is still removed), so the fields our pipeline
    added earlier in this process survive. `ARC-Authentication-Results` is another field
    (RFC 8617), signed by its ARC set's seal, which removing it would break: never touched.

    Args:
        header: the message header, changed in place.
        authserv_id: our own authserv-id, as configured.
        keep: fields to keep whatever they say, compared by identity.

    Returns:
        The number of fields removed.

    Raises:
        ValueError: `authserv_id` is empty or only white space and dots.
    """
    ours = _own_forms(authserv_id)
    if not ours:
        raise ValueError(f"authserv_id must name a server, got {authserv_id!r}")
    if _FIELD not in header:  # the common case: nothing to read
        return 0
    kept = {id(field) for field in keep}

    def forged(field: HeaderField) -> bool:
        if id(field) in kept or field.name.strip(" \t").lower() != _FIELD:
            return False
        return _claims(field, ours)

    return header.remove_fields(forged)
