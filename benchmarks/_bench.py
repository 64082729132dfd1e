"""A tiny harness: time ours and a baseline interleaved in one run, print the ratio."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def compare(
    title: str,
    ours: Callable[[], object],
    baseline: Callable[[], object],
    *,
    baseline_name: str,
    number: int,
    rounds: int = 15,
    goal: str,
    target: float | None = None,
) -> float:
    """Run `ours` and `baseline` `number` times per round, alternating, `rounds` rounds.

    Prints and returns speed-up = baseline time / our time (medians over the rounds): above 1
    means ours is faster. With a `target` speed-up, the line ends in MET or NOT MET.
    """
    ours_times: list[float] = []
    base_times: list[float] = []
    ours()
    baseline()  # warm up both
    for i in range(rounds):
        order = [(ours, ours_times), (baseline, base_times)]
        if i % 2:
            order.reverse()
        for func, sink in order:
            start = time.perf_counter()
            for _ in range(number):
                func()
            sink.append((time.perf_counter() - start) / number)
    ours_t = statistics.median(ours_times)
    base_t = statistics.median(base_times)
    ratio = base_t / ours_t
    print(
        f"{title}: {ratio:.2f}x the speed of {baseline_name} "
        f"(ours {ours_t * 1e6:.1f} us, baseline {base_t * 1e6:.1f} us per op; goal: {goal})"
        + ("" if target is None else " MET" if ratio >= target else " NOT MET")
    )
    return ratio
