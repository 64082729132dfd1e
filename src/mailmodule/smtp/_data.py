"""Message bodies on the wire: DATA's dot-stuffing and BDAT's raw chunks.

Both decoders give CRLF line endings only: a bare CR or a bare LF becomes CRLF. Only
CRLF "." CRLF ends DATA, and only a dot after a CRLF (or at the very start) is a line's
first character for dot-unstuffing; a bare CR or LF never starts a line, so no smuggled
end-of-data ("\\n.\\n", "\\r.\\r", "\\n.\\r\\n", ...) is honoured.

    >>> decoder = DotDecoder()
    >>> decoder.feed(b"..hi\\nthere\\r\\n.\\r\\nQUIT\\r\\n")
    (b'.hi\\r\\nthere\\r\\n', 15)
    >>> dot_stuff(b".hi\\r\\n")
    b'..hi\\r\\n.\\r\\n'
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["ChunkDecoder", "DotDecoder", "dot_stuff", "normalize_line_endings"]

_END: Final = b"\r\n.\r\n"
_PARTIAL_ENDS: Final = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")
_CRLF: Final = b"\r\n"
_NOT_CR_LF: Final = bytes(b for b in range(256) if b not in b"\r\n")


def normalize_line_endings(data: bytes) -> bytes:
    """`data` with every bare CR and bare LF turned into CRLF (CRLF stays as it is)."""
    if _only_crlf(data):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _only_crlf(data: bytes) -> bool:
    # Three C-speed passes instead of a Python loop. If the CRs and LFs alone alternate
    # CR, LF (k pairs), bare ones come as b bare CRs and b bare LFs, and splitlines()
    # sees k + b line ends: exactly k means none is bare.
    ends = data.translate(None, _NOT_CR_LF)
    pairs = len(ends) >> 1
    if ends != _CRLF * pairs:
        return False
    tail = 1 if data and not data.endswith(b"\n") else 0
    return len(data.splitlines()) == pairs + tail


@final
class DotDecoder:
    """Decodes a DATA body as it arrives, in pieces of any size.

    At most 4 bytes (a possible start of CRLF "." CRLF) are held back between calls.
    """

    __slots__ = ("_held", "_skip")

    def __init__(self) -> None:
        # A virtual CRLF before the body makes the first line a line start like any other.
        self._held = b"\r\n"
        self._skip = 2

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Decode the next bytes of the body.

        Returns:
            The decoded bytes (possibly empty), and -1 while the end has not been seen,
            else the index in `data` just after the final CRLF "." CRLF: the bytes from
            there on are no longer body. After the end, the decoder must not be fed again.
        """
        buf = self._held + data if self._held else data
        end = buf.find(_END)
        if end >= 0:
            body = buf[: end + 2]
            consumed = end + 5 - len(self._held)
            self._held = b""
        else:
            body = buf
            for tail in _PARTIAL_ENDS:
                if buf.endswith(tail):
                    body = buf[: -len(tail)]
                    self._held = tail
                    break
            else:
                self._held = b""
            consumed = -1
        if not body:
            return b"", consumed
        out = normalize_line_endings(body.replace(b"\r\n.", b"\r\n"))
        if self._skip:
            out = out[self._skip :]
            self._skip = 0
        return out, consumed


@final
class ChunkDecoder:
    """Decodes the raw BDAT chunks of one message: only line endings change.

    A CR at the end of a piece is held until the next byte shows whether it starts a
    CRLF; `final=True` on the last piece of the LAST chunk lets it go.
    """

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes, *, final: bool = False) -> bytes:
        """The decoded form of the next raw bytes (possibly empty)."""
        if self._cr:
            data = b"\r" + data
        self._cr = not final and data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        return normalize_line_endings(data)


def dot_stuff(body: bytes) -> bytes:
    """What a client sends after DATA's 354 for `body`: line endings made CRLF, a dot added
    before every line that starts with one, a final CRLF if missing, then "." CRLF."""
    data = normalize_line_endings(body)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
