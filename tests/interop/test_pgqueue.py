"""`queue.postgres` on a real PostgreSQL, bodies in real blob stores (a directory, moto's
S3 server): the shared queue of several servers."""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmodule.buffer import Buffer, MemoryBuffer, read_all
from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError, DataError
from mailmodule.header import Header
from mailmodule.interfaces import BlobStore, Delivery
from mailmodule.metadata import MsgMetadata, QueueMetadata, Timestamp
from mailmodule.modules.blobstore import FSBlobStore
from mailmodule.modules.queue import (
    MessageClaim,
    PostgresQueueStore,
    QueueStorage,
    RetryPolicy,
    Scheduler,
    SystemClock,
)
from mailmodule.testing.strategies import queue_metadata
from tests.interop.postgres_kit import Postgres, postgres
from tests.test_blob_s3 import configure, new_bucket, s3_endpoint

__all__ = ["postgres", "s3_endpoint"]

_names = itertools.count()
VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")
ROOT = Path(__file__).resolve().parents[2]


def fs_blobs(root: Path) -> FSBlobStore:
    blobs = FSBlobStore("storage.blob.fs", "bodies")
    blobs.init(ConfigMap({"root": str(root)}, module="storage.blob.fs"))
    return blobs


def pg_store(dsn: str, blobs: BlobStore, **settings: object) -> PostgresQueueStore:
    """A store as one server has it: its own connections, owner and lease thread."""
    store = PostgresQueueStore("queue.postgres", "pgqueue")
    store.init(
        ConfigMap(
            {"dsn": dsn, "blobs": "&bodies", **settings},
            module="queue.postgres",
            resolver=lambda name: blobs,
        )
    )
    return store


@pytest.fixture
def database(postgres: Postgres) -> str:
    return postgres.create_database(f"q{next(_names)}")


@pytest.fixture
def blobs(tmp_path: Path) -> FSBlobStore:
    return fs_blobs(tmp_path / "bodies")


@pytest.fixture
def store(database: str, blobs: FSBlobStore) -> Iterator[PostgresQueueStore]:
    store = pg_store(database, blobs)
    yield store
    store.close()


def record(message_id: str, rcpts: list[str], sender: str = "ann@example.net") -> QueueMetadata:
    now = Timestamp.now()
    return QueueMetadata(
        msg_meta=MsgMetadata(id=message_id, original_from=sender),
        from_=sender,
        to=rcpts,
        rcpt_errs={},
        first_attempt=now,
        last_attempt=now,
    )


def enqueue(store: QueueStorage, message_id: str, body: bytes = b"Hi.\r\n") -> str:
    staged = store.stage(
        record(message_id, ["joe@example.org"]), Header([("Subject", "hi")]), MemoryBuffer(body)
    )
    staged.commit()
    return staged.id


def claimed(store: QueueStorage, message_id: str) -> MessageClaim:
    claim = store.claim(message_id)
    assert claim is not None, f"{message_id} could not be claimed"
    return claim


def blob_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


class CountingTarget:
    """Counts the deliveries of each message (by the Subject the test gave it)."""

    def __init__(self) -> None:
        self.deliveries: collections.Counter[str] = collections.Counter()

    def name(self) -> str:
        return "target.counting"

    def instance_name(self) -> str:
        return "counting"

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _Counted(self)


class _Counted:
    def __init__(self, target: CountingTarget) -> None:
        self.target = target
        self.subject = ""

    async def add_rcpt(self, rcpt_to: str) -> None:
        return None

    async def body(self, header: Header, body: Buffer) -> None:
        self.subject = header.get("Subject") or ""

    async def commit(self) -> None:
        self.target.deliveries[self.subject] += 1

    async def abort(self) -> None:
        return None


def scheduler(store: QueueStorage, target: CountingTarget) -> Scheduler:
    return Scheduler(
        store=store,
        target=target,
        policy=RetryPolicy(initial=1.0),
        clock=SystemClock(),
        max_parallelism=8,
        post_init_delay=0.0,
    )


async def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait until `condition()` holds; fail after `seconds` (a bound, not a measure)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


