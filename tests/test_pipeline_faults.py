"""Fault injection: whatever step fails or is cancelled, no target keeps part of a message."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    Buffer,
    CheckResult,
    Delivery,
    Header,
    MailModuleError,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
)
from mailmodule.pipeline import Destination, Pipeline
from tests.pipeline_kit import DirTarget, MemoryTarget, Named

CHECK_STEPS = ["check_state", "conn", "sender", "rcpt", "check_body"]
MOD_STEPS = ["mod_state", "rewrite_sender", "rewrite_rcpt", "rewrite_body"]
TARGET_STEPS = ["start", "add_rcpt", "body", "commit", "abort"]


@attrs.frozen
class Fault:
    step: str
    target: int  # which target, for target steps
    kind: str  # "error", "smtp" or "cancel"


class Injected(RuntimeError):
    pass


def fire(fault: Fault) -> None:
    if fault.kind == "cancel":
        raise asyncio.CancelledError
    if fault.kind == "smtp":
        raise SMTPError(451, (4, 3, 0), f"injected at {fault.step}")
    raise Injected(f"injected at {fault.step}")


class Plan:
    def __init__(self, faults: list[Fault]) -> None:
        self.faults = faults
        self.fired: list[Fault] = []

    async def hit(self, step: str, target: int = -1) -> None:
        await asyncio.sleep(0)  # a real suspension point, so tasks are involved too
        for fault in self.faults:
            if fault.step == step and fault.target in (target, -1) and fault not in self.fired:
                self.fired.append(fault)
                fire(fault)


class State:
    def __init__(self, plan: Plan, closes: list[int]) -> None:
        self.plan, self.closes, self.index = plan, closes, len(closes)
        closes.append(0)

    async def check_connection(self) -> CheckResult:
        await self.plan.hit("conn")
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        await self.plan.hit("sender")
        return CheckResult()

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        await self.plan.hit("rcpt")
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        await self.plan.hit("check_body")
        return CheckResult()

    async def rewrite_sender(self, mail_from: str) -> str:
        await self.plan.hit("rewrite_sender")
        return mail_from

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        await self.plan.hit("rewrite_rcpt")
        return [rcpt_to]

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        await self.plan.hit("rewrite_body")

    def close(self) -> None:
        self.closes[self.index] += 1


class Module(Named):
    def __init__(self, name: str, plan: Plan, closes: list[int]) -> None:
        super().__init__(name)
        self.plan, self.closes = plan, closes

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> State:
        await self.plan.hit("check_state")
        return State(self.plan, self.closes)

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> State:
        await self.plan.hit("mod_state")
        return State(self.plan, self.closes)


class FaultyDelivery:
    def __init__(self, inner: Delivery, plan: Plan, index: int, outcome: list[str]) -> None:
        self.inner, self.plan, self.index, self.outcome = inner, plan, index, outcome

    async def add_rcpt(self, rcpt_to: str) -> None:
        await self.plan.hit("add_rcpt", self.index)
        await self.inner.add_rcpt(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        await self.plan.hit("body", self.index)
        await self.inner.body(header, body)

    async def commit(self) -> None:
        await self.plan.hit("commit", self.index)
        await self.inner.commit()
        self.outcome[self.index] = "committed"

    async def abort(self) -> None:
        await self.inner.abort()
        self.outcome[self.index] = "aborted"
        await self.plan.hit("abort", self.index)  # the abort happened, then reported an error


class FaultyTarget(Named):
    def __init__(self, inner: MemoryTarget | DirTarget, plan: Plan, index: int) -> None:
        super().__init__(f"target.{index}")
        self.inner, self.plan, self.index = inner, plan, index
        self.outcome: list[str] = ["not started", "not started"]

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        await self.plan.hit("start", self.index)
        delivery = await self.inner.start(msg_meta, mail_from)
        self.outcome[self.index] = "open"
        return FaultyDelivery(delivery, self.plan, self.index, self.outcome)


faults = st.one_of(
    st.builds(
        Fault,
        st.sampled_from(CHECK_STEPS + MOD_STEPS),
        st.just(-1),
        st.sampled_from(["error", "smtp", "cancel"]),
    ),
    st.builds(
        Fault,
        st.sampled_from(TARGET_STEPS),
        st.integers(0, 1),
        st.sampled_from(["error", "smtp", "cancel"]),
    ),
)


async def run_message(pipeline: Pipeline, caller_aborts: bool) -> BaseException | None:
    """Drive one message as an SMTP endpoint would."""
    try:
        delivery = await pipeline.start(MsgMetadata(id="fault"), "a@example.org")
    except (MailModuleError, asyncio.CancelledError) as exc:
        return exc
    accepted = 0
    refused: MailModuleError | None = None
    for rcpt in ("one@example.org", "two@example.org"):
        try:
            await delivery.add_rcpt(rcpt)
            accepted += 1
        except MailModuleError as exc:  # the client hears it for this recipient
            refused = refused or exc
        except asyncio.CancelledError as exc:
            return exc
    try:
        if not accepted or caller_aborts:
            await delivery.abort()
            return refused
        await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"body"))
    except asyncio.CancelledError as exc:
        return exc
    except MailModuleError as exc:
        try:
            await delivery.abort()
        except MailModuleError:
            pass
        return exc
    try:
        await delivery.commit()
    except (MailModuleError, asyncio.CancelledError) as exc:
        return exc
    return refused


@settings(max_examples=150, deadline=None)
@given(
    plan_faults=st.lists(faults, min_size=1, max_size=2, unique=True), caller_aborts=st.booleans()
)
def test_any_fault_leaves_targets_all_committed_or_all_aborted(
    plan_faults: list[Fault], caller_aborts: bool
) -> None:
    plan = Plan(plan_faults)
    closes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        memory, directory = MemoryTarget(), DirTarget(Path(tmp))
        targets = [FaultyTarget(memory, plan, 0), FaultyTarget(directory, plan, 1)]
        outcome = targets[0].outcome
        targets[1].outcome = outcome
        pipeline = Pipeline(
            checks=[Module("check.a", plan, closes), Module("check.b", plan, closes)],
            modifiers=[Module("modify.m", plan, closes)],
            default=Destination(targets=targets),
        )
        error = asyncio.run(run_message(pipeline, caller_aborts))

        fired = plan.fired
        if fired and not any(f.step == "abort" for f in fired):
            assert error is not None, fired
        if error is not None and not isinstance(error, asyncio.CancelledError):
            assert isinstance(error, MailModuleError)
        assert all(n == 1 for n in closes), closes  # every state closed exactly once

        started = [o for o in outcome if o != "not started"]
        failed_commits = {f.target for f in fired if f.step == "commit"}
        if failed_commits:
            # A failed commit cannot be undone elsewhere: the other targets are committed,
            # and the failed one is aborted to clean up after itself.
            for i, o in enumerate(outcome):
                if o != "not started":
                    assert o == ("aborted" if i in failed_commits else "committed"), outcome
        else:
            assert len(set(started)) <= 1, outcome
            assert "open" not in started, outcome
            assert len(memory.messages) == len(directory.delivered()), fired
        if not any(f.step == "abort" for f in fired):
            assert directory.pending() == []


def test_every_step_can_be_injected() -> None:
    """The fault points really are reached by an unfaulted run."""
    reached: set[str] = set()

    class Spy(Plan):
        async def hit(self, step: str, target: int = -1) -> None:
            reached.add(step)

    plan = Spy([])
    closes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = [
            FaultyTarget(MemoryTarget(), plan, 0),
            FaultyTarget(DirTarget(Path(tmp)), plan, 1),
        ]
        pipeline = Pipeline(
            checks=[Module("check.a", plan, closes)],
            modifiers=[Module("modify.m", plan, closes)],
            default=Destination(targets=targets),
        )
        assert asyncio.run(run_message(pipeline, caller_aborts=False)) is None
        assert asyncio.run(run_message(pipeline, caller_aborts=True)) is None
    assert reached == set(CHECK_STEPS + MOD_STEPS + TARGET_STEPS)
