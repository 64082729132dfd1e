"""What a server offers, read from its EHLO or LHLO reply.

>>> ext = Extensions.parse(("mx.example.org", "PIPELINING", "SIZE 1000", "AUTH plain LOGIN"))
>>> ext.pipelining, ext.size, sorted(ext.auth), ext.smtputf8
(True, 1000, ['LOGIN', 'PLAIN'], False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, final

import attrs

__all__ = ["Extensions"]

_MAX_SIZE: Final = (1 << 63) - 1  # what MailOptions.size can hold
_DIGITS: Final = re.compile(r"[0-9]{1,30}")


def _words(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@final
@attrs.frozen(kw_only=True)
class Extensions:
    """The SMTP service extensions of one session (RFC 5321 section 4.1.1.1).

    `binarymime` needs CHUNKING too (RFC 3030). `size` is the SIZE limit in bytes:
    None when SIZE is not offered, 0 when offered without a limit. `auth` holds the
    SASL mechanisms upper-cased. `names` holds every keyword offered, upper-cased,
    known or not. A HELO session has no extensions.
    """

    pipelining: bool = False
    eightbitmime: bool = False
    smtputf8: bool = False
    size: int | None = None
    starttls: bool = False
    auth: frozenset[str] = attrs.field(default=frozenset(), converter=_words)
    dsn: bool = False
    chunking: bool = False
    binarymime: bool = False
    enhanced_status_codes: bool = False
    requiretls: bool = False
    names: frozenset[str] = attrs.field(default=frozenset(), converter=_words)

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Extensions:
        """Read the lines of a 250 EHLO/LHLO reply; the first (the server's name) is skipped.

        Never raises: a line that is not a keyword, or a SIZE that is not a number, is
        ignored (a hostile server cannot do more than offer nothing).
        """
        names: set[str] = set()
        auth: set[str] = set()
        size: int | None = None
        for line in tuple(lines)[1:]:
            words = line.split()
            if not words or not (words[0].isascii() and words[0].isprintable()):
                continue
            keyword, params = words[0].upper(), words[1:]
            names.add(keyword)
            if keyword == "SIZE":
                text = params[0] if params else "0"
                size = min(int(text), _MAX_SIZE) if _DIGITS.fullmatch(text) else 0
            elif keyword == "AUTH":
                auth.update(p.upper() for p in params if p.isascii() and p.isprintable())
        return cls(
            pipelining="PIPELINING" in names,
            eightbitmime="8BITMIME" in names,
            smtputf8="SMTPUTF8" in names,
            size=size,
            starttls="STARTTLS" in names,
            auth=frozenset(auth),
            dsn="DSN" in names,
            chunking="CHUNKING" in names,
            binarymime="BINARYMIME" in names and "CHUNKING" in names,
            enhanced_status_codes="ENHANCEDSTATUSCODES" in names,
            requiretls="REQUIRETLS" in names,
            names=frozenset(names),
        )