# Writing and reading


def test_a_committed_message_is_a_row_and_a_blob(
    store: PostgresQueueStore, database: str, tmp_path: Path
) -> None:
    message_id = enqueue(store, "m1", b"Body.\r\n")
    assert store.ids() == [message_id]
    [(key,)] = rows(database, "SELECT body_key FROM mailmodule_queue")
    assert blob_files(tmp_path / "bodies") == [key]
    assert rows(database, "SELECT * FROM mailmodule_queue_staged") == []
    with claimed(store, message_id) as claim:
        message = claim.read()
        assert read_all(message.body) == b"Body.\r\n"
        assert message.header.get("Subject") == "hi"


def test_a_message_is_not_queued_before_its_commit(
    store: PostgresQueueStore, tmp_path: Path
) -> None:
    staged = store.stage(record("m1", ["joe@example.org"]), Header(), MemoryBuffer(b"x"))
    assert len(blob_files(tmp_path / "bodies")) == 1  # the body is durable first
    assert store.ids() == []
    assert store.claim("m1") is None
    staged.abort()
    assert blob_files(tmp_path / "bodies") == []


def test_a_taken_id_gets_random_letters_added(store: PostgresQueueStore) -> None:
    first = enqueue(store, "same")
    second = enqueue(store, "same")
    assert first == "same"
    assert second.startswith("same-")
    written = store.read_meta(second).msg_meta
    assert written is not None
    assert written.id == second


def test_a_write_that_never_committed_is_collected_as_an_orphan(
    database: str, blobs: FSBlobStore, tmp_path: Path
) -> None:
    store = pg_store(database, blobs, orphan_age="1s")
    try:
        store.stage(record("lost", ["joe@example.org"]), Header(), MemoryBuffer(b"x"))
        # the writer dies here: its reservation and body stay behind
        assert store.clean() == []  # too young: it may be a write under way elsewhere
        time.sleep(1.1)
        assert store.clean() == ["lost"]
        assert blob_files(tmp_path / "bodies") == []
        assert rows(database, "SELECT * FROM mailmodule_queue_staged") == []
    finally:
        store.close()


def test_a_commit_after_its_orphan_was_collected_fails_and_leaves_nothing(
    database: str, blobs: FSBlobStore, tmp_path: Path
) -> None:
    store = pg_store(database, blobs, orphan_age="1s")
    try:
        staged = store.stage(record("slow", ["joe@example.org"]), Header(), MemoryBuffer(b"x"))
        time.sleep(1.1)
        store.clean()
        with pytest.raises(Exception, match="reservation was lost"):
            staged.commit()
        assert store.ids() == []
        assert blob_files(tmp_path / "bodies") == []
    finally:
        store.close()


def test_removing_a_message_removes_its_row_then_its_body(
    store: PostgresQueueStore, database: str, tmp_path: Path
) -> None:
    message_id = enqueue(store, "m1")
    with claimed(store, message_id) as claim:
        claim.remove()
    assert store.ids() == []
    assert not store.exists(message_id)
    assert blob_files(tmp_path / "bodies") == []
    assert rows(database, "SELECT * FROM mailmodule_queue_staged") == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(meta=queue_metadata, message_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,40}\Z"))
def test_metadata_round_trips_through_the_table(
    store: PostgresQueueStore, meta: QueueMetadata, message_id: str
) -> None:
    if meta.msg_meta is None:
        meta.msg_meta = MsgMetadata()
    meta.msg_meta.id = message_id
    staged = store.stage(meta, Header([("Subject", "x")]), MemoryBuffer(b"x"))
    staged.commit()
    try:
        assert store.read_meta(staged.id).to_json() == meta.to_json()
        with claimed(store, staged.id) as claim:
            assert claim.read().meta.to_json() == meta.to_json()
    finally:
        with claimed(store, staged.id) as claim:
            claim.remove()


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=st.text(max_size=30).filter(lambda s: not VALID_ID.fullmatch(s)))
def test_an_id_that_cannot_be_one_is_refused_before_any_sql(
    store: PostgresQueueStore, bad: str
) -> None:
    with pytest.raises(DataError):
        store.claim(bad)
    with pytest.raises(DataError):
        store.exists(bad)


