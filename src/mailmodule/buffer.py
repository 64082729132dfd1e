"""Message body buffers: the twin of maddy's `buffer.Buffer`.

A body is read once from the network and then read again by every check and target, so it is
buffered: small bodies in memory (`MemoryBuffer`), large ones in a temporary file
(`FileBuffer`). `buffer_body` picks for you; `BufferWriter` does the same for a body
written as it arrives, piece by piece.

    >>> import asyncio
    >>> buf = asyncio.run(buffer_body(b"Hello\\r\\n"))
    >>> with buf.open() as reader:
    ...     reader.read()
    b'Hello\\r\\n'
    >>> buf.remove()
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import AsyncIterable
from typing import BinaryIO, Protocol, final, runtime_checkable

from mailmodule.errors import SMTPError, StorageError

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "AsyncReader",
    "Buffer",
    "BufferWriter",
    "FileBuffer",
    "MemoryBuffer",
    "buffer_body",
    "read_all",
]

#: Bodies up to this many bytes stay in memory.
DEFAULT_MAX_MEMORY = 1 << 20

_CHUNK = 1 << 18  # what one read asks of the reader


@runtime_checkable
class Buffer(Protocol):
    """A message body that can be read many times.

    Callers may assume: every `open()` returns a fresh, independent reader positioned at the
    start; `len(buf)` is the body length in bytes; the content never changes.
    Implementers must: make `remove()` release the storage and be idempotent; after
    `remove()`, `open()` may fail.
    Raises: `StorageError` from `open()` when the storage is gone.
    """

    def open(self) -> BinaryIO:
        """A new reader over the whole body; close it when done."""
        ...

    def __len__(self) -> int: ...

    def remove(self) -> None:
        """Release the storage (delete the file). Calling it twice is harmless."""
        ...


@final
class MemoryBuffer:
    """A body held in memory."""

    __slots__ = ("_data", "_len")

    def __init__(self, data: bytes | bytearray) -> None:
        self._data: bytes | None = bytes(data)
        self._len = len(self._data)

    def open(self) -> BinaryIO:
        if self._data is None:
            raise StorageError("memory buffer was removed")
        return io.BytesIO(self._data)

    def __len__(self) -> int:
        return self._len

    def remove(self) -> None:
        self._data = None

    def __repr__(self) -> str:
        return f"MemoryBuffer(<{self._len} bytes>)"


@final
class FileBuffer:
    """A body in a file, which `remove()` deletes.

    Args:
        path: the file.
        length: its size when known; read from the file system otherwise.
    """

    __slots__ = ("_len", "path")

    def __init__(self, path: str | os.PathLike[str], length: int | None = None) -> None:
        self.path = os.fspath(path)
        if length is None:
            try:
                length = os.stat(self.path).st_size
            except OSError as exc:
                raise StorageError(f"cannot read body file {self.path!r}: {exc}") from exc
        self._len = length

    def open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")  # the caller owns and closes it
        except OSError as exc:
            raise StorageError(f"cannot open body file {self.path!r}: {exc}") from exc

    def __len__(self) -> int:
        return self._len

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot remove body file {self.path!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileBuffer({self.path!r}, length={self._len})"


@runtime_checkable
class AsyncReader(Protocol):
    """What `buffer_body` reads from: `asyncio.StreamReader` and the like."""

    async def read(self, n: int = -1, /) -> bytes: ...


def read_all(buf: Buffer) -> bytes:
    """The whole body as bytes (for small bodies and tests; prefer `open()` otherwise)."""
    with buf.open() as reader:
        return reader.read()


@final
class BufferWriter:
    """A body written as it arrives: in memory up to `max_memory` bytes, then spilled to a
    temporary file, so that memory per body stays bounded whatever its size.

        >>> with BufferWriter(max_memory=4) as writer:
        ...     writer.write(b"Hello")
        ...     writer.write(b"\\r\\n")
        ...     buf = writer.finish()
        >>> read_all(buf), type(buf).__name__
        (b'Hello\\r\\n', 'FileBuffer')
        >>> buf.remove()

    Callers may assume: `write` never keeps more than `max_memory` bytes in memory (the
    spill file is written from the calling thread: into the page cache, without fsync,
    which returns in microseconds, so calling it on the event loop is fine); after an
    error, `abort()` or leaving the `with` block without `finish()`, nothing is left: no
    open descriptor, no temporary file. Not safe to share between threads.

    Args:
        max_memory: the largest body kept in memory.
        directory: where the temporary file goes (the system's temporary directory by
            default).
        max_size: the largest body accepted; None for no limit.

    Raises:
        SMTPError: from `write`, 552 5.3.4 once the body is larger than `max_size`; the
            writer is aborted then.
        StorageError: from `write`, the temporary file cannot be created or written; the
            writer is aborted then.
        ValueError: `write` or `finish` after `finish` or `abort`.
    """

    __slots__ = (
        "_directory",
        "_done",
        "_fd",
        "_max_memory",
        "_max_size",
        "_path",
        "_pending",
        "_size",
    )

    def __init__(
        self,
        *,
        max_memory: int = DEFAULT_MAX_MEMORY,
        directory: str | os.PathLike[str] | None = None,
        max_size: int | None = None,
    ) -> None:
        self._max_memory = max_memory
        self._directory = directory
        self._max_size = max_size
        self._pending = bytearray()
        self._fd = -1
        self._path = ""
        self._done = False
        self._size = 0

    def __len__(self) -> int:
        """The bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add `data` at the end of the body."""
        if self._done:
            raise ValueError("BufferWriter.write() after finish() or abort()")
        size = self._size + (data.nbytes if isinstance(data, memoryview) else len(data))
        if self._max_size is not None and size > self._max_size:
            self.abort()
            _check_size(size, self._max_size)
        self._size = size
        try:
            if self._fd < 0 and size > self._max_memory:
                self._spill()  # what is held goes to the file first; `data` straight after
            if self._fd >= 0:
                _write_all(self._fd, data, self._path)
                return
            self._pending += data
        except BaseException:
            self.abort()
            raise

    def _spill(self) -> None:
        try:
            self._fd, self._path = tempfile.mkstemp(prefix="mailmodule-body-", dir=self._directory)
        except OSError as exc:
            raise StorageError(f"cannot create a temporary body file: {exc}") from exc
        _write_all(self._fd, self._pending, self._path)
        self._pending = bytearray()

    def finish(self) -> Buffer:
        """The body as a `Buffer` the caller owns (call its `remove()` when done); the
        writer is done."""
        if self._done:
            raise ValueError("BufferWriter.finish() after finish() or abort()")
        self._done = True
        if self._fd < 0:
            buf = MemoryBuffer(self._pending)
            self._pending = bytearray()
            return buf
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            raise StorageError(f"cannot write body file {self._path!r}: {exc}") from exc
        return FileBuffer(self._path, self._size)

    def abort(self) -> None:
        """Drop what was written: close and delete the temporary file. Idempotent; does
        nothing after `finish`."""
        if self._done:
            return
        self._done = True
        self._pending = bytearray()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    def __enter__(self) -> BufferWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def __repr__(self) -> str:
        where = "file" if self._fd >= 0 else "memory"
        return f"BufferWriter(<{self._size} bytes in {where}>)"


async def buffer_body(
    source: AsyncReader | AsyncIterable[bytes] | bytes | bytearray | memoryview,
    *,
    max_memory: int = DEFAULT_MAX_MEMORY,
    directory: str | os.PathLike[str] | None = None,
    max_size: int | None = None,
) -> Buffer:
    """Buffer a body: in memory up to `max_memory` bytes, in a temporary file beyond.

    Args:
        source: an async reader (`read(n)` returning b"" at the end), an async iterable of
            chunks, or the bytes themselves.
        max_memory: the largest body kept in memory.
        directory: where the temporary file goes (the system's temporary directory by
            default).
        max_size: the largest body accepted; beyond it an SMTP 552 error is raised.

    Returns:
        A `Buffer` the caller owns: call `remove()` when done.

    Raises:
        SMTPError: 552 5.3.4 when the body is larger than `max_size`.
        StorageError: the temporary file cannot be written.
        Whatever the source raises, unchanged. On any error or cancellation nothing is left
        behind: no open file, no temporary file.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        _check_size(size, max_size)
        if size <= max_memory:
            return MemoryBuffer(bytes(source))  # a copy only of what stays in memory
    with BufferWriter(max_memory=max_memory, directory=directory, max_size=max_size) as writer:
        if isinstance(source, bytes | bytearray | memoryview):
            writer.write(source)
        else:
            async for chunk in _chunks(source):
                writer.write(chunk)
        return writer.finish()


def _check_size(total: int, max_size: int | None) -> None:
    if max_size is not None and total > max_size:
        raise SMTPError(552, (5, 3, 4), f"Message too big (limit is {max_size} bytes)")


async def _chunks(source: AsyncReader | AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    # A reader is read by size even when it is also iterable (StreamReader iterates lines).
    if isinstance(source, AsyncReader):
        while chunk := await source.read(_CHUNK):
            yield chunk
        return
    async for piece in source:
        if piece:
            yield bytes(piece)


# The spill file is written from the event loop, chunk by chunk as it arrives. A write into
# the page cache returns in microseconds (no fsync: the file is temporary), and handing
# chunks to a thread cost three times the throughput of a plain copy (measured by
# benchmarks/bench_buffer.py): GIL hand-offs and chunks held in fresh memory.
def _write_all(fd: int, chunk: bytes | bytearray | memoryview, path: str) -> None:
    view = memoryview(chunk)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise StorageError(f"cannot write body file {path!r}: {exc}") from exc
