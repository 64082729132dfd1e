"""Pipeline overhead per message, and concurrent checks per stage."""

from __future__ import annotations

import asyncio
import time

from _bench import compare

from mailmodule import Buffer, CheckResult, Header, MemoryBuffer, MsgMetadata
from mailmodule.pipeline import Destination, Pipeline

BATCH = 200
EMPTY = CheckResult()


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


CHECKS = [Noop(f"check.{i}") for i in range(3)]
MODIFIER = Noop("modify.noop")
TARGET = Noop("target.noop")
PIPELINE = Pipeline(checks=CHECKS, modifiers=[MODIFIER], default=Destination(targets=[TARGET]))
RCPTS = ("a@example.org", "b@example.org")
BODY = MemoryBuffer(b"Hello\r\n")


def header() -> Header:
    return Header([("Subject", "x")])


async def through_pipeline() -> None:
    delivery = await PIPELINE.start(MsgMetadata(id="m"), "s@example.org")
    for rcpt in RCPTS:
        await delivery.add_rcpt(rcpt)
    await delivery.body(header(), BODY)
    await delivery.commit()


async def by_hand() -> None:
    """The same module calls in a straight line: what the pipeline costs beyond them."""
    meta = MsgMetadata(id="m").deep_copy()
    states = [await c.check_state_for_msg(meta) for c in CHECKS]
    for s in states:
        await s.check_connection()
    for s in states:
        await s.check_sender("s@example.org")
    mod = await MODIFIER.mod_state_for_msg(meta)
    sender = await mod.rewrite_sender("s@example.org")
    delivery = await TARGET.start(meta, sender)
    meta.original_rcpts = {}
    for rcpt in RCPTS:
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


loop = asyncio.new_event_loop()


def batch(one: object) -> None:
    async def run() -> None:
        for _ in range(BATCH):
            await one()  # type: ignore[operator]

    loop.run_until_complete(run())


def stage_time(n: int) -> float:
    pipeline = Pipeline(
        checks=[Sleepy(f"check.sleep{i}") for i in range(n)],
        default=Destination(targets=[TARGET]),
    )

    async def run() -> float:
        start = time.perf_counter()
        delivery = await pipeline.start(MsgMetadata(id="m"), "s@example.org")
        await delivery.abort()
        return time.perf_counter() - start

    return min(loop.run_until_complete(run()) for _ in range(5))


if __name__ == "__main__":
    ratio = compare(
        f"pipeline, 3 checks + 1 modifier + 1 target, 2 rcpts (x{BATCH} messages)",
        lambda: batch(through_pipeline),
        lambda: batch(by_hand),
        baseline_name="the same calls by hand",
        number=5,
        goal=">= 0.67x (at most 1.5x the time)",
    )
    ours = (
        min(
            (lambda s: (batch(through_pipeline), time.perf_counter() - s)[1])(time.perf_counter())
            for _ in range(5)
        )
        / BATCH
    )
    hand = (
        min(
            (lambda s: (batch(by_hand), time.perf_counter() - s)[1])(time.perf_counter())
            for _ in range(5)
        )
        / BATCH
    )
    print(f"  overhead per message: {(ours - hand) * 1e6:.1f} us (goal: under 25 us)")
    one, three = stage_time(1), stage_time(3)
    print(
        f"3 checks sleeping 10 ms in one stage: {three / one:.2f}x the time of 1 check "
        f"(goal: about 1x, not 3x)"
    )
    loop.close()