def test_a_table_name_that_is_not_an_sql_name_is_refused(database: str, blobs: FSBlobStore) -> None:
    with pytest.raises(ConfigError, match="table"):
        pg_store(database, blobs, table="q; DROP TABLE x")


def test_an_unreachable_database_is_a_config_error_without_the_password(
    blobs: FSBlobStore, postgres: Postgres
) -> None:
    dsn = f"postgresql://joe:hunter2@127.0.0.1:{postgres.port}/nosuchdb"
    with pytest.raises(ConfigError) as info:
        pg_store(dsn, blobs)
    assert "hunter2" not in str(info.value)
    assert info.value.key == "dsn"


# Claims and leases


def test_a_claimed_message_cannot_be_claimed_by_another_server(
    store: PostgresQueueStore, database: str, blobs: FSBlobStore
) -> None:
    other = pg_store(database, blobs)
    try:
        message_id = enqueue(store, "m1")
        claim = store.claim(message_id)
        assert claim is not None
        assert other.claim(message_id) is None
        assert other.exists(message_id)
        claim.release()
        again = other.claim(message_id)
        assert again is not None
        again.release()
    finally:
        other.close()


def test_a_lease_is_renewed_while_its_claim_is_held(database: str, blobs: FSBlobStore) -> None:
    one, two = pg_store(database, blobs, lease="1s"), pg_store(database, blobs, lease="1s")
    try:
        message_id = enqueue(one, "m1")
        with claimed(one, message_id):
            time.sleep(2.5)  # two and a half leases
            assert two.claim(message_id) is None
    finally:
        one.close()
        two.close()


def test_an_update_after_the_lease_was_lost_writes_nothing(
    database: str, blobs: FSBlobStore
) -> None:
    dead, alive = pg_store(database, blobs, lease="1s"), pg_store(database, blobs, lease="1s")
    try:
        message_id = enqueue(dead, "m1")
        claim = dead.claim(message_id)
        assert claim is not None
        dead.close()  # it stops renewing: a server that hangs
        time.sleep(1.2)
        taken = alive.claim(message_id)
        assert taken is not None
        meta = claim.read().meta
        meta.tries_count = {"joe@example.org": 5}
        with pytest.raises(Exception, match="lease was lost"):
            claim.update(meta, due=0.0)
        taken.release()
        assert alive.read_meta(message_id).tries_count is None
    finally:
        alive.close()


def test_the_blob_store_may_be_s3(database: str, s3_endpoint: str) -> None:
    s3 = configure(s3_endpoint, "pgqueue")

    async def make_bucket() -> None:
        await new_bucket(s3)
        await s3.aclose()  # the client of this loop; the queue opens one on its own

    asyncio.run(make_bucket())
    store = pg_store(database, s3)
    try:
        message_id = enqueue(store, "m1", b"Over S3.\r\n")
        with claimed(store, message_id) as claim:
            assert read_all(claim.read().body) == b"Over S3.\r\n"
            claim.remove()
        assert store.ids() == []
    finally:
        store.close()  # closes the blob store's client too, on the loop it was opened on


# Schedulers sharing the queue


