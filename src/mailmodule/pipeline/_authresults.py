"""The Authentication-Results field (RFC 8601), built and read with `authres`.

authres 1.2 writes a value containing "@" unquoted even when it holds spaces or non-ASCII
characters, and cannot parse non-ASCII at all. Internationalized addresses (RFC 8616) put
UTF-8 into these fields, so this module quotes values itself and reads UTF-8 by handing
authres an ASCII stand-in for every non-ASCII character, restored afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import authres
from authres import AuthenticationResult, AuthenticationResultProperty

from mailmodule.errors import HeaderError

__all__ = ["format_authentication_results", "parse_authentication_results"]

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


def _result(res: AuthenticationResult) -> str:
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


def format_authentication_results(authserv_id: str, results: Sequence[AuthenticationResult]) -> str:
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


def parse_authentication_results(value: str) -> tuple[str, list[AuthenticationResult]]:
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
    results: list[AuthenticationResult] = []
    for res in parsed.results:
        if not isinstance(res, AuthenticationResult):
            continue  # the "none" result
        props = [
            AuthenticationResultProperty(p.type, p.name, _show(p.value), _show(p.comment))
            for p in res.properties
        ]
        results.append(
            AuthenticationResult(
                res.method,
                res.version,
                res.result,
                _show(res.result_comment),
                _show(res.reason),
                _show(res.reason_comment),
                props,
            )
        )
    return _show(parsed.authserv_id) or "", results
