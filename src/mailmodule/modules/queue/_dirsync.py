"""Group commit of a directory: one fsync makes the renames of many writers durable."""

from __future__ import annotations

import threading
from typing import final

from mailmodule._fsutil import fsync_dir

__all__ = ["DirSync"]


@final
class DirSync:
    """Makes the entries changed in one directory durable, many writers per fsync.

    A writer renames its file, then calls `sync()`; the first caller to find no fsync
    under way runs one for everybody who asked before it began, and callers who arrive
    meanwhile wait for the next. Under load a single fsync covers a whole batch.

    Callers may assume: when `sync()` returns, every change the caller made in the
    directory before calling it is durable; it is safe from any number of threads.
    Raises: `OSError` from the fsync that was to cover the caller (the next caller
    tries again).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._cond = threading.Condition()
        self._asked = 0  # requests so far
        self._done = 0  # requests covered by a finished fsync
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._asked += 1
            mine = self._asked
            while self._done < mine:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                covers = self._asked
                self._cond.release()
                try:
                    fsync_dir(self._path)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._done = max(self._done, covers)