def test_two_schedulers_deliver_every_message_once(database: str, blobs: FSBlobStore) -> None:
    """Two servers accept and deliver 300 messages from one queue; none is delivered twice."""
    count = 300

    async def run() -> collections.Counter[str]:
        target = CountingTarget()
        stores = [pg_store(database, blobs, poll="0.2s"), pg_store(database, blobs, poll="0.2s")]
        schedulers = [scheduler(s, target) for s in stores]
        try:
            for sched in schedulers:
                await sched.start()

            async def accept(n: int) -> None:
                store, sched = stores[n % 2], schedulers[n % 2]
                message_id = await asyncio.to_thread(
                    store.stage,
                    record(f"m{n}", ["joe@example.org"]),
                    Header([("Subject", f"m{n}")]),
                    MemoryBuffer(b"x\r\n"),
                )
                await asyncio.to_thread(message_id.commit)
                sched.schedule(message_id.id)

            async def rescan() -> None:
                while True:
                    await asyncio.sleep(0.2)
                    for sched in schedulers:
                        await sched.rescan()

            scanning = asyncio.create_task(rescan())
            await asyncio.gather(*(accept(n) for n in range(count)))
            await wait_for(lambda: sum(target.deliveries.values()) >= count, 60)
            await asyncio.sleep(0.5)  # time for a second delivery, were there one
            scanning.cancel()
            await asyncio.gather(scanning, return_exceptions=True)
            return target.deliveries
        finally:
            for sched in schedulers:
                await sched.aclose()
            for store in stores:
                store.close()

    deliveries = asyncio.run(run())
    assert len(deliveries) == count
    assert set(deliveries.values()) == {1}
    assert rows(database, "SELECT count(*) FROM mailmodule_queue") == [(0,)]


_CLAIMER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from mailmodule.config import ConfigMap
    from tests.interop.test_pgqueue import fs_blobs, pg_store, enqueue
    from pathlib import Path
    store = pg_store({dsn!r}, fs_blobs(Path({bodies!r})), lease="1s")
    action = sys.argv[1]
    if action == "claim":
        held = [store.claim(i) for i in store.ids()]
        print(sum(c is not None for c in held), flush=True)
    else:
        print(enqueue(store, "durable"), flush=True)
    time.sleep(3600)
""")


def killed_after(action: str, dsn: str, bodies: Path) -> str:
    """Run a server-like process that does `action`, prints, and is killed with SIGKILL."""
    script = _CLAIMER.format(root=str(ROOT), dsn=dsn, bodies=str(bodies))
    with subprocess.Popen(
        [sys.executable, "-c", script, action], stdout=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert line, "the process printed nothing"
    return line


def test_a_killed_servers_messages_are_delivered_by_another_after_the_lease(
    database: str, blobs: FSBlobStore, tmp_path: Path
) -> None:
    writer = pg_store(database, blobs)
    for n in range(5):
        enqueue(writer, f"k{n}")
    writer.close()
    assert killed_after("claim", database, tmp_path / "bodies") == "5"

    async def run() -> collections.Counter[str]:
        target = CountingTarget()
        store = pg_store(database, blobs, poll="0.2s")
        sched = scheduler(store, target)
        try:
            await sched.start()
            leased = rows(
                database, "SELECT count(*) FROM mailmodule_queue WHERE lease_owner IS NOT NULL"
            )
            assert leased == [(5,)]  # the dead server's leases hold for a second

            async def rescan() -> None:
                while True:
                    await asyncio.sleep(0.2)
                    await sched.rescan()

            scanning = asyncio.create_task(rescan())
            await wait_for(lambda: sum(target.deliveries.values()) >= 5)
            scanning.cancel()
            await asyncio.gather(scanning, return_exceptions=True)
            return target.deliveries
        finally:
            await sched.aclose()
            store.close()

    assert asyncio.run(run()) == {"hi": 5}


def test_a_message_is_durable_at_commit(database: str, blobs: FSBlobStore, tmp_path: Path) -> None:
    message_id = killed_after("commit", database, tmp_path / "bodies")

    async def run() -> collections.Counter[str]:
        target = CountingTarget()
        store = pg_store(database, blobs)
        sched = scheduler(store, target)
        try:
            assert await sched.start() == 1
            await wait_for(lambda: target.deliveries["hi"] == 1)
            return target.deliveries
        finally:
            await sched.aclose()
            store.close()

    assert message_id == "durable"
    assert asyncio.run(run()) == {"hi": 1}


def test_a_flush_is_taken_by_one_server(
    store: PostgresQueueStore, database: str, blobs: FSBlobStore
) -> None:
    other = pg_store(database, blobs)
    try:
        message_id = enqueue(store, "m1")
        assert store.take_flush() is None
        other.request_flush([message_id])
        request = store.take_flush()
        assert request is not None
        assert request.ids == {message_id}
        assert other.take_flush() is None
    finally:
        other.close()
