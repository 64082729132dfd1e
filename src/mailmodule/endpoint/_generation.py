"""The sessions that use what one loading of the configuration built."""

from __future__ import annotations

import asyncio
from typing import final

__all__ = ["Generation"]


@final
class Generation:
    """Counts the sessions that use one generation of module instances (the pipeline, the
    auth and TLS modules of one loading of the configuration), so that a reload closes
    the old instances only once no session uses them.

    Callers may assume: `idle` is set once `retire` was called and every `hold` was
    matched by a `release`; never before `retire`. Cheap, never waits; one event loop
    only (not safe to share between threads).
    """

    __slots__ = ("_retired", "idle", "users")

    def __init__(self) -> None:
        self.users = 0
        self._retired = False
        #: Set when retired and no session uses this generation any more.
        self.idle = asyncio.Event()

    @property
    def retired(self) -> bool:
        """Whether a newer generation took over for new sessions and messages."""
        return self._retired

    def hold(self) -> None:
        """A session starts using this generation."""
        self.users += 1

    def release(self) -> None:
        """A session stops using this generation (ended, or moved to a newer one)."""
        self.users -= 1
        if self._retired and self.users <= 0:
            self.idle.set()

    def retire(self) -> None:
        """No new session or message is to use this generation."""
        self._retired = True
        if self.users <= 0:
            self.idle.set()
