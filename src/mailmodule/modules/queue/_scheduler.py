"""The queue's scheduler: which message is tried when, how many at once, and what an
attempt's outcome does to the message on disk."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
from collections.abc import Iterable
from typing import final

from mailmodule.errors import DataError, HeaderError, MetadataError, StorageError
from mailmodule.interfaces import DeliveryTarget
from mailmodule.metadata import Timestamp
from mailmodule.modules.queue._attempt import attempt, to_smtp_error
from mailmodule.modules.queue._bounce import Bouncer, Outcome
from mailmodule.modules.queue._clock import Clock
from mailmodule.modules.queue._protocol import QueueStorage
from mailmodule.modules.queue._retry import RetryPolicy

__all__ = ["Scheduler"]

_log = logging.getLogger("mailmodule.modules.queue")
#: Slack when deciding whether a message read from disk is due (another process may have
#: tried it since it was scheduled here).
_DUE_SLACK = 1.0


@final
class Scheduler:
    """Delivers the messages of a `QueueStorage` to a target, retrying as `policy` says.

    Runs on one event loop: `start()` there, then `schedule()` and `flush()` from it (the
    module hands messages over from other threads with `call_soon_threadsafe`), and
    `aclose()` at the end. At most `max_parallelism` messages are tried at once.

    After an attempt, as maddy's queue: delivered recipients are done; a permanent error,
    or a temporary one at the last try, fails a recipient for good; the others are tried
    again after `policy.delay(tries)`, their errors and counts kept in the `.meta`. The
    message is removed when no recipient is left. Reports go through `bouncer`: failures
    (and with NOTIFY=SUCCESS deliveries, with NOTIFY=DELAY the first delay) to the
    sender, as NOTIFY asks; the report is sent before the `.meta` is updated, so a crash
    in between sends it again rather than never.

    Args:
        store: where the messages are (a directory, a database).
        target: where messages are delivered.
        policy: the retry schedule.
        clock: the time source (tests move it by hand).
        bouncer: sends the reports; None sends none.
        max_parallelism: messages tried at once.
        post_init_delay: seconds after `start()` before messages found on disk are tried
            (maddy's `post_init_delay`: a server killed right after start-up does not
            hammer its peers).
    """

    def __init__(
        self,
        *,
        store: QueueStorage,
        target: DeliveryTarget,
        policy: RetryPolicy,
        clock: Clock,
        bouncer: Bouncer | None = None,
        max_parallelism: int = 16,
        post_init_delay: float = 10.0,
    ) -> None:
        if max_parallelism < 1:
            raise ValueError(f"max_parallelism must be at least 1, got {max_parallelism}")
        self.store = store
        self.target = target
        self.policy = policy
        self.clock = clock
        self.bouncer = bouncer
        self.post_init_delay = post_init_delay
        self._slots = asyncio.Semaphore(max_parallelism)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._due: dict[str, float] = {}
        self._forced: set[str] = set()
        self._running: set[str] = set()
        self._flush_after: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.attempts = 0  # attempts made, for logs and tests

    # Scheduling

    def schedule(self, message_id: str, when: float | None = None) -> None:
        """Try `message_id` at `when` (Unix seconds; now when None), instead of any time
        it was due before."""
        at = self.clock.now() if when is None else when
        self._due[message_id] = at
        heapq.heappush(self._heap, (at, next(self._seq), message_id))
        self._wake.set()
        self._changed.set()

    def flush(self, message_ids: Iterable[str] | None = None) -> int:
        """Try the messages (every scheduled one when None) now, whatever their schedule.

        Returns:
            How many were scheduled anew.
        """
        ids = list(self._due) if message_ids is None else list(message_ids)
        for message_id in ids:
            self._forced.add(message_id)
            self.schedule(message_id)
        return len(ids)

    @property
    def scheduled(self) -> dict[str, float]:
        """A snapshot: each message waiting and when it is due."""
        return dict(self._due)

    # Running

    async def start(self) -> int:
        """Clean up the leftovers in the directory, schedule every message in it, and
        start dispatching.

        Returns:
            The number of messages found.

        Raises:
            StorageError: the directory cannot be read.
        """
        await asyncio.to_thread(self.store.clean)
        found = await asyncio.to_thread(lambda: list(self.store.iter_metas()))
        soonest = self.clock.now() + self.post_init_delay
        for message_id, meta in found:
            if isinstance(meta, MetadataError):
                _log.error(
                    "queue %s: skipping message %s: %s", self.store.location, message_id, meta
                )
                continue
            self.schedule(message_id, max(self.policy.due(meta), soonest))
        if found:
            _log.info("queue %s: loaded %d queued message(s)", self.store.location, len(found))
        self._dispatcher = asyncio.create_task(self._dispatch(), name="queue dispatcher")
        return len(found)

    async def rescan(self) -> int:
        """Schedule the messages in the directory this scheduler does not know: committed
        by another process sharing the directory (a worker of `serve --workers`, the
        queue of the configuration before a reload) after this one loaded it.

        Returns:
            The number of messages newly scheduled.

        Raises:
            StorageError: the directory cannot be read.
        """
        ids = await asyncio.to_thread(self.store.candidates)
        unknown = [i for i in ids if i not in self._due and i not in self._running]
        found = 0
        for message_id in unknown:
            try:
                meta = await asyncio.to_thread(self.store.read_meta, message_id)
            except (MetadataError, StorageError):
                continue  # being written or removed right now, or broken: logged at start
            if message_id not in self._due and message_id not in self._running:
                self.schedule(message_id, self.policy.due(meta))
                found += 1
        return found

    async def idle(self) -> None:
        """Wait until no attempt runs and nothing is due now (for tests and tools)."""
        while self._running or self._tasks or self._due_now():
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self, grace: float = 30.0) -> None:
        """Stop dispatching; let attempts under way finish for `grace` seconds, then
        cancel them (their messages stay queued as they were). Idempotent."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _due_now(self) -> bool:
        now = self.clock.now()
        return any(at <= now for at in self._due.values())

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                message_id, forced = await self._next()
            except BaseException:
                self._slots.release()
                raise
            self._running.add(message_id)
            task = asyncio.create_task(self._run(message_id, forced), name=f"queue {message_id}")
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed.set()

    async def _next(self) -> tuple[str, bool]:
        """The next message due, waiting for one as long as it takes."""
        while True:
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                at, _seq, message_id = heapq.heappop(self._heap)
                if self._due.get(message_id) != at:
                    continue  # rescheduled since
                del self._due[message_id]
                forced = message_id in self._forced
                self._forced.discard(message_id)
                if message_id in self._running:  # its attempt reschedules it
                    if forced:
                        self._flush_after.add(message_id)
                    continue
                return message_id, forced
            self._wake.clear()
            self._changed.set()
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
            if self._heap:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(self._heap[0][0])))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    async def _run(self, message_id: str, forced: bool) -> None:
        try:
            await self._try(message_id, forced)
        except asyncio.CancelledError:
            raise
        except Exception:  # the boundary of one message: the others go on
            _log.exception("queue msg %s: attempt failed unexpectedly", message_id)
            self.schedule(message_id, self.clock.now() + self.policy.initial)
        finally:
            self._running.discard(message_id)
            self._slots.release()
            if message_id in self._flush_after:
                self._flush_after.discard(message_id)
                if message_id in self._due:
                    self.flush([message_id])
            self._changed.set()

    async def _try(self, message_id: str, forced: bool) -> None:
        store = self.store
        try:
            claim = await asyncio.to_thread(store.claim, message_id)
        except (DataError, StorageError) as exc:
            _log.error("queue msg %s: cannot be claimed: %s", message_id, exc)
            return
        if claim is None:
            if await asyncio.to_thread(store.exists, message_id):  # busy in another process
                self.schedule(message_id, self.clock.now() + store.poll_interval)
            return
        try:
            try:
                message = await asyncio.to_thread(claim.read)
            except (MetadataError, HeaderError, StorageError) as exc:
                _log.error("queue msg %s: cannot be read, left as it is: %s", message_id, exc)
                return
            meta = message.meta
            now = self.clock.now()
            due = self.policy.due(meta)
            if not forced and due > now + _DUE_SLACK:  # tried meanwhile by another process
                self.schedule(message_id, due)
                return
            self.attempts += 1
            errors = await attempt(self.target, message, now=now)
            stamp = Timestamp(int(now * 1e9))
            tries = dict(meta.tries_count or {})
            rcpt_errs = dict(meta.rcpt_errs or {})
            retry: list[str] = []
            failed: list[str] = []
            outcomes: list[Outcome] = []
            for rcpt in dict.fromkeys(meta.to or ()):
                err = errors.get(rcpt)
                if err is None:
                    tries.pop(rcpt, None)
                    outcomes.append((rcpt, "delivered", None))
                    _log.info("queue msg %s: delivered to %r", message_id, rcpt)
                    continue
                smtp = to_smtp_error(err)
                rcpt_errs[rcpt] = smtp
                count = tries.get(rcpt, 0) + 1
                if not smtp.is_temporary or self.policy.is_last(count):
                    tries.pop(rcpt, None)
                    failed.append(rcpt)
                    outcomes.append((rcpt, "failed", smtp))
                    _log.warning("queue msg %s: not delivered to %r: %s", message_id, rcpt, smtp)
                    continue
                tries[rcpt] = count
                retry.append(rcpt)
                if count == 1:
                    outcomes.append((rcpt, "delayed", smtp))
                _log.info("queue msg %s: try %d for %r failed: %s", message_id, count, rcpt, smtp)
            meta.to = retry
            meta.tries_count = tries
            meta.rcpt_errs = rcpt_errs
            meta.failed_rcpts = [*(meta.failed_rcpts or ()), *failed]
            meta.temporary_failed_rcpts = list(retry)
            meta.last_attempt = stamp
            if self.bouncer is not None:
                await self.bouncer.report(message, outcomes, now=stamp)
            if not retry:
                await asyncio.to_thread(claim.remove)
                return
            try:
                await asyncio.to_thread(
                    functools.partial(claim.update, meta, due=self.policy.due(meta))
                )
            except StorageError as exc:
                _log.error("queue msg %s: %s", message_id, exc)
            self.schedule(message_id, self.policy.due(meta))
        finally:
            claim.release()
