"""A thread with an event loop of its own, where a queue's scheduler runs.

Modules are initialized and closed synchronously, perhaps before any event loop runs
(`mailmodule serve` builds the server first), yet a queue must deliver what it finds on
disk from the start. So the scheduler gets a loop and a thread of its own, started by
`init` and stopped by `close`; messages committed on other loops are handed over with
`call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import final

from mailmodule.errors import StorageError
from mailmodule.modules.queue._scheduler import Scheduler

__all__ = ["SchedulerThread"]

_log = logging.getLogger("mailmodule.modules.queue")
#: Seconds between looks for the control file.
CONTROL_POLL = 1.0


@final
class SchedulerThread:
    """Runs the scheduler `make()` builds on a loop in a thread of its own.

    Callers may assume: `start` returns once the scheduler has loaded the directory;
    `enqueue` and `flush` are safe from any thread, and do nothing once closed; `close`
    is idempotent and returns when the thread has ended.

    Args:
        make: builds the scheduler, on the thread's loop.
        name: for the thread's name and logs.
        grace: seconds `close` lets attempts under way finish.
    """

    def __init__(self, make: Callable[[], Scheduler], *, name: str, grace: float = 30.0) -> None:
        self._make = make
        self._name = name
        self._grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: Scheduler | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"queue {name}", daemon=True)

    def start(self) -> None:
        """Start the thread and wait until the directory is loaded.

        Raises:
            StorageError: the scheduler could not start (the directory cannot be read).
        """
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise StorageError(f"queue {self._name}: cannot start: {self._failure}")

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            if not self._ready.is_set():
                self._failure = exc
            else:
                _log.exception("queue %s: the scheduler thread failed", self._name)
        finally:
            with self._lock:
                self._loop = None
            self._ready.set()

    async def _run(self) -> None:
        scheduler = self._make()
        stop = asyncio.Event()
        await scheduler.start()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._scheduler = scheduler
            self._stop = stop
        self._ready.set()
        loop = asyncio.get_running_loop()
        rescan_interval = scheduler.store.poll_interval
        next_scan = loop.time() + rescan_interval
        try:
            while not stop.is_set():
                if loop.time() >= next_scan:
                    next_scan = loop.time() + rescan_interval
                    try:
                        await scheduler.rescan()
                    except StorageError as exc:
                        _log.error("queue %s: %s", self._name, exc)
                try:
                    request = await asyncio.to_thread(scheduler.store.take_flush)
                except StorageError as exc:
                    _log.error("queue %s: %s", self._name, exc)
                    request = None
                if request is not None:
                    count = scheduler.flush(None if request.all else request.ids)
                    _log.info(
                        "queue %s: flush asked: %d message(s) to retry now", self._name, count
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONTROL_POLL):
                        await stop.wait()
        finally:
            await scheduler.aclose(self._grace)

    def _call(self, func: Callable[[], object]) -> None:
        with self._lock:
            loop = self._loop
            if loop is None:
                return
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(func)

    def enqueue(self, message_id: str) -> None:
        """Try the message `message_id`, just committed, now."""
        scheduler = self._scheduler
        if scheduler is not None:
            self._call(lambda: scheduler.schedule(message_id))

    def flush(self) -> None:
        """Retry every message now."""
        scheduler = self._scheduler
        if scheduler is not None:
            self._call(scheduler.flush)

    def close(self) -> None:
        """Stop the scheduler (attempts under way get the grace period) and the thread."""
        stop = self._stop
        if stop is not None:
            self._call(stop.set)
        if self._thread.is_alive():
            self._thread.join()
