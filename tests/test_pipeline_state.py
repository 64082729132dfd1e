"""The legal steps of a message: illegal calls are refused and change nothing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from mailmodule import Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.errors import DeliveryStateError
from mailmodule.pipeline import DeliveryState, Destination, Pipeline, PipelineDelivery
from mailmodule.pipeline._state import AFTER, TRANSITIONS, Step, advance
from tests.pipeline_kit import MapModifier, MemoryTarget, RecordingCheck

BODY = MemoryBuffer(b"Hello\r\n")


def header() -> Header:
    return Header([("Subject", "Hi"), ("From", "a@example.org")])


ILLEGAL = [pair for pair in itertools.product(DeliveryState, Step) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("state", "step"), ILLEGAL, ids=[f"{s.name}-{e.name}" for s, e in ILLEGAL])
def test_every_step_missing_from_the_table_is_refused_by_advance(
    state: DeliveryState, step: Step
) -> None:
    with pytest.raises(DeliveryStateError) as caught:
        advance(state, step)
    assert (caught.value.code, caught.value.enhanced_code) == (503, (5, 5, 1))
    assert (caught.value.state, caught.value.operation) == (state.value, step.value)


@pytest.mark.parametrize(("pair", "after"), list(TRANSITIONS.items()), ids=str)
def test_every_step_in_the_table_leads_where_the_table_says(
    pair: tuple[DeliveryState, Step], after: DeliveryState
) -> None:
    assert advance(*pair) is after


def test_the_table_by_step_holds_exactly_the_transition_table() -> None:
    by_step = {(state, step): new for step, after in AFTER.items() for state, new in after.items()}
    assert by_step == dict(TRANSITIONS)


class Message:
    """A pipeline with one check, one modifier and two targets, and its open delivery."""

    def __init__(self) -> None:
        self.check = RecordingCheck("check.rec")
        self.modifier = MapModifier("modify.map")
        self.one, self.two = MemoryTarget("one"), MemoryTarget("two")
        self.pipeline = Pipeline(
            checks=[self.check],
            modifiers=[self.modifier],
            destinations={"two.example": Destination(targets=[self.two])},
            default=Destination(targets=[self.one]),
        )

    async def start(self) -> PipelineDelivery:
        return await self.pipeline.start(MsgMetadata(id="m"), "a@example.org")

    async def with_recipients(self) -> PipelineDelivery:
        delivery = await self.start()
        await delivery.add_rcpt("b@example.org")
        await delivery.add_rcpt("c@two.example")
        return delivery

    def closed(self) -> bool:
        """Every check state closed once, and the modifier state closed."""
        return (
            bool(self.check.states)
            and all(s.closes == 1 for s in self.check.states)
            and ("close" in self.modifier.calls)
        )

    def target_calls(self) -> list[str]:
        return self.one.calls + self.two.calls


Call = Callable[[PipelineDelivery], Awaitable[object]]


async def refused_in_state(delivery: PipelineDelivery, call: Call) -> DeliveryStateError:
    """The error `call` raises, after checking it changed neither state nor recipients."""
    state, recipients = delivery.state, delivery.recipients
    with pytest.raises(DeliveryStateError) as caught:
        await call(delivery)
    assert delivery.state is state
    assert delivery.recipients == recipients
    assert (caught.value.code, caught.value.enhanced_code) == (503, (5, 5, 1))
    return caught.value


async def test_a_recipient_after_the_body_is_refused_and_changes_nothing() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await delivery.body(header(), BODY)
    calls = message.target_calls()
    await refused_in_state(delivery, lambda d: d.add_rcpt("late@example.org"))
    assert delivery.state is DeliveryState.READY
    assert message.target_calls() == calls


async def test_a_second_body_is_refused_and_changes_nothing() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await delivery.body(header(), BODY)
    calls = message.target_calls()
    await refused_in_state(delivery, lambda d: d.body(header(), BODY))
    assert message.target_calls() == calls
    await delivery.commit()
    assert len(message.one.messages) == len(message.two.messages) == 1


async def test_a_commit_without_a_body_is_refused_and_changes_nothing() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await refused_in_state(delivery, lambda d: d.commit())
    assert delivery.state is DeliveryState.OPEN
    assert "commit" not in message.target_calls()


async def test_a_commit_after_a_failed_body_is_refused_and_changes_nothing() -> None:
    message = Message()
    delivery = await message.with_recipients()
    message.check.results["body"] = SMTPError(550, (5, 7, 1), "spam")
    with pytest.raises(SMTPError):
        await delivery.body(header(), BODY)
    assert delivery.state is DeliveryState.FAILED
    await refused_in_state(delivery, lambda d: d.commit())
    assert "commit" not in message.target_calls()


async def test_a_body_without_accepted_recipients_is_refused_and_changes_nothing() -> None:
    message = Message()
    delivery = await message.start()
    message.check.results["rcpt"] = SMTPError(550, (5, 1, 1), "no such user")
    with pytest.raises(SMTPError):
        await delivery.add_rcpt("b@example.org")
    await refused_in_state(delivery, lambda d: d.body(header(), BODY))
    assert delivery.state is DeliveryState.OPEN
    assert message.target_calls() == []


async def test_abort_is_idempotent() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await delivery.abort()
    await delivery.abort()
    assert delivery.state is DeliveryState.ABORTED
    assert message.one.calls.count("abort") == message.two.calls.count("abort") == 1
    assert message.closed()


async def test_aclose_is_idempotent_and_aborts_an_uncommitted_message() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await delivery.aclose()
    await delivery.aclose()
    await delivery.abort()
    assert delivery.state is DeliveryState.ABORTED
    assert message.one.calls.count("abort") == message.two.calls.count("abort") == 1
    assert message.closed()


async def test_abort_and_aclose_after_commit_do_nothing() -> None:
    message = Message()
    delivery = await message.with_recipients()
    await delivery.body(header(), BODY)
    await delivery.commit()
    calls = message.target_calls()
    await delivery.abort()
    await delivery.aclose()
    assert delivery.state is DeliveryState.COMMITTED
    assert message.target_calls() == calls
    assert len(message.one.messages) == len(message.two.messages) == 1


async def test_async_with_aborts_an_uncommitted_message() -> None:
    message = Message()
    async with await message.start() as delivery:
        await delivery.add_rcpt("b@example.org")
        await delivery.add_rcpt("c@two.example")
        await delivery.body(header(), BODY)
    assert delivery.state is DeliveryState.ABORTED
    assert [d.outcome for d in message.one.deliveries + message.two.deliveries] == [
        "aborted",
        "aborted",
    ]
    assert message.one.messages == message.two.messages == []
    assert message.closed()


async def test_async_with_aborts_a_message_left_by_an_exception() -> None:
    message = Message()
    delivery = await message.start()

    async def fail_inside() -> None:
        async with delivery:
            await delivery.add_rcpt("b@example.org")
            raise LookupError

    with pytest.raises(LookupError):
        await fail_inside()
    assert delivery.state is DeliveryState.ABORTED
    assert [d.outcome for d in message.one.deliveries] == ["aborted"]
    assert message.closed()


async def test_async_with_does_nothing_after_commit() -> None:
    message = Message()
    async with await message.start() as delivery:
        await delivery.add_rcpt("b@example.org")
        await delivery.body(header(), BODY)
        await delivery.commit()
        calls = message.target_calls()
    assert delivery.state is DeliveryState.COMMITTED
    assert message.target_calls() == calls
    assert "abort" not in calls
    assert len(message.one.messages) == 1


async def test_a_call_while_another_is_still_running_is_refused() -> None:
    message = Message()
    delivery = await message.start()
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(check: RecordingCheck) -> None:
        if check.calls[-1] == "rcpt:b@example.org":
            entered.set()
            await release.wait()

    message.check.gate = hold
    first = asyncio.create_task(delivery.add_rcpt("b@example.org"))
    await entered.wait()
    await refused_in_state(delivery, lambda d: d.add_rcpt("c@two.example"))
    states = [delivery.state]
    release.set()
    await first
    states.append(delivery.state)
    assert states == [DeliveryState.ADDING, DeliveryState.OPEN]
    assert message.two.calls == []
