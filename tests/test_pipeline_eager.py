from __future__ import annotations

import asyncio
import inspect

import pytest

from mailmodule.pipeline._eager import gather


async def immediate(value: int) -> int:
    return value


async def sleepy(value: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return value


async def waits_until_cancelled(cancelled: asyncio.Event) -> int:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return 0


async def bare_yield(value: int) -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return value


async def test_results_come_back_in_order_whether_or_not_they_waited() -> None:
    results = await gather([sleepy(1, 0.02), immediate(2), bare_yield(3), sleepy(4, 0.001)])
    assert results == [1, 2, 3, 4]


async def test_coroutines_that_finish_at_once_need_no_task() -> None:
    before = len(asyncio.all_tasks())
    assert await gather([immediate(1), immediate(2)]) == [1, 2]
    assert len(asyncio.all_tasks()) == before


async def test_waiting_coroutines_run_concurrently() -> None:
    """Each waits for the other to have started: only concurrency lets both finish."""
    events = [asyncio.Event(), asyncio.Event()]

    async def meet(me: int) -> int:
        events[me].set()
        await asyncio.wait_for(events[1 - me].wait(), 5)
        return me

    assert await gather([meet(0), meet(1)]) == [0, 1]


async def test_an_error_cancels_the_others_and_propagates() -> None:
    cancelled = asyncio.Event()

    async def fails() -> int:
        await asyncio.sleep(0.001)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await gather([waits_until_cancelled(cancelled), fails()])
    assert cancelled.is_set()


async def test_an_immediate_error_closes_coroutines_that_never_ran() -> None:
    async def fails_at_once() -> int:
        raise KeyError("x")

    later = immediate(5)
    with pytest.raises(KeyError):
        await gather([fails_at_once(), later])
    assert inspect.getcoroutinestate(later) == inspect.CORO_CLOSED  # no "never awaited"


async def test_cancelling_the_caller_cancels_the_suspended_ones() -> None:
    cancelled = asyncio.Event()
    task = asyncio.create_task(gather([waits_until_cancelled(cancelled), immediate(1)]))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_a_coroutine_sees_the_exception_of_the_future_it_awaited() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    async def awaits() -> str:
        try:
            await fut
        except RuntimeError as exc:
            return f"caught {exc}"
        return "no error"

    loop.call_later(0.001, fut.set_exception, RuntimeError("late"))
    assert await gather([awaits()]) == ["caught late"]
