"""Messages per second through one queue on PostgreSQL (`queue.postgres`), accepted and
delivered by two server processes against one server process doing the same work.

Each server process is long-lived (started once, so start-up is not timed) and has what
a `mailmodule serve` host has of the queue: its own store (connections, lease owner,
lease thread) and its own scheduler, delivering to a target that only counts. A run
hands it messages to accept (`stage` and `commit`, 8 at a time, as concurrent sessions
would) and ends when the table is empty: every message accepted and delivered, by
whichever process claimed it. Bodies (4 KB) go to `storage.blob.fs`. Ours: 2 processes
x 200 messages; the baseline: 1 process x 400. PostgreSQL runs on the same machine with
fsync off (as in the tests), so what is measured is the queue's work, not the disk.

Goal (the issue gives no number): two servers at least 1.3x the rate of one. On a
machine with as many cores as processes; where PostgreSQL and both servers share two
cores with other work, the ratio says how much of the queue's work is serialised.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _bench import compare

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 400
WORKER = textwrap.dedent("""
    import asyncio, collections, sys
    import psycopg
    from mailmodule.buffer import MemoryBuffer
    from mailmodule.config import ConfigMap
    from mailmodule.header import Header
    from mailmodule.metadata import MsgMetadata, QueueMetadata, Timestamp
    from mailmodule.modules.blobstore import FSBlobStore
    from mailmodule.modules.queue import PostgresQueueStore, RetryPolicy, Scheduler, SystemClock

    DSN, BODIES, NAME = sys.argv[1:4]
    BODY = b"A line of a message body, as mail carries it.\\r\\n" * 80
    HEADER = Header([("From", "ann@example.net"), ("To", "joe@example.org"), ("Subject", "x")])

    class Counting:
        delivered = 0
        def name(self): return "target.counting"
        def instance_name(self): return "counting"
        async def start(self, meta, sender): return Delivery()

    class Delivery:
        async def add_rcpt(self, rcpt): pass
        async def body(self, header, body): pass
        async def commit(self): Counting.delivered += 1
        async def abort(self): pass

    async def main():
        blobs = FSBlobStore("storage.blob.fs", "bodies")
        blobs.init(ConfigMap({"root": BODIES}))
        store = PostgresQueueStore("queue.postgres", "q")
        store.init(ConfigMap({"dsn": DSN, "blobs": "&bodies", "poll": "0.1s"},
                             resolver=lambda name: blobs))
        sched = Scheduler(store=store, target=Counting(), policy=RetryPolicy(),
                          clock=SystemClock(), max_parallelism=16, post_init_delay=0)
        await sched.start()
        watch = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
        print("ready", flush=True)
        gate = asyncio.Semaphore(8)
        serial = 0

        async def accept(n):
            async with gate:
                now = Timestamp.now()
                meta = QueueMetadata(msg_meta=MsgMetadata(id=f"{NAME}{n}"), from_="a@x.org",
                                     to=["joe@example.org"], rcpt_errs={},
                                     first_attempt=now, last_attempt=now)
                staged = await asyncio.to_thread(store.stage, meta, HEADER, MemoryBuffer(BODY))
                await asyncio.to_thread(staged.commit)
                sched.schedule(staged.id)

        while line := await asyncio.to_thread(sys.stdin.readline):
            count = int(line)
            before = Counting.delivered
            await asyncio.gather(*(accept(serial + n) for n in range(count)))
            serial += count
            while True:
                await sched.rescan()
                cur = await watch.execute(b"SELECT count(*) FROM mailmodule_queue")
                if (await cur.fetchone())[0] == 0 and not sched.scheduled:
                    break
                await asyncio.sleep(0.02)
            print(Counting.delivered - before, flush=True)
        await sched.aclose()
        await watch.close()
        store.close()

    asyncio.run(main())
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_postgres(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throw-away PostgreSQL on loopback (Debian's binaries), as tests/interop starts one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = shutil.which("initdb") or (found[-1] if found else "")
    if not initdb:
        sys.exit("bench_shared_queue: PostgreSQL's initdb not found (apt-get install postgresql)")
    bindir = Path(os.path.realpath(initdb)).parent
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    data = root / "data"
    data.mkdir(parents=True)
    uid = gid = groups = None
    if owner is not None:
        for path in (root, data):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        uid, gid, groups = owner.pw_uid, owner.pw_gid, []
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust", "--no-sync"],
        check=True, capture_output=True, cwd=root, user=uid, group=gid, extra_groups=groups,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(root), "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
        user=uid, group=gid, extra_groups=groups,
    )  # fmt: skip
    dsn = f"host=127.0.0.1 port={port} user=bench dbname=postgres"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return server, dsn
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Worker:
    """One server process: accepts and delivers when told how many messages to take."""

    def __init__(self, dsn: str, bodies: Path, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, dsn, str(bodies), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().strip()

    def begin(self, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n".encode())
        self.proc.stdin.flush()

    def end(self) -> int:
        return int(self._read())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def run(workers: list[Worker]) -> None:
    for worker in workers:
        worker.begin(TOTAL // len(workers))
    delivered = sum(worker.end() for worker in workers)
    assert delivered == TOTAL, f"{delivered} deliveries of {TOTAL} messages"


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mailmodule-bench-pgqueue-"))
    root.chmod(0o711)  # PostgreSQL runs as its own user under root: let it reach pg/
    server, dsn = start_postgres(root / "pg")
    bodies = root / "bodies"
    workers: list[Worker] = []
    try:
        workers = [Worker(dsn, bodies, "a"), Worker(dsn, bodies, "b")]
        compare(
            f"shared queue on PostgreSQL, {TOTAL} messages accepted and delivered per op",
            lambda: run(workers),
            lambda: run(workers[:1]),
            baseline_name="one server process",
            number=1,
            rounds=5,
            goal="two server processes at least 1.3x the rate of one",
            target=1.3,
        )
        print(f"(ratio above: two processes against one; {os.cpu_count()} CPUs here)")
    finally:
        for worker in workers:
            worker.close()
        server.terminate()
        server.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
