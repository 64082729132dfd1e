"""Pipeline cost against the same module calls made by hand, and concurrent checks per stage.

Every figure times the pipeline and a straight-line coroutine making the same calls
interleaved in one run (alternating which goes first), each sample a batch of messages in
one `run_until_complete`; per-message times are medians over the rounds. Every line with a
goal ends in MET or NOT MET.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import statistics
import time
import types
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import cast

from mailmodule import Buffer, CheckResult, Header, MemoryBuffer, MsgMetadata, address
from mailmodule.pipeline import DeliveryState, Destination, Pipeline
from mailmodule.pipeline._state import AFTER, Step

#: Seconds of pipeline time per sample; the batch size is chosen to fill it.
SAMPLE_S = 0.04
ROUNDS = 21
SENDER = "s@example.org"
EMPTY = CheckResult()
BODY = MemoryBuffer(b"Hello\r\n")
loop = asyncio.new_event_loop()

OneMessage = Callable[[], Awaitable[None]]
Case = tuple[OneMessage, OneMessage]  # (through the pipeline, by hand)


class NoopState:
    async def check_connection(self) -> CheckResult:
        return EMPTY

    async def check_sender(self, mail_from: str) -> CheckResult:
        return EMPTY

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return EMPTY

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return EMPTY

    async def rewrite_sender(self, mail_from: str) -> str:
        return mail_from

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        return [rcpt_to]

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        pass

    def close(self) -> None:
        pass


class NoopDelivery:
    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: Buffer) -> None:
        pass

    async def commit(self) -> None:
        pass

    async def abort(self) -> None:
        pass


class Noop:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._name

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> NoopState:
        return NoopState()

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> NoopState:
        return NoopState()

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> NoopDelivery:
        return NoopDelivery()


class SleepState(NoopState):
    async def check_connection(self) -> CheckResult:
        await asyncio.sleep(0.01)
        return EMPTY


class Sleepy(Noop):
    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> SleepState:
        return SleepState()


MODIFIER = Noop("modify.noop")
TARGET = Noop("target.noop")


def header() -> Header:
    return Header([("Subject", "x")])


def recipients(n: int) -> tuple[str, ...]:
    """Distinct addresses (the pipeline drops repeats), all routed to TARGET by default."""
    return tuple(f"rcpt{i}@example.org" for i in range(n))


def case(n_checks: int, n_rcpts: int, *, lean: bool = False) -> Case:
    """One message through a pipeline of `n_checks` no-op checks, one no-op modifier and
    one no-op target with `n_rcpts` recipients (or through `LeanPath`, with `lean`); and
    the same module calls by hand."""
    checks = [Noop(f"check.{i}") for i in range(n_checks)]
    pipeline: Pipeline | LeanPath = (
        LeanPath(checks)
        if lean
        else Pipeline(checks=checks, modifiers=[MODIFIER], default=Destination(targets=[TARGET]))
    )
    rcpts = recipients(n_rcpts)

    async def through_pipeline() -> None:
        delivery = await pipeline.start(MsgMetadata(id="m"), SENDER)
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.body(header(), BODY)
        await delivery.commit()

    async def by_hand() -> None:
        """The same module calls in a straight line: what the pipeline costs beyond them."""
        meta = MsgMetadata(id="m").deep_copy()  # the pipeline copies the metadata too
        states = [await c.check_state_for_msg(meta) for c in checks]
        for s in states:
            await s.check_connection()
        for s in states:
            await s.check_sender(SENDER)
        mod = await MODIFIER.mod_state_for_msg(meta)
        sender = await mod.rewrite_sender(SENDER)
        delivery = await TARGET.start(meta, sender)
        meta.original_rcpts = {}
        for rcpt in rcpts:
            for s in states:
                await s.check_rcpt(rcpt)
            for final in await mod.rewrite_rcpt(rcpt):
                await delivery.add_rcpt(final)
                meta.original_rcpts[final] = rcpt
        hdr = header()
        for s in states:
            await s.check_body(hdr, BODY)
        await mod.rewrite_body(hdr, BODY)
        await delivery.body(hdr, BODY)
        await delivery.commit()
        for s in states:
            s.close()
        mod.close()

    # Every recipient must reach the target, or the figures compare unequal work.
    async def delivered() -> int:
        delivery = await pipeline.start(MsgMetadata(id="m"), SENDER)
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.abort()
        return len(delivery.meta.original_rcpts or {})

    got = loop.run_until_complete(delivered())
    assert got == n_rcpts, f"{got} of {n_rcpts} recipients reached the target"
    return through_pipeline, by_hand


_DONE = object()
_Stage = tuple[Sequence[object], str, tuple[object, ...], list[object], object, object]


@types.coroutine
def _stepper() -> Generator[object, _Stage, None]:
    """Steps each subject's `method(*args)` to its end inside the shared context it is
    sent with: what is not quiet goes to the list, and so does a step that changed the
    shared context (a pipeline would give that check the context and its siblings a
    fresh one: a test per step that any sketch keeping the rule must make)."""
    task = yield _DONE
    while True:
        subjects, method, args, said, shared, base = task
        for subject in subjects:
            r = yield from getattr(subject, method)(*args)
            if r.__class__ is not CheckResult or not r.quiet:
                said.append(r)
            if shared != base:
                said.append(subject)
        task = yield _DONE


class Floor:
    """What any pipeline keeping the issue's rules must at least do beyond the module calls,
    and no more: the sender's syntax checked, the metadata and the header copied, every
    check stage run by one driver inside one context copied from the caller's (each step
    tested for a change of it), a record per recipient kept and repeats dropped. No state
    machine, routing, result merging or error handling: it handles only quiet checks and
    one modifier and target."""

    def __init__(self, checks: Sequence[Noop]) -> None:
        self.checks = checks

    async def message(self, mail_from: str, rcpts: Sequence[str], hdr: Header) -> None:
        address.for_lookup(mail_from)
        meta = MsgMetadata(id="m").deep_copy()
        base = contextvars.copy_context()
        ctx = base.copy()
        stepper = _stepper()
        next(stepper)
        said: list[object] = []
        states: list[object] = []
        ctx.run(stepper.send, (self.checks, "check_state_for_msg", (meta,), states, ctx, base))
        for method, args in (("check_connection", ()), ("check_sender", (mail_from,))):
            ctx.run(stepper.send, (states, method, args, said, ctx, base))
        mod = await MODIFIER.mod_state_for_msg(meta)
        sender = await mod.rewrite_sender(mail_from)
        delivery = await TARGET.start(meta, sender)
        records: dict[str, list[str]] = {}
        meta.original_rcpts = {}
        for rcpt in rcpts:
            key = address.for_lookup(rcpt)
            if key in records:
                continue
            ctx.run(stepper.send, (states, "check_rcpt", (rcpt,), said, ctx, base))
            (final,) = records[key] = await mod.rewrite_rcpt(rcpt)
            await delivery.add_rcpt(final)
            meta.original_rcpts[final] = rcpt
        hdr = hdr.copy()
        ctx.run(stepper.send, (states, "check_body", (hdr, BODY), said, ctx, base))
        assert not said, "the floor handles only quiet checks"
        await mod.rewrite_body(hdr, BODY)
        await delivery.body(hdr, BODY)
        await delivery.commit()
        for state in cast("list[NoopState]", states):
            state.close()
        mod.close()


_A_ADD, _A_DONE, _A_BODY, _A_OK, _A_COMMIT = (
    AFTER[step] for step in (Step.ADD_RCPT, Step.RCPT_DONE, Step.BODY, Step.BODY_OK, Step.COMMIT)
)


class _LeanRcpt:
    __slots__ = ("addresses", "given", "status")

    def __init__(self, given: str, addresses: tuple[str, ...]) -> None:
        self.given = given
        self.addresses = addresses
        self.status = "accepted"


class LeanPath:
    """The floor as a `DeliveryTarget`, with the bookkeeping a complete pipeline keeps on
    its common path and no more: start, add_rcpt, body and commit are calls of their own,
    each a step of `DeliveryState`'s table; each recipient has a record with its status;
    the target's delivery starts at its first address and keeps the recipients each
    address stands for; the header is looked at for Authentication-Results; commit runs
    eagerly (a pipeline must not let a cancellation cut it short) and closes the states.
    Where a pipeline would leave the common path (a check that says something, waits or
    sets a variable; a modifier that changes an address; a field to remove) this only
    asserts. No routing, result merging, error handling or cancellation."""

    def __init__(self, checks: Sequence[Noop]) -> None:
        self.checks = checks

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> _LeanDelivery:
        address.for_lookup(mail_from)
        delivery = _LeanDelivery(msg_meta.deep_copy())
        await delivery.begin(self.checks, mail_from)
        return delivery


class _LeanDelivery:
    __slots__ = (
        "base",
        "delivery",
        "holders",
        "meta",
        "mods",
        "rcpts",
        "said",
        "send",
        "sender",
        "shared",
        "state",
        "states",
    )

    def __init__(self, meta: MsgMetadata) -> None:
        self.meta = meta
        self.state = DeliveryState.OPEN
        self.rcpts: dict[str, _LeanRcpt] = {}
        self.holders: dict[str, list[_LeanRcpt]] = {}
        self.delivery: NoopDelivery | None = None
        self.base = contextvars.copy_context()
        self.shared = self.base.copy()
        stepper = _stepper()
        next(stepper)
        self.send = stepper.send
        self.said: list[object] = []

    async def begin(self, checks: Sequence[Noop], mail_from: str) -> None:
        shared, base, said = self.shared, self.base, self.said
        made: list[object] = []
        shared.run(self.send, (checks, "check_state_for_msg", (self.meta,), made, shared, base))
        assert len(made) == len(checks) == len({id(s) for s in made}), "a state is not made"
        self.states = made
        shared.run(self.send, (made, "check_connection", (), said, shared, base))
        shared.run(self.send, (made, "check_sender", (mail_from,), said, shared, base))
        assert not said, "the lean path handles only quiet checks"
        self.mods = mods = [await MODIFIER.mod_state_for_msg(self.meta)]
        sender = mail_from
        for mod in mods:
            sender = await mod.rewrite_sender(sender)
        assert type(sender) is str
        self.sender = sender

    async def add_rcpt(self, rcpt_to: str) -> None:
        self.state = _A_ADD[self.state]
        key = address.for_lookup(rcpt_to)
        known = self.rcpts.get(key)
        if known is not None and known.status == "accepted":
            self.state = _A_DONE[self.state]
            return
        one = (rcpt_to,)
        shared, said = self.shared, self.said
        shared.run(self.send, (self.states, "check_rcpt", one, said, shared, self.base))
        assert not said, "the lean path handles only quiet checks"
        mods = self.mods
        assert len(mods) == 1
        new = await mods[0].rewrite_rcpt(rcpt_to)
        assert new == [rcpt_to], "the lean path handles only modifiers keeping addresses"
        rcpt = self.rcpts[key] = _LeanRcpt(rcpt_to, one)
        holders = self.holders.get(rcpt_to)
        if holders is None:
            delivery = self.delivery
            if delivery is None:
                delivery = self.delivery = await TARGET.start(self.meta, self.sender)
            await delivery.add_rcpt(rcpt_to)
            self.holders[rcpt_to] = [rcpt]
        else:
            holders.append(rcpt)
        originals = self.meta.original_rcpts
        if originals is None:
            originals = self.meta.original_rcpts = {}
        originals[rcpt_to] = rcpt_to
        self.state = _A_DONE[self.state]

    async def body(self, header: Header, body: Buffer) -> None:
        state = _A_BODY[self.state]
        assert any(r.status == "accepted" for r in self.rcpts.values())
        self.state = state
        header = header.copy()
        shared, said = self.shared, self.said
        shared.run(self.send, (self.states, "check_body", (header, body), said, shared, self.base))
        assert not said, "the lean path handles only quiet checks"
        assert "Authentication-Results" not in header
        for mod in self.mods:
            await mod.rewrite_body(header, body)
        assert self.delivery is not None
        await self.delivery.body(header, body)
        self.state = _A_OK[self.state]

    async def commit(self) -> None:
        self.state = _A_COMMIT[self.state]
        committing = self._commit()
        try:
            committing.send(None)
        except StopIteration:
            return
        raise AssertionError("the lean path commits only targets that do not wait")

    async def _commit(self) -> None:
        try:
            assert self.delivery is not None
            await self.delivery.commit()
        finally:
            self._close()
        for rcpt in self.rcpts.values():
            if rcpt.status == "accepted":
                rcpt.status = "delivered"

    async def abort(self) -> None:
        if self.delivery is not None:
            await self.delivery.abort()
        self._close()

    def _close(self) -> None:
        for state in cast("list[NoopState]", self.states):
            state.close()
        for mod in self.mods:
            mod.close()


def batch(one: OneMessage, n: int) -> float:
    """Seconds for `n` messages one after another, in one run of the loop."""

    async def run() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await one()
        return time.perf_counter() - start

    return loop.run_until_complete(run())


def batch_size(one: OneMessage) -> int:
    """Messages per sample so that a sample of `one` takes about SAMPLE_S (also warms up)."""
    n = 1
    while (elapsed := batch(one, n)) < SAMPLE_S / 8:
        n *= 2
    return max(1, round(n * SAMPLE_S / elapsed))


def interleaved(ours: OneMessage, base: OneMessage, rounds: int = ROUNDS) -> tuple[float, float]:
    """Median seconds per message of `ours` and `base`, sampled alternately in one run."""
    n = batch_size(ours)
    batch(base, n)  # warm up
    ours_t: list[float] = []
    base_t: list[float] = []
    for i in range(rounds):
        order = [(ours, ours_t), (base, base_t)]
        if i % 2:
            order.reverse()
        for one, sink in order:
            sink.append(batch(one, n) / n)
    return statistics.median(ours_t), statistics.median(base_t)


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def slopes(
    label: str,
    counts: Sequence[int],
    times: dict[int, tuple[float, float]],
    limit_us: float,
    who: str = "ours",
) -> None:
    """Per extra `label` between successive counts, ours and by hand, against the goal."""
    for lo, hi in itertools.pairwise(counts):
        ours = (times[hi][0] - times[lo][0]) / (hi - lo)
        hand = (times[hi][1] - times[lo][1]) / (hi - lo)
        extra = ours - hand
        print(
            f"  each extra {label}, {lo} -> {hi}: {who} {us(ours)}, by hand {us(hand)}, "
            f"{us(extra)} more; goal: at most {limit_us:.0f} us more than by hand "
            f"{verdict(extra <= limit_us * 1e-6)}"
        )


def scaling(
    title: str, label: str, counts: Sequence[int], make: Callable[[int], Case], who: str = "ours"
) -> dict[int, tuple[float, float]]:
    print(title)
    times: dict[int, tuple[float, float]] = {}
    for count in counts:
        ours, base = make(count)
        times[count] = interleaved(ours, base)
        o, b = times[count]
        name = label if count == 1 else f"{label}s"
        print(
            f"  {count:>4} {name}: {who} {us(o)}, by hand {us(b)} per message "
            f"({o / b:.2f}x, {us(o - b)} more)"
        )
    return times


def stage_times(rounds: int = 5) -> tuple[float, float]:
    """Best seconds to start and abort a message with 1 and with 3 checks each sleeping
    10 ms in check_connection, sampled alternately."""

    def sleepy(n: int) -> Pipeline:
        checks = [Sleepy(f"check.sleep{i}") for i in range(n)]
        return Pipeline(checks=checks, default=Destination(targets=[TARGET]))

    async def one(pipeline: Pipeline) -> None:
        delivery = await pipeline.start(MsgMetadata(id="m"), SENDER)
        await delivery.abort()

    def once(pipeline: Pipeline) -> OneMessage:
        return lambda: one(pipeline)

    single, triple = once(sleepy(1)), once(sleepy(3))
    samples: dict[OneMessage, list[float]] = {single: [], triple: []}
    for i in range(rounds):
        order = [single, triple] if i % 2 == 0 else [triple, single]
        for func in order:
            samples[func].append(batch(func, 1))
    return min(samples[single]), min(samples[triple])


def main() -> None:
    ours, base = interleaved(*case(3, 2))
    print("pipeline, 3 no-op checks + 1 modifier + 1 target, 2 recipients:")
    print(
        f"  {ours / base:.2f}x the time of the same calls by hand "
        f"(ours {us(ours)}, by hand {us(base)} per message); "
        f"goal: at most 2.0x (aim 1.5x) {verdict(ours / base <= 2.0)}"
    )
    overhead = ours - base
    print(f"  overhead per message: {us(overhead)}; goal: under 20 us {verdict(overhead < 20e-6)}")
    floor, rcpts = Floor([Noop(f"check.{i}") for i in range(3)]), recipients(2)
    least, base = interleaved(lambda: floor.message(SENDER, rcpts, header()), case(3, 2)[1])
    print(
        f"  floor, a sketch doing only what the issue's rules require at least (see `Floor`): "
        f"{least / base:.2f}x, {us(least - base)} of overhead"
    )
    least, base = interleaved(*case(3, 2, lean=True))
    print(
        f"  lean path, the floor as a delivery with the common path's bookkeeping "
        f"(see `LeanPath`): {least / base:.2f}x, {us(least - base)} of overhead"
    )

    rcpt_counts = (1, 10, 100, 1000)
    by_rcpts = scaling(
        "recipients (3 checks + 1 modifier + 1 target):",
        "recipient",
        rcpt_counts,
        lambda n: case(3, n),
    )
    slopes("recipient", (1, 100, 1000), by_rcpts, 3)

    check_counts = (1, 10, 50)
    by_checks = scaling(
        "checks (1 modifier + 1 target, 2 recipients):",
        "check",
        check_counts,
        lambda n: case(n, 2),
    )
    slopes("check", check_counts, by_checks, 2)

    lean_rcpts = scaling(
        "lean path, recipients (see `LeanPath`):",
        "recipient",
        (1, 100),
        lambda n: case(3, n, lean=True),
    )
    slopes("recipient", (1, 100), lean_rcpts, 3)
    lean_checks = scaling("lean path, checks:", "check", (1, 10), lambda n: case(n, 2, lean=True))
    slopes("check", (1, 10), lean_checks, 2)

    one, three = stage_times()
    print(
        f"3 checks sleeping 10 ms in one stage: {three / one:.2f}x the time of 1 check "
        f"({three * 1e3:.1f} vs {one * 1e3:.1f} ms); "
        f"goal: about 1x (at most 1.5x), not 3x {verdict(three / one <= 1.5)}"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        loop.close()
