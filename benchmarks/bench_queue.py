"""Messages accepted into target.queue with 20 concurrent sessions, against bare
write + fsync + rename of the same three files by 20 threads.

Ours is the whole acceptance path of a delivery into the queue (`start`, `add_rcpt`,
`body`, `commit`): header and body written and fsynced, the `.meta` encoded, written,
fsynced and renamed, the directory fsynced (shared by concurrent commits). The
scheduler is not running, so no delivery competes with the acceptance being measured.
The baseline writes, fsyncs and renames the same bytes, file by file, with no directory
fsync. Goal: at least 0.8x the baseline's rate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import tempfile

from _bench import compare

from mailmodule.buffer import MemoryBuffer
from mailmodule.header import Header
from mailmodule.metadata import MsgMetadata, QueueMetadata, Timestamp
from mailmodule.modules.queue import QueueStore, QueueTarget

SESSIONS = 20
PER_SESSION = 10
BODY = b"A line of a message body, as mail carries it.\r\n" * 80  # 4 KB
HEADER = Header(
    [
        ("Received", "from client.example.net by mx.example.org; Tue, 1 Dec 2026 10:00:00 +0000"),
        ("From", "ann@example.net"),
        ("To", "joe@example.org"),
        ("Subject", "A message"),
        ("Message-ID", "<m1@example.net>"),
    ]
)
ROOT = tempfile.mkdtemp(prefix="mailmodule-bench-queue-")
_dirs = iter(range(1_000_000))
_ids = iter(range(1 << 31))  # message IDs as maddy's look, without asking the kernel for each

queue = QueueTarget("target.queue", "bench")  # no init: the scheduler does not run
threads = concurrent.futures.ThreadPoolExecutor(SESSIONS)


def fresh_dir() -> str:
    path = os.path.join(ROOT, str(next(_dirs)))
    os.mkdir(path)
    return path


async def session() -> None:
    for _ in range(PER_SESSION):
        meta = MsgMetadata(id=f"{next(_ids):08x}", original_from="ann@example.net")
        delivery = await queue.start(meta, "ann@example.net")
        await delivery.add_rcpt("joe@example.org")
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()


async def sessions() -> None:
    await asyncio.gather(*(session() for _ in range(SESSIONS)))


def ours() -> None:
    queue.store = QueueStore(fresh_dir())
    asyncio.run(sessions())


META = QueueMetadata(
    msg_meta=MsgMetadata(id="0123abcd", original_from="ann@example.net"),
    from_="ann@example.net",
    to=["joe@example.org"],
    rcpt_errs={},
    first_attempt=Timestamp.now(),
    last_attempt=Timestamp.now(),
).to_json()
PARTS = ((".header", HEADER.to_bytes()), (".body", BODY), (".meta", META))


def write_one(directory: str) -> None:
    name = f"{next(_ids):08x}"
    for suffix, data in PARTS:
        path = os.path.join(directory, name + suffix)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(path + ".tmp", path)


def bare_session(directory: str) -> None:
    for _ in range(PER_SESSION):
        write_one(directory)


def bare() -> None:
    directory = fresh_dir()
    list(threads.map(bare_session, [directory] * SESSIONS))


if __name__ == "__main__":
    try:
        ratio = compare(
            f"target.queue accepting {SESSIONS * PER_SESSION} messages from {SESSIONS} sessions",
            ours,
            bare,
            baseline_name="bare write + fsync + rename by 20 threads",
            number=1,
            rounds=15,
            goal="at least 0.8x",
            target=0.8,
        )
        print(f"messages per second relative to the baseline: {ratio:.2f}")
    finally:
        queue.close()
        threads.shutdown()
        shutil.rmtree(ROOT, ignore_errors=True)
