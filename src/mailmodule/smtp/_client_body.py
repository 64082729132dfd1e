"""A body on its way out, in pieces of any size: DATA's dot-stuffing, BDAT's raw chunks.

Both encoders send CRLF line endings only: a bare CR or a bare LF becomes CRLF, so no
bare line end (the stuff of SMTP smuggling: "\\n.\\n", "\\r.\\r") ever reaches a
server, and a line starting with a dot is always stuffed, whatever the piece boundaries.
What `DotEncoder` writes for a body fed in any pieces equals `dot_stuff` of the whole.

    >>> enc = DotEncoder()
    >>> enc.feed(b".one\\r"), enc.feed(b"\\n.two\\n"), enc.end()
    (b'..one', b'\\r\\n..two\\r\\n', b'.\\r\\n')
"""

from __future__ import annotations

from typing import final

from mailmodule.smtp._data import normalize_line_endings

__all__ = ["ChunkEncoder", "DotEncoder"]


@final
class _LineEnds:
    """CRLF normalisation across pieces: a CR at the end of a piece waits for the next."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        return normalize_line_endings(data)

    def end(self) -> bytes:
        held, self._cr = self._cr, False
        return b"\r\n" if held else b""


@final
class DotEncoder:
    """Dot-stuffs a DATA body as it is sent; `end` writes what ends it ("." CRLF)."""

    __slots__ = ("_ends", "_line_start")

    def __init__(self) -> None:
        self._ends = _LineEnds()
        self._line_start = True

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        out = data.replace(b"\r\n.", b"\r\n..")
        self._line_start = out.endswith(b"\r\n")
        return out

    def feed(self, data: bytes) -> bytes:
        """The bytes to send for the next piece of the body (possibly empty)."""
        return self._stuff(self._ends.feed(data))

    def end(self) -> bytes:
        """The bytes that end the body: a held CR as CRLF, a CRLF if the last line has
        none, then "." CRLF."""
        out = self._stuff(self._ends.end())
        if not self._line_start:
            out += b"\r\n"
        self._line_start = True
        return out + b".\r\n"


@final
class ChunkEncoder:
    """CRLF-normalises BDAT chunks; a CR at the end of a chunk moves to the next one."""

    __slots__ = ("_ends",)

    def __init__(self) -> None:
        self._ends = _LineEnds()

    def feed(self, data: bytes, *, last: bool = False) -> bytes:
        """The bytes of the next chunk; with `last`, nothing is held back."""
        out = self._ends.feed(data)
        return out + self._ends.end() if last else out
