"""buffer_body of a 10 MiB body against shutil.copyfileobj into a temporary file."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
from collections.abc import AsyncIterator

from _bench import compare

from mailmodule.buffer import buffer_body

BODY = os.urandom(10 << 20)
CHUNK = 1 << 16
DIRECTORY = tempfile.mkdtemp(prefix="mailmodule-bench-")
loop = asyncio.new_event_loop()


async def chunks() -> AsyncIterator[bytes]:
    view = memoryview(BODY)
    for i in range(0, len(BODY), CHUNK):
        yield bytes(view[i : i + CHUNK])


def ours() -> None:
    buf = loop.run_until_complete(buffer_body(chunks(), directory=DIRECTORY))
    buf.remove()


def copyfileobj() -> None:
    with tempfile.NamedTemporaryFile(dir=DIRECTORY, delete=True) as out:
        shutil.copyfileobj(io.BytesIO(BODY), out, CHUNK)
        out.flush()


if __name__ == "__main__":
    try:
        compare(
            "buffer_body, 10 MiB",
            ours,
            copyfileobj,
            baseline_name="shutil.copyfileobj to a temp file",
            number=3,
            goal=">= 0.8x",
            target=0.8,
        )
    finally:
        loop.close()
        shutil.rmtree(DIRECTORY)
