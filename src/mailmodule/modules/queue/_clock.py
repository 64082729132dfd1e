"""The clock the queue schedules by: wall time, and a way to wait for an instant."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, final, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where the queue reads the time and waits for a retry to come due.

    Callers may assume: `now()` never goes backwards by more than the system clock does.
    Implementers must: return from `sleep_until` once `now() >= when` (at once when it
    already is); let cancellation through. Tests implement it to move time by hand.
    Raises: nothing of its own.
    """

    def now(self) -> float:
        """Seconds since the Unix epoch (the queue files keep wall-clock instants)."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Wait until `now()` reaches `when`."""
        ...


@final
class SystemClock:
    """`time.time()` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        left = when - time.time()
        if left > 0:
            await asyncio.sleep(left)
