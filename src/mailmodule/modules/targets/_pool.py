"""Idle SMTP sessions kept per upstream, so that messages reuse a connection.

A session handed back after its message is kept (at most `max_idle` per upstream, for at
most `idle_timeout` seconds); the next message to that upstream takes it and sends RSET
first (with its MAIL, where the upstream pipelines), which starts it clean; one the
upstream closed meanwhile is left for a new one. Sessions are bound to the
event loop that opened them: one from another loop is closed, never used.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import final

import attrs

from mailmodule.modules.targets._client import ClientSettings, SMTPClient
from mailmodule.modules.targets._upstream import Upstream

__all__ = ["ConnectionPool"]


@final
@attrs.frozen
class _Idle:
    client: SMTPClient
    loop: asyncio.AbstractEventLoop
    since: float


@final
class ConnectionPool:
    """Sessions to the upstreams of one target.

    Callers may assume: `acquire` gives a session no one else uses, until `release`.
    Not safe to share between threads (one event loop at a time).
    """

    __slots__ = ("_idle", "_idle_timeout", "_max_idle", "_settings")

    def __init__(self, settings: ClientSettings, *, max_idle: int = 4, idle_timeout: float = 60):
        self._settings = settings
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._idle: dict[Upstream, deque[_Idle]] = {}

    @property
    def settings(self) -> ClientSettings:
        """How the sessions are opened."""
        return self._settings

    async def acquire(self, upstream: Upstream) -> tuple[SMTPClient, bool]:
        """A session with `upstream`, and whether it was used before: an idle one (which
        the caller resets, with `SMTPClient.mail(..., reset=True)`), else a new one.

        Raises:
            SMTPError: from `SMTPClient.connect`.
        """
        idle = self._idle.get(upstream)
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while idle:
            kept = idle.pop()
            if kept.loop is not loop or now - kept.since > self._idle_timeout:
                await self._close(kept)
            elif kept.client.closed_by_peer:
                kept.client.abort()
            else:
                return kept.client, True
        return await SMTPClient.connect(upstream, self._settings), False

    async def release(self, client: SMTPClient) -> None:
        """Hand a session back after its message (committed or aborted): kept if it is
        usable and there is room, closed otherwise."""
        idle = self._idle.setdefault(client.upstream, deque())
        if not client.usable or len(idle) >= self._max_idle:
            await client.aclose()
            return
        idle.append(_Idle(client, asyncio.get_running_loop(), time.monotonic()))

    def close(self) -> None:
        """Close every idle session at once, without QUIT (at shutdown)."""
        for idle in self._idle.values():
            for kept in idle:
                kept.client.abort()
        self._idle.clear()

    async def _close(self, kept: _Idle) -> None:
        if kept.loop is asyncio.get_running_loop():
            await kept.client.aclose()
        else:
            kept.client.abort()
