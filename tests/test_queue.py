"""target.queue: the directory in maddy's layout, the scheduler, retries and outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule.buffer import MemoryBuffer
from mailmodule.errors import DataError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import DeliveryTarget
from mailmodule.metadata import MsgMetadata, QueueMetadata, RcptOptions
from mailmodule.modules.queue import (
    Bouncer,
    QueueStore,
    RetryPolicy,
    Scheduler,
    check_id,
)
from tests.queue_kit import (
    START,
    FakeClock,
    PartialTarget,
    ScriptedTarget,
    files,
    permanent,
    queue_message,
    stage_only,
    temporary,
)

MADDY_META = (
    b'{"MsgMeta":{"ID":"a7f3c2d1","OriginalFrom":"sender@example.org","DontTraceSender":false,'
    b'"Quarantine":false,"OriginalRcpts":null,"SMTPOpts":{"Body":"8BITMIME","Size":0,'
    b'"RequireTLS":false,"UTF8":false,"Return":"","EnvelopeID":"","Auth":null},"Conn":null,'
    b'"TLSRequireOverride":false},"From":"sender@example.org","To":["joe@example.org"],'
    b'"FailedRcpts":null,"TemporaryFailedRcpts":null,"RcptErrs":{},"TriesCount":{},'
    b'"FirstAttempt":"2026-11-24T10:00:00.123456789+03:00",'
    b'"LastAttempt":"2026-11-24T10:00:00.123456789+03:00"}\n'
)


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Run:
    """A scheduler on the test's loop, with its clock and target."""

    def __init__(self, scheduler: Scheduler, clock: FakeClock) -> None:
        self.scheduler = scheduler
        self.clock = clock

    async def after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await asyncio.sleep(0)
        await self.scheduler.idle()


@contextlib.asynccontextmanager
async def running(
    store: QueueStore,
    target: DeliveryTarget,
    clock: FakeClock,
    *,
    policy: RetryPolicy | None = None,
    bouncer: Bouncer | None = None,
    max_parallelism: int = 16,
) -> AsyncIterator[Run]:
    scheduler = Scheduler(
        store=store,
        target=target,
        policy=policy or RetryPolicy(),
        clock=clock,
        bouncer=bouncer,
        max_parallelism=max_parallelism,
        post_init_delay=0,
    )
    await scheduler.start()
    try:
        await scheduler.idle()
        yield Run(scheduler, clock)
    finally:
        await scheduler.aclose()


# The directory


def test_a_committed_message_is_three_files_named_as_maddy_names_them(store: QueueStore) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    assert files(Path(store.location)) == [
        f"{message_id}.body",
        f"{message_id}.header",
        f"{message_id}.meta",
    ]


def test_the_meta_file_reads_back_as_the_queue_metadata_written(store: QueueStore) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    meta = QueueMetadata.read(store.path(message_id, ".meta"))
    assert meta.to == ["joe@example.org"]
    assert meta.msg_meta is not None
    assert meta.msg_meta.id == message_id  # maddy finds the files by this ID
    assert Path(store.path(message_id, ".meta")).read_bytes() == meta.to_json()


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
            st.text(  # no lone surrogates: Header.build cannot encode them (left to header.py)
                st.characters(codec="utf-8", blacklist_characters="\r\n\0"),
                max_size=60,
            ),
        ),
        max_size=5,
    ),
    st.binary(max_size=2000),
)
def test_what_is_staged_and_committed_reads_back_as_it_was(
    tmp_path_factory: pytest.TempPathFactory, fields: list[tuple[str, str]], body: bytes
) -> None:
    store = QueueStore(tmp_path_factory.mktemp("queue"))
    header = Header(fields)
    record = QueueMetadata(msg_meta=MsgMetadata(id="m1"), from_="a@example.net", to=["b@x.org"])
    staged = store.stage(record, header, MemoryBuffer(body))
    staged.commit()
    claim = store.claim(staged.id)
    assert claim is not None
    with claim:
        message = claim.read()
        assert message.header.to_bytes() == header.to_bytes()
        with message.body.open() as reader:
            assert reader.read() == body
        assert message.meta == record


