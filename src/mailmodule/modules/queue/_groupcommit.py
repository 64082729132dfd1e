"""Group commit: one thread publishes the staged messages of many sessions at once.

Each `commit` hands its staged message to the thread and waits. The thread takes every
message handed over since its last round, renames each `.meta` into place, fsyncs the
directory once for all of them, and wakes each event loop once for its whole batch: under
load, one fsync and one wake-up serve many messages, where a thread per commit would cost
one of each per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import final

from mailmodule.errors import StorageError
from mailmodule.modules.queue._store import Staged

__all__ = ["GroupCommit"]

_log = logging.getLogger("mailmodule.modules.queue")

_Pending = tuple[Staged, asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_Outcome = tuple["asyncio.Future[None]", Exception | None]


@final
class GroupCommit:
    """Publishes staged messages in batches, on a thread of its own.

    Callers may assume: when `commit` returns, the message is durable and `on_commit`
    was called with its ID (from the thread); when it raises, nothing of the message is
    left. A cancelled `commit` still completes one way or the other, unseen.

    Args:
        on_commit: called on the thread with the ID of each message made durable.
    """

    def __init__(self, on_commit: Callable[[str], None] = lambda message_id: None) -> None:
        self._on_commit = on_commit
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    async def commit(self, staged: Staged) -> None:
        """Make `staged` exist, durably.

        Raises:
            StorageError: the rename or the directory fsync failed.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._closed:
                raise StorageError("the queue is closed")
            self._pending.append((staged, loop, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="queue group commit", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        await asyncio.shield(done)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch:
                    return
            self._publish(batch)

    def _publish(self, batch: list[_Pending]) -> None:
        results: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Exception | None]]
        ]
        results = {}
        published: list[_Pending] = []
        for item in batch:
            staged, loop, done = item
            try:
                staged.publish()
            except OSError as exc:
                staged.abort()
                err = StorageError(f"cannot write queue message {staged.id}: {exc}")
                results.setdefault(loop, []).append((done, err))
            else:
                published.append(item)
        if published:
            stores = {id(staged.store): staged.store for staged, _, _ in published}
            try:
                for store in stores.values():
                    store.dir_sync.sync()
            except OSError as exc:
                for staged, loop, done in published:
                    staged.abort()
                    err = StorageError(f"cannot write queue message {staged.id}: {exc}")
                    results.setdefault(loop, []).append((done, err))
            else:
                for staged, loop, done in published:
                    staged.release()
                    try:
                        self._on_commit(staged.id)
                    except Exception:
                        _log.exception("queue msg %s: hand-over failed", staged.id)
                    results.setdefault(loop, []).append((done, None))
        for loop, outcomes in results.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, outcomes)

    def close(self) -> None:
        """Publish what is pending, then stop the thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()


def _resolve(outcomes: list[_Outcome]) -> None:
    for done, err in outcomes:
        if done.cancelled():
            continue
        if err is None:
            done.set_result(None)
        else:
            done.set_exception(err)
