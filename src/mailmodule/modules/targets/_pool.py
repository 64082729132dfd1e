"""Idle SMTP sessions kept per upstream, so that messages reuse a connection.

A session handed back after its message is kept (at most `max_idle` per upstream, for at
most `idle_timeout` seconds); the next message to that upstream takes it and sends RSET
first (with its MAIL, where the upstream pipelines), which starts it clean; one the
upstream closed meanwhile is left for a new one. Sessions are bound to the
event loop that opened them: one from another loop is closed, never used, and those
still idle when their loop shuts down (`asyncio.run` cancelling its tasks: a queue's
thread stopping) are closed there, while it can still close them.
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

    __slots__ = ("_idle", "_idle_timeout", "_janitors", "_max_idle", "_settings")

    def __init__(self, settings: ClientSettings, *, max_idle: int = 4, idle_timeout: float = 60):
        self._settings = settings
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._idle: dict[Upstream, deque[_Idle]] = {}
        self._janitors: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

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
        client = await self.take(upstream)
        if client is not None:
            return client, True
        return await SMTPClient.connect(upstream, self._settings), False

    async def take(self, upstream: Upstream) -> SMTPClient | None:
        """An idle session with `upstream` (which the caller resets), or None: `acquire`
        without connecting."""
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
                return kept.client
        return None

    async def release(self, client: SMTPClient) -> None:
        """Hand a session back after its message (committed or aborted): kept if it is
        usable and there is room, closed otherwise."""
        idle = self._idle.setdefault(client.upstream, deque())
        if not client.usable or len(idle) >= self._max_idle:
            await client.aclose()
            return
        loop = asyncio.get_running_loop()
        if loop not in self._janitors:
            self._janitors[loop] = loop.create_task(self._janitor(loop))
        idle.append(_Idle(client, loop, time.monotonic()))

    def close(self) -> None:
        """Close every idle session at once, without QUIT (at shutdown)."""
        for idle in self._idle.values():
            for kept in idle:
                kept.client.abort()
        self._idle.clear()

    async def aclose(self) -> None:
        """Close every idle session, with QUIT where it belongs to the running loop."""
        kept = [kept for idle in self._idle.values() for kept in idle]
        self._idle.clear()
        await asyncio.gather(*(self._close(one) for one in kept))
        janitor = self._janitors.get(asyncio.get_running_loop())
        if janitor is not None:
            janitor.cancel()

    async def _janitor(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until cancelled (by `aclose`, or by the shutdown of `loop`), then close
        the sessions of `loop` still idle."""
        try:
            await loop.create_future()
        finally:
            if self._janitors.get(loop) is asyncio.current_task():
                del self._janitors[loop]
            for idle in self._idle.values():
                for kept in [kept for kept in idle if kept.loop is loop]:
                    idle.remove(kept)
                    kept.client.abort()

    async def _close(self, kept: _Idle) -> None:
        if kept.loop is asyncio.get_running_loop():
            await kept.client.aclose()
        else:
            kept.client.abort()