def test_a_taken_id_gets_random_letters_added(store: QueueStore) -> None:
    first = queue_message(store, ["joe@example.org"], meta=MsgMetadata(id="same"))
    second = queue_message(store, ["joe@example.org"], meta=MsgMetadata(id="same"))
    assert first == "same"
    assert second.startswith("same-")


def test_clean_removes_a_body_and_header_written_before_a_crash(store: QueueStore) -> None:
    staged = stage_only(store, "half")
    staged.release()  # the writer dies: its lock goes with it
    Path(store.path("gone", ".meta.new")).write_bytes(b"{")
    assert sorted(store.clean()) == ["gone", "half"]
    assert files(Path(store.location)) == []


def test_clean_leaves_a_message_being_written_alone(store: QueueStore) -> None:
    staged = stage_only(store, "busy")
    assert store.clean() == []
    staged.abort()
    assert files(Path(store.location)) == []


def test_clean_removes_a_meta_whose_body_is_gone(store: QueueStore) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    os.unlink(store.path(message_id, ".body"))
    assert store.clean() == [message_id]
    assert files(Path(store.location)) == []


def test_a_claimed_message_cannot_be_claimed_again(store: QueueStore) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    claim = store.claim(message_id)
    assert claim is not None
    with claim:
        assert store.claim(message_id) is None
    assert store.claim(message_id) is not None


def test_a_lock_held_by_another_process_counts(store: QueueStore) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    holder = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, store.path(message_id, ".body")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        assert store.claim(message_id) is None
        assert store.clean() == []
        proc.kill()  # as by SIGKILL: the lock goes with the process
    assert store.claim(message_id) is not None


@given(st.text(max_size=20), st.sampled_from(["/", "..", ".", "\0", "\n"]), st.text(max_size=20))
def test_an_id_that_could_name_a_path_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(DataError, match="not a queue message ID"):
        check_id(before + bad + after)


@given(st.sampled_from(["-", "_"]), st.text(max_size=20))
def test_an_id_that_could_pass_for_an_option_is_refused(first: str, rest: str) -> None:
    with pytest.raises(DataError, match="not a queue message ID"):
        check_id(first + rest)


def test_an_id_in_maddys_form_is_taken() -> None:
    assert check_id("a7f3c2d1") == "a7f3c2d1"


# Delivering


