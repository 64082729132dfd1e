"""Run coroutines concurrently without paying for a task when they finish at once.

Most checks and modifiers answer without ever waiting (a table in memory, a header test).
Wrapping each in an asyncio Task would cost an event-loop round trip per stage. `gather`
steps each coroutine eagerly, as Python 3.12's eager tasks do; only those that actually
suspend go on in tasks, so a stage costs its slowest member, not the sum.

Each coroutine may be given a `contextvars.Context` of its own: its every step, the eager
first one included, then runs in that context, as it would in a task of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import TypeVar, cast

__all__ = ["Resumable", "begin_to_completion", "drive", "gather", "in_task", "to_completion"]

_T = TypeVar("_T")
#: What `drive` goes on with: a coroutine, or a generator-based one.
Resumable = Coroutine[object, None, _T] | Generator[object, None, _T]


async def gather(
    coros: Sequence[Coroutine[object, None, _T]],
    contexts: Sequence[contextvars.Context] | None = None,
) -> list[_T]:
    """Run `coros` concurrently and return their results in order.

    Each coroutine runs synchronously until it first suspends (in `contexts[i]` when
    given); the suspended ones go on in tasks, awaited together. If one raises, the others
    are cancelled (or closed, if they never ran) and the error propagates; cancelling the
    caller cancels them all.
    """
    results: list[object] = [None] * len(coros)
    suspended: list[tuple[int, Coroutine[object, None, _T], object]] = []
    try:
        for i, coro in enumerate(coros):
            try:
                yielded = coro.send(None) if contexts is None else contexts[i].run(coro.send, None)
            except StopIteration as done:
                results[i] = done.value
            else:
                suspended.append((i, coro, yielded))
    except BaseException:
        for coro in coros:  # a no-op for finished ones; unstarted ones will not warn
            coro.close()
        raise
    if suspended:
        tasks = [
            in_task(coro, y, None if contexts is None else contexts[i]) for i, coro, y in suspended
        ]
        try:
            finished = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for (i, _, _), value in zip(suspended, finished, strict=True):
            results[i] = value
    return cast("list[_T]", results)


async def drive(coro: Resumable[_T], yielded: object) -> _T:
    """Go on running a coroutine (or a generator-based one) that suspended on `yielded`,
    as a Task would.

    For coroutines stepped eagerly with `coro.send(None)`: wrap this in a task.
    """
    while True:
        step: Callable[[], object]
        try:
            if isinstance(yielded, asyncio.Future):
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])  # the coroutine itself sees its outcome
            elif yielded is None:  # a bare yield, as in asyncio.sleep(0)
                await asyncio.sleep(0)
            else:
                raise RuntimeError(f"coroutine yielded {yielded!r}, not an asyncio future")
            step = _sender(coro)
        except asyncio.CancelledError as exc:
            if isinstance(yielded, asyncio.Future):
                yielded.cancel()
            step = _thrower(coro, exc)
        try:
            yielded = step()
        except StopIteration as done:
            return cast("_T", done.value)


def in_task(
    coro: Coroutine[object, None, _T], yielded: object, context: contextvars.Context | None = None
) -> asyncio.Task[_T]:
    """A task going on with a coroutine stepped eagerly, in `context` when given."""
    return asyncio.get_running_loop().create_task(drive(coro, yielded), context=context)


async def to_completion(coro: Coroutine[object, None, _T]) -> _T:
    """Run `coro` to its end even if the caller is cancelled meanwhile, then let the
    cancellation through: a half-committed or half-aborted message is worse than a late
    cancellation. Callers bound the work (ABORT_TIMEOUT).

    The coroutine runs eagerly: if it never waits, it costs no task.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        return cast("_T", done.value)
    return await _shielded(coro, yielded)


def begin_to_completion(
    coro: Coroutine[object, None, None],
) -> Coroutine[object, None, None] | None:
    """`to_completion` of a coroutine giving None, without an await where it ends at once:
    None when it did, else what to await for the rest."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return _shielded(coro, yielded)


async def _shielded(coro: Coroutine[object, None, _T], yielded: object) -> _T:
    """The rest of `to_completion` once `coro` first waited on `yielded`."""
    task = in_task(coro, yielded)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    result = task.result()
    if cancelled:
        raise asyncio.CancelledError
    return result


def _sender(coro: Resumable[_T]) -> Callable[[], object]:
    return lambda: coro.send(None)


def _thrower(coro: Resumable[_T], exc: BaseException) -> Callable[[], object]:
    return lambda: coro.throw(exc)
