from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmodule import SMTPError, StorageError
from mailmodule.buffer import Buffer, FileBuffer, MemoryBuffer, buffer_body, read_all


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def leftovers(directory: Path) -> list[str]:
    return os.listdir(directory)


def stream_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class FailingReader:
    """Gives `good` bytes, then fails: a client that drops the connection mid-body."""

    def __init__(self, good: int) -> None:
        self.left = good

    async def read(self, n: int = -1, /) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        chunk = b"x" * min(n, self.left)
        self.left -= len(chunk)
        return chunk


class SlowReader:
    """Gives chunks forever, slowly, so that a test can cancel mid-body."""

    async def read(self, n: int = -1, /) -> bytes:
        await asyncio.sleep(0)
        return b"y" * n


async def test_small_bodies_stay_in_memory(tmp_path: Path) -> None:
    buf = await buffer_body(stream_of(b"hello"), max_memory=10, directory=tmp_path)
    assert isinstance(buf, MemoryBuffer)
    assert read_all(buf) == b"hello"
    assert leftovers(tmp_path) == []


async def test_large_bodies_spill_to_a_file_in_the_directory(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    buf = await buffer_body(stream_of(data), max_memory=1 << 20, directory=tmp_path)
    assert isinstance(buf, FileBuffer)
    assert len(buf) == len(data)
    assert Path(buf.path).parent == tmp_path
    assert read_all(buf) == data
    buf.remove()
    assert leftovers(tmp_path) == []


async def test_every_open_gives_an_independent_reader(tmp_path: Path) -> None:
    for buf in (
        await buffer_body(b"abcdef", max_memory=100),
        await buffer_body(b"abcdef", max_memory=1, directory=tmp_path),
    ):
        with buf.open() as one, buf.open() as two:
            assert one.read(3) == b"abc"
            assert two.read() == b"abcdef"
            assert one.read() == b"def"
        buf.remove()


async def test_remove_is_idempotent_and_open_after_it_fails(tmp_path: Path) -> None:
    for buf in (MemoryBuffer(b"x"), await buffer_body(b"xy", max_memory=1, directory=tmp_path)):
        buf.remove()
        buf.remove()
        with pytest.raises(StorageError):
            buf.open()


async def test_async_iterables_of_chunks_are_accepted(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"cd"):
            yield part

    assert read_all(await buffer_body(chunks())) == b"abcd"


async def test_a_body_over_max_size_gets_552(tmp_path: Path) -> None:
    with pytest.raises(SMTPError) as info:
        await buffer_body(stream_of(b"z" * 5000), max_size=4096, directory=tmp_path)
    assert (info.value.code, info.value.enhanced_code) == (552, (5, 3, 4))
    with pytest.raises(SMTPError):
        await buffer_body(stream_of(b"z" * 5000), max_size=4096, max_memory=10, directory=tmp_path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("good", [0, 100, 3 << 20, 5 << 20])
async def test_a_reader_failing_midway_leaks_no_descriptor_and_no_file(
    tmp_path: Path, good: int
) -> None:
    before = open_fds()
    with pytest.raises(ConnectionResetError):
        await buffer_body(FailingReader(good), max_memory=1 << 20, directory=tmp_path)
    assert open_fds() == before
    assert leftovers(tmp_path) == []


async def test_cancellation_midway_leaks_no_descriptor_and_no_file(tmp_path: Path) -> None:
    before = open_fds()
    for delay in (0.0, 0.001, 0.005, 0.02):
        task = asyncio.create_task(
            buffer_body(SlowReader(), max_memory=1 << 16, directory=tmp_path)
        )
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert open_fds() == before
    assert leftovers(tmp_path) == []


def test_file_buffer_of_a_missing_file_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read body file"):
        FileBuffer(tmp_path / "missing")


def test_buffers_satisfy_the_buffer_protocol(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_bytes(b"abc")
    assert isinstance(MemoryBuffer(b""), Buffer)
    assert isinstance(FileBuffer(path), Buffer)
    assert len(FileBuffer(path)) == 3


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(
    size=st.one_of(st.integers(0, 300), st.integers(700, 1300)),
    chunk=st.integers(1, 512),
    seed=st.binary(min_size=1, max_size=16),
)
def test_buffer_returns_exactly_its_bytes_on_both_sides_of_the_threshold(
    tmp_path: Path, size: int, chunk: int, seed: bytes
) -> None:
    data = (seed * (size // len(seed) + 1))[:size]

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    async def run() -> None:
        buf = await buffer_body(pieces(), max_memory=1000, directory=tmp_path)
        assert isinstance(buf, MemoryBuffer if size <= 1000 else FileBuffer)
        assert len(buf) == size
        assert read_all(buf) == data
        buf.remove()

    asyncio.run(run())
    assert leftovers(tmp_path) == []


# BufferWriter: a body written as it arrives.


def test_a_writer_keeps_a_small_body_in_memory() -> None:
    from mailmodule.buffer import BufferWriter

    with BufferWriter(max_memory=10) as writer:
        writer.write(b"Hello")
        writer.write(b"\r\n")
        buf = writer.finish()
    assert isinstance(buf, MemoryBuffer)
    assert read_all(buf) == b"Hello\r\n"


def test_a_writer_spills_past_max_memory_and_holds_no_more(tmp_path: Path) -> None:
    from mailmodule.buffer import BufferWriter

    writer = BufferWriter(max_memory=8, directory=tmp_path)
    for _ in range(100):
        writer.write(b"0123456789")
    assert len(leftovers(tmp_path)) == 1
    buf = writer.finish()
    assert isinstance(buf, FileBuffer)
    assert len(buf) == 1000
    assert read_all(buf) == b"0123456789" * 100
    buf.remove()
    assert leftovers(tmp_path) == []


def test_a_writer_over_max_size_gets_552_and_leaves_nothing(tmp_path: Path) -> None:
    from mailmodule.buffer import BufferWriter

    fds = open_fds()
    writer = BufferWriter(max_memory=4, directory=tmp_path, max_size=10)
    writer.write(b"12345678")
    with pytest.raises(SMTPError) as info:
        writer.write(b"123")
    assert (info.value.code, info.value.enhanced_code) == (552, (5, 3, 4))
    assert leftovers(tmp_path) == []
    assert open_fds() == fds
    with pytest.raises(ValueError, match="after finish"):
        writer.write(b"x")


def test_leaving_a_writer_without_finish_removes_its_file(tmp_path: Path) -> None:
    from mailmodule.buffer import BufferWriter

    def write_then_fail() -> None:
        with BufferWriter(max_memory=1, directory=tmp_path) as w:
            w.write(b"spilled")
            raise ConnectionResetError

    fds = open_fds()
    with pytest.raises(ConnectionResetError):
        write_then_fail()
    assert leftovers(tmp_path) == []
    assert open_fds() == fds


def test_a_writer_that_cannot_create_its_file_raises_storage_error(tmp_path: Path) -> None:
    from mailmodule.buffer import BufferWriter

    writer = BufferWriter(max_memory=1, directory=tmp_path / "missing")
    with pytest.raises(StorageError):
        writer.write(b"spill")
    writer.abort()  # idempotent


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(0, 100))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_writer_returns_exactly_what_was_written(
    tmp_path: Path, pieces: list[bytes], max_memory: int
) -> None:
    from mailmodule.buffer import BufferWriter

    with BufferWriter(max_memory=max_memory, directory=tmp_path) as writer:
        for piece in pieces:
            writer.write(piece)
        buf = writer.finish()
    assert read_all(buf) == b"".join(pieces)
    assert len(buf) == len(b"".join(pieces))
    buf.remove()
    assert leftovers(tmp_path) == []


async def test_a_large_memoryview_is_spilled_without_a_copy_in_memory(tmp_path: Path) -> None:
    body = bytearray(b"x" * (8 << 20))
    tracemalloc.start()
    try:
        buf = await buffer_body(memoryview(body), max_memory=1 << 20, directory=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert isinstance(buf, FileBuffer)
        assert peak < 2 << 20  # the 8 MiB body was never copied whole
        assert read_all(buf) == body
    finally:
        buf.remove()
