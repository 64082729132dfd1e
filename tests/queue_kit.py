"""A clock moved by hand, targets that fail on purpose, and messages to queue."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from pathlib import Path

from mailmodule.buffer import Buffer, MemoryBuffer, read_all
from mailmodule.errors import SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, StatusCollector
from mailmodule.metadata import MsgMetadata, QueueMetadata, Timestamp
from mailmodule.modules.queue import QueueStore
from mailmodule.modules.queue._store import Staged

START = 1_800_000_000.0


class FakeClock:
    """A `Clock` whose time moves only when `advance` is called."""

    def __init__(self, now: float = START) -> None:
        self._now = now
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (when, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)


class Recorded:
    """One message a `ScriptedTarget` committed."""

    def __init__(self, meta: MsgMetadata, sender: str, rcpts: list[str], data: bytes) -> None:
        self.meta = meta
        self.sender = sender
        self.rcpts = rcpts
        self.data = data


class ScriptedTarget:
    """A target whose answer for each recipient is decided by `answer(rcpt)`: None to take
    it, an exception to refuse it at `add_rcpt`. `body_error` fails every body."""

    def __init__(self, answer: Callable[[str], Exception | None] = lambda rcpt: None) -> None:
        self.answer = answer
        self.body_error: Exception | None = None
        self.committed: list[Recorded] = []
        self.tried: list[str] = []
        self.aborted = 0

    def name(self) -> str:
        return "target.scripted"

    def instance_name(self) -> str:
        return "scripted"

    def init(self, cfg: object) -> None:
        return None

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _ScriptedDelivery(self, msg_meta.deep_copy(), mail_from)


class _ScriptedDelivery:
    def __init__(self, target: ScriptedTarget, meta: MsgMetadata, sender: str) -> None:
        self.t = target
        self.meta = meta
        self.sender = sender
        self.rcpts: list[str] = []
        self.data = b""

    async def add_rcpt(self, rcpt_to: str) -> None:
        self.t.tried.append(rcpt_to)
        err = self.t.answer(rcpt_to)
        if err is not None:
            raise err
        self.rcpts.append(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        if self.t.body_error is not None:
            raise self.t.body_error
        self.data = header.to_bytes() + read_all(body)

    async def commit(self) -> None:
        self.t.committed.append(Recorded(self.meta, self.sender, self.rcpts, self.data))

    async def abort(self) -> None:
        self.t.aborted += 1


class PartialTarget(ScriptedTarget):
    """A `ScriptedTarget` whose deliveries are `PartialDelivery`s: `answer` is asked at
    the body instead, per recipient."""

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _PartialDelivery(self, msg_meta.deep_copy(), mail_from)


class _PartialDelivery(_ScriptedDelivery):
    async def add_rcpt(self, rcpt_to: str) -> None:
        self.t.tried.append(rcpt_to)
        self.rcpts.append(rcpt_to)

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        self.data = header.to_bytes() + read_all(body)
        taken = []
        for rcpt in self.rcpts:
            err = self.t.answer(rcpt)
            c.set_status(rcpt, err)
            if err is None:
                taken.append(rcpt)
        self.rcpts = taken


def temporary(text: str = "Try later") -> SMTPError:
    return SMTPError(451, (4, 2, 0), text)


def permanent(text: str = "No such user") -> SMTPError:
    return SMTPError(550, (5, 1, 1), text)


def queue_message(
    store: QueueStore,
    rcpts: list[str],
    *,
    sender: str = "ann@example.net",
    meta: MsgMetadata | None = None,
    subject: str = "hello",
    body: bytes = b"Hi there.\r\n",
    at: float = START,
) -> str:
    """Write a message into the queue directory as the queue's own delivery does."""
    stamp = Timestamp(int(at * 1e9))
    record = QueueMetadata(
        msg_meta=meta or MsgMetadata(id="m1", original_from=sender),
        from_=sender,
        to=rcpts,
        rcpt_errs={},
        first_attempt=stamp,
        last_attempt=stamp,
    )
    staged = store.stage(record, Header([("Subject", subject)]), MemoryBuffer(body))
    staged.commit()
    return staged.id


def stage_only(store: QueueStore, message_id: str) -> Staged:
    """A message written up to its `.meta.new`, not committed."""
    record = QueueMetadata(msg_meta=MsgMetadata(id=message_id), to=["joe@example.org"])
    return store.stage(record, Header([("Subject", "x")]), MemoryBuffer(b"x"))


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def header_and_body(data: bytes) -> tuple[bytes, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


__all__ = [
    "START",
    "FakeClock",
    "PartialTarget",
    "Recorded",
    "ScriptedTarget",
    "files",
    "header_and_body",
    "permanent",
    "queue_message",
    "stage_only",
    "temporary",
]
