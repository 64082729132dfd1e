"""SPF macros (RFC 7208 section 7): parsing a macro-string, then expanding it.

Parsing and expansion are separate so that a record's syntax is checked whole before any
of it is evaluated (section 4.6: a syntax error anywhere is a permerror).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final

import attrs

__all__ = [
    "Escape",
    "Macro",
    "MacroString",
    "SyntaxProblem",
    "ends_with_macro",
    "expand",
    "parse_macro_string",
]

#: Letters allowed everywhere, and those allowed only in explanation text (exp=).
_LETTERS: Final = frozenset("slodiphv")
_EXP_LETTERS: Final = frozenset("crt")
_DELIMITERS: Final = ".-+,/_="
_EXPAND: Final = re.compile(r"%\{([A-Za-z])(\d*)(r?)([.\-+,/_=]*)\}", re.IGNORECASE)
_LITERAL: Final = re.compile(r"[\x21-\x24\x26-\x7e]+")
_SPACES: Final = re.compile(r"[ ]+")
_ESCAPES: Final = {"%%": "%", "%_": " ", "%-": "%20"}


class SyntaxProblem(Exception):
    """A macro-string breaks the grammar; SPF reports it as permerror (never escapes the
    spf package)."""


@attrs.frozen
class Macro:
    """One `%{...}` expansion: letter (lower-case), URL-escape it, keep the `digits`
    right-most parts (0: all), reversed or not, split at `delimiters`."""

    letter: str
    escape: bool
    digits: int
    reverse: bool
    delimiters: str


@attrs.frozen
class Escape:
    """`%%`, `%_` or `%-`: a macro-expand of the grammar that stands for fixed text."""

    text: str


#: Literal text and macros, in order.
MacroString = tuple[str | Macro | Escape, ...]


def parse_macro_string(text: str, *, explanation: bool = False) -> MacroString:
    """The parts of a macro-string; `explanation` allows c, r, t and spaces.

    Raises:
        SyntaxProblem: a "%" not followed by "{", "%", "_" or "-"; a malformed or
            unknown macro; a zero digit transformer; a character outside the grammar.
    """
    parts: list[str | Macro | Escape] = []
    i = 0
    while i < len(text):
        if text.startswith(("%%", "%_", "%-"), i):
            parts.append(Escape(_ESCAPES[text[i : i + 2]]))
            i += 2
            continue
        if text[i] == "%":
            match = _EXPAND.match(text, i)
            if match is None:
                raise SyntaxProblem(f"malformed macro at {text[i : i + 12]!r}")
            letter = match[1].lower()
            if letter not in _LETTERS and not (explanation and letter in _EXP_LETTERS):
                raise SyntaxProblem(f"macro letter {match[1]!r} is not allowed here")
            if match[2] and int(match[2]) == 0:
                raise SyntaxProblem("a macro's digit transformer must not be zero")
            parts.append(
                Macro(
                    letter=letter,
                    escape=match[1].isupper(),
                    digits=int(match[2] or 0),
                    reverse=bool(match[3]),
                    delimiters=match[4] or ".",
                )
            )
            i = match.end()
            continue
        literal = (_SPACES if explanation and text[i] == " " else _LITERAL).match(text, i)
        if literal is None:
            raise SyntaxProblem(f"character {text[i]!r} is not allowed")
        parts.append(literal[0])
        i = literal.end()
    return tuple(parts)


def ends_with_macro(parts: MacroString) -> bool:
    """Whether the last part is a macro (a domain-spec may then end without a toplabel)."""
    return bool(parts) and isinstance(parts[-1], Macro | Escape)


async def expand(parts: MacroString, value: Callable[[str], Awaitable[str]]) -> str:
    """The text of `parts`, each macro's letter looked up with `value` (which may do DNS
    lookups, for %{p}) and transformed as RFC 7208 section 7.3 says."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str | Escape):
            out.append(part if isinstance(part, str) else part.text)
            continue
        pieces = re.split("[" + re.escape(part.delimiters) + "]", await value(part.letter))
        if part.reverse:
            pieces.reverse()
        if part.digits:
            pieces = pieces[-part.digits :]
        text = ".".join(pieces)
        out.append(urllib.parse.quote(text, safe="") if part.escape else text)
    return "".join(out)
