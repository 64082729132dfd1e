"""When a queued message is tried again: maddy's schedule."""

from __future__ import annotations

import math
from typing import final

import attrs

from mailmodule.metadata import QueueMetadata, Timestamp

__all__ = ["RetryPolicy"]


def _positive(inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"RetryPolicy.{attr.name} must be a positive number, got {value!r}")


def _at_least_one(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"RetryPolicy.{attr.name} must be an int of at least 1, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and when a recipient that failed temporarily is tried again.

    Try n+1 comes `initial * scale ** (n - 1)` seconds after try n (maddy's
    `initial_retry_time * retry_time_scale ^ (TriesCount - 1)`): 15 minutes, then 18, 21.6,
    ... with the defaults. After `max_tries` tries a recipient that still fails temporarily
    has failed for good.
    """

    initial: float = attrs.field(default=15 * 60.0, validator=_positive)
    scale: float = attrs.field(default=1.2, validator=_positive)
    max_tries: int = attrs.field(default=20, validator=_at_least_one)

    def delay(self, tries: int) -> float:
        """Seconds from try number `tries` (1 for the first) to the next one."""
        try:
            return self.initial * self.scale ** max(tries - 1, 0)
        except OverflowError:
            return math.inf

    def is_last(self, tries: int) -> bool:
        """Whether try number `tries` (1 for the first) was the last one allowed."""
        return tries >= self.max_tries

    def due(self, meta: QueueMetadata) -> float:
        """When the message is next due, in Unix seconds: at once (its last attempt, which
        a new message sets to its arrival) when no recipient was tried yet, else its last
        attempt plus the delay of its least tried recipient."""
        last = _seconds(meta.last_attempt)
        tries = meta.tries_count or {}
        least = min((tries.get(rcpt, 0) for rcpt in meta.to or ()), default=0)
        if least == 0:
            return last
        return last + self.delay(least)


def _seconds(stamp: Timestamp) -> float:
    if stamp == Timestamp.ZERO:
        return 0.0
    return stamp.unix_ns / 1e9
