"""Limits an endpoint keeps: sessions in all and per client IP, AUTH failures per session."""

from __future__ import annotations

from typing import final

__all__ = ["AuthFailures", "SessionCount"]


@final
class SessionCount:
    """Open sessions of one endpoint, in all and per client IP (None: a Unix socket,
    counted in all only).

    Callers may assume: `admit` and `release` are cheap and never wait; an admitted
    session is counted until its `release`. Not safe to share between threads (one event
    loop).
    """

    __slots__ = ("_per_ip", "max_per_ip", "max_total", "total")

    def __init__(self, *, max_total: int | None, max_per_ip: int | None) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str | None) -> bool:
        """Count a new session from `ip`; False (nothing counted) when over a limit."""
        if self.max_total is not None and self.total >= self.max_total:
            return False
        if ip is not None:
            count = self._per_ip.get(ip, 0)
            if self.max_per_ip is not None and count >= self.max_per_ip:
                return False
            self._per_ip[ip] = count + 1
        self.total += 1
        return True

    def release(self, ip: str | None) -> None:
        """Forget a session `admit` counted."""
        self.total -= 1
        if ip is not None:
            count = self._per_ip.pop(ip, 1) - 1
            if count > 0:
                self._per_ip[ip] = count

    def of(self, ip: str) -> int:
        """The sessions open from `ip`."""
        return self._per_ip.get(ip, 0)


@final
class AuthFailures:
    """The AUTH failures of one session, and how long to wait before answering the next.

    The n-th failure waits `delay * 2 ** (n - 1)` seconds (0.5 s, 1 s, 2 s by default);
    once `limit` failures are reached, the session is to be closed (421 4.7.0).
    """

    __slots__ = ("count", "delay", "limit")

    def __init__(self, *, limit: int, delay: float) -> None:
        self.limit = limit
        self.delay = delay
        self.count = 0

    def failed(self) -> float:
        """Count a failure; the seconds to wait before answering it."""
        self.count += 1
        return self.delay * float(2 ** (self.count - 1))

    @property
    def exhausted(self) -> bool:
        """Whether the session has failed as often as it may."""
        return self.count >= self.limit
