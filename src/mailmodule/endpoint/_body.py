"""A message as it arrives: its header read from the first bytes, within caps; its body
streamed into a spill buffer. Nothing of the message is ever held whole in memory."""

from __future__ import annotations

import os
from typing import Final, final

from mailmodule.buffer import Buffer, BufferWriter, MemoryBuffer
from mailmodule.errors import HeaderError, SMTPError
from mailmodule.header import Header, read_header

__all__ = ["MessageReader"]

_END_OF_HEADER: Final = b"\r\n\r\n"


@final
class MessageReader:
    """Reads one message from its decoded body pieces (CRLF line endings only, as
    `mailmodule.smtp.DataChunk` gives them).

    The header is gathered until its empty line, up to `max_header_size` bytes and
    `max_header_fields` fields; beyond either cap the rest of the message is dropped as
    it comes and `finish` refuses it. The body after the empty line goes to a
    `BufferWriter` (memory up to `max_memory`, then a temporary file in `directory`).

    Callers may assume: `feed` costs no more than a copy of its piece; memory held is at
    most `max_header_size + max_memory` plus one piece; after `finish` or `abort` no
    temporary file is left but the returned buffer's. Not safe to share between threads.

    Raises:
        SMTPError: from `finish`: 552 5.3.4 when the header is over a cap (the text says
            which), 554 5.6.0 when it is malformed.
        StorageError: from `feed` or `finish`, the spill file cannot be written (the
            reader is aborted then).
    """

    __slots__ = (
        "_conts",
        "_error",
        "_head",
        "_in_body",
        "_lines",
        "_max_fields",
        "_max_header",
        "_writer",
        "size",
    )

    def __init__(
        self,
        *,
        max_header_size: int,
        max_header_fields: int,
        max_memory: int,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._max_header = max_header_size
        self._max_fields = max_header_fields
        self._head = bytearray()
        self._in_body = False
        self._error: SMTPError | None = None
        self._lines = 0  # line ends in the header so far
        self._conts = 0  # of which continue a field (followed by a space or a tab)
        self._writer = BufferWriter(max_memory=max_memory, directory=directory)
        #: Bytes of the message fed so far, header included.
        self.size = 0

    def feed(self, data: bytes) -> None:
        """Add the next piece of the message."""
        self.size += len(data)
        if self._in_body:
            self._writer.write(data)
            return
        if self._error is not None:
            return
        head = self._head
        old = len(head)
        head += data
        # Field starts are line ends not followed by white space: count them as they come,
        # so that a flood of tiny fields is refused early.
        scan = max(0, old - 1)
        self._lines += head.count(b"\n", old)
        self._conts += head.count(b"\n ", scan) + head.count(b"\n\t", scan)
        if head.startswith(b"\r\n"):
            end = 2  # no header at all
        else:
            end = head.find(_END_OF_HEADER, max(0, old - 3))
            end = end + 4 if end >= 0 else -1
        if end < 0:
            if len(head) > self._max_header:
                self._fail(f"Message header too big (limit is {self._max_header} bytes)")
            elif self._lines - self._conts > self._max_fields + 1:
                self._fail(f"Too many header fields (limit is {self._max_fields})")
            return
        if end > self._max_header:
            self._fail(f"Message header too big (limit is {self._max_header} bytes)")
            return
        fields = head.count(b"\n", 0, end) - head.count(b"\n ", 0, end)
        fields -= head.count(b"\n\t", 0, end) + 1
        if fields > self._max_fields:
            self._fail(f"Too many header fields (limit is {self._max_fields})")
            return
        self._in_body = True
        if end < len(head):
            self._writer.write(memoryview(head)[end:])
            del head[end:]

    def _fail(self, text: str) -> None:
        self._error = SMTPError(552, (5, 3, 4), text)
        self._head = bytearray()
        self._writer.abort()

    def finish(self) -> tuple[Header, Buffer]:
        """The header and the body (a `Buffer` the caller owns: `remove()` it)."""
        if self._error is not None:
            raise self._error
        try:
            header, _ = read_header(bytes(self._head))
        except HeaderError as err:
            self._writer.abort()
            raise SMTPError(554, (5, 6, 0), f"Malformed message header: {err.message}") from err
        finally:
            self._head = bytearray()
        if not self._in_body:  # no empty line: all of it was header
            self._writer.abort()
            return header, MemoryBuffer(b"")
        return header, self._writer.finish()

    def abort(self) -> None:
        """Drop the message; idempotent."""
        self._head = bytearray()
        self._writer.abort()