async def test_a_queued_message_is_delivered_and_removed(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget()
    message_id = queue_message(store, ["joe@example.org", "ann@example.org"])
    async with running(store, target, clock):
        [got] = target.committed
        assert got.rcpts == ["joe@example.org", "ann@example.org"]
        assert got.sender == "ann@example.net"
        assert got.meta.id.startswith(f"{message_id}-")  # maddy's attempt ID
        assert got.data == b"Subject: hello\r\n\r\nHi there.\r\n"
    assert files(Path(store.location)) == []


async def test_a_queue_maddy_wrote_is_delivered_here(store: QueueStore, clock: FakeClock) -> None:
    Path(store.path("a7f3c2d1", ".meta")).write_bytes(MADDY_META)
    Path(store.path("a7f3c2d1", ".header")).write_bytes(b"Subject: from maddy\r\n\r\n")
    Path(store.path("a7f3c2d1", ".body")).write_bytes(b"Body.\r\n")
    target = ScriptedTarget()
    async with running(store, target, clock):
        [got] = target.committed
        assert got.rcpts == ["joe@example.org"]
        assert got.data == b"Subject: from maddy\r\n\r\nBody.\r\n"
    assert files(Path(store.location)) == []


async def test_a_temporary_failure_is_retried_after_15_minutes_then_18(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget(lambda rcpt: temporary())
    message_id = queue_message(store, ["joe@example.org"])
    async with running(store, target, clock) as run:
        assert len(target.tried) == 1
        meta = store.read_meta(message_id)
        assert meta.tries_count == {"joe@example.org": 1}
        assert meta.rcpt_errs == {"joe@example.org": temporary()}
        await run.after(15 * 60 - 1)
        assert len(target.tried) == 1
        await run.after(1)
        assert len(target.tried) == 2
        await run.after(18 * 60 - 1)
        assert len(target.tried) == 2
        await run.after(1)
        assert len(target.tried) == 3
        target.answer = lambda rcpt: None
        await run.after(15 * 60 * 1.2**2)
        assert len(target.committed) == 1
    assert files(Path(store.location)) == []


async def test_a_permanent_failure_is_not_tried_again(store: QueueStore, clock: FakeClock) -> None:
    target = ScriptedTarget(lambda rcpt: permanent())
    queue_message(store, ["joe@example.org"])
    async with running(store, target, clock) as run:
        await run.after(24 * 3600)
        assert target.tried == ["joe@example.org"]
    assert files(Path(store.location)) == []


async def test_a_temporary_failure_at_the_last_try_fails_for_good(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget(lambda rcpt: temporary())
    queue_message(store, ["joe@example.org"])
    policy = RetryPolicy(initial=60, scale=1, max_tries=3)
    async with running(store, target, clock, policy=policy) as run:
        for _ in range(5):
            await run.after(60)
        assert len(target.tried) == 3
    assert files(Path(store.location)) == []


async def test_only_the_recipients_that_failed_temporarily_are_tried_again(
    store: QueueStore, clock: FakeClock
) -> None:
    answers = {
        "ok@example.org": None,
        "later@example.org": temporary(),
        "no@example.org": permanent(),
    }
    target = PartialTarget(lambda rcpt: answers[rcpt])
    message_id = queue_message(store, list(answers))
    async with running(store, target, clock) as run:
        meta = store.read_meta(message_id)
        assert meta.to == ["later@example.org"]
        assert meta.failed_rcpts == ["no@example.org"]
        answers["later@example.org"] = None
        await run.after(15 * 60)
        assert target.tried[3:] == ["later@example.org"]
        assert [r.rcpts for r in target.committed] == [["ok@example.org"], ["later@example.org"]]


async def test_a_failed_body_fails_every_recipient(store: QueueStore, clock: FakeClock) -> None:
    target = ScriptedTarget()
    target.body_error = temporary("Disk full")
    message_id = queue_message(store, ["a@example.org", "b@example.org"])
    async with running(store, target, clock):
        meta = store.read_meta(message_id)
        assert meta.to == ["a@example.org", "b@example.org"]
        assert target.aborted == 1


async def test_an_error_that_is_no_smtp_error_counts_as_temporary(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget(lambda rcpt: RuntimeError("bug"))
    message_id = queue_message(store, ["joe@example.org"])
    async with running(store, target, clock):
        meta = store.read_meta(message_id)
        assert meta.rcpt_errs == {
            "joe@example.org": SMTPError(451, (4, 0, 0), "Internal server error")
        }


async def test_messages_found_at_start_wait_out_the_post_init_delay(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget()
    queue_message(store, ["joe@example.org"])
    scheduler = Scheduler(
        store=store, target=target, policy=RetryPolicy(), clock=clock, post_init_delay=10
    )
    await scheduler.start()
    try:
        await scheduler.idle()
        assert target.committed == []
        clock.advance(10)
        await asyncio.sleep(0)
        await scheduler.idle()
        assert len(target.committed) == 1
    finally:
        await scheduler.aclose()


async def test_flush_tries_a_waiting_message_now(store: QueueStore, clock: FakeClock) -> None:
    target = ScriptedTarget(lambda rcpt: temporary())
    queue_message(store, ["joe@example.org"])
    async with running(store, target, clock) as run:
        target.answer = lambda rcpt: None
        assert run.scheduler.flush() == 1
        await run.after(0)
        assert len(target.committed) == 1


class Gate:
    """A target whose deliveries wait at the body until the test opens the gate."""

    def __init__(self) -> None:
        self.inner = ScriptedTarget()
        self.open = asyncio.Event()
        self.waiting = 0
        self.most = 0
        self.changed = asyncio.Event()

    async def reached(self, count: int) -> None:
        while self.waiting < count:
            self.changed.clear()
            await self.changed.wait()

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> object:
        delivery = await self.inner.start(msg_meta, mail_from)
        gate = self

        class Held:
            async def add_rcpt(self, rcpt: str) -> None:
                await delivery.add_rcpt(rcpt)

            async def body(self, header: Header, body: object) -> None:
                gate.waiting += 1
                gate.most = max(gate.most, gate.waiting)
                gate.changed.set()
                await gate.open.wait()
                gate.waiting -= 1
                await delivery.body(header, body)  # type: ignore[arg-type]

            async def commit(self) -> None:
                await delivery.commit()

            async def abort(self) -> None:
                await delivery.abort()

        return Held()


async def test_no_more_than_max_parallelism_messages_are_tried_at_once(
    store: QueueStore, clock: FakeClock
) -> None:
    for i in range(6):
        queue_message(store, [f"u{i}@example.org"], meta=MsgMetadata(id=f"m{i}"))
    gate = Gate()
    scheduler = Scheduler(
        store=store,
        target=gate,  # type: ignore[arg-type]
        policy=RetryPolicy(),
        clock=clock,
        max_parallelism=2,
        post_init_delay=0,
    )
    await scheduler.start()
    try:
        await gate.reached(2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert gate.waiting == 2
        gate.open.set()
        await scheduler.idle()
        assert gate.most == 2
        assert len(gate.inner.committed) == 6
    finally:
        await scheduler.aclose()


async def test_closing_cancels_an_attempt_past_its_grace_and_keeps_the_message(
    store: QueueStore, clock: FakeClock
) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    gate = Gate()
    scheduler = Scheduler(
        store=store,
        target=gate,  # type: ignore[arg-type]
        policy=RetryPolicy(),
        clock=clock,
        post_init_delay=0,
    )
    await scheduler.start()
    await gate.reached(1)
    await scheduler.aclose(grace=0)
    assert gate.inner.committed == []
    assert gate.inner.aborted == 1
    assert store.ids() == [message_id]
    assert store.read_meta(message_id).tries_count is None  # the attempt left no trace


async def test_the_target_sees_the_dsn_options_under_the_final_address(
    store: QueueStore, clock: FakeClock
) -> None:
    meta = MsgMetadata(id="m1", original_rcpts={"joe@example.org": "team@example.org"})
    meta.rcpt_opts["team@example.org"] = RcptOptions(notify=("FAILURE",))
    target = ScriptedTarget()
    queue_message(store, ["joe@example.org"], meta=meta)
    async with running(store, target, clock):
        [got] = target.committed
        assert got.meta.rcpt_opts["joe@example.org"].notify == ("FAILURE",)


async def test_a_message_arriving_at_start_is_scheduled_at_its_arrival(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget()
    async with running(store, target, clock) as run:
        message_id = queue_message(store, ["joe@example.org"], at=START)
        run.scheduler.schedule(message_id)
        await run.after(0)
        assert len(target.committed) == 1


async def test_rescan_schedules_what_another_process_committed(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget()
    async with running(store, target, clock) as run:
        queue_message(store, ["joe@example.org"], at=START)
        assert await run.scheduler.rescan() == 1
        assert await run.scheduler.rescan() == 0  # known now
        await run.after(0)
        assert len(target.committed) == 1


async def test_a_message_tried_meanwhile_by_another_process_waits_for_its_due_time(
    store: QueueStore, clock: FakeClock
) -> None:
    target = ScriptedTarget(lambda rcpt: temporary())
    message_id = queue_message(store, ["joe@example.org"])
    async with running(store, target, clock) as run:
        assert len(target.tried) == 1
        run.scheduler.schedule(message_id)  # a stale schedule, as another process had
        await run.after(0)
        assert len(target.tried) == 1  # the .meta says: not before 15 minutes
        await run.after(15 * 60)
        assert len(target.tried) == 2
