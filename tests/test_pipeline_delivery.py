"""One message through the pipeline: recipients, bodies, check results, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine

import attrs
import pytest
from authres import AuthenticationResult
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    Buffer,
    CheckResult,
    Delivery,
    DeliveryTarget,
    Header,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
    StatusCollector,
)
from mailmodule.pipeline import (
    DeliveryState,
    Destination,
    Pipeline,
    PipelineDelivery,
    RecipientRecord,
    RecipientStatus,
    TargetOutcome,
    parse_authentication_results,
)
from tests.pipeline_kit import (
    MapModifier,
    MemoryDelivery,
    MemoryTarget,
    Named,
    RecordingCheck,
    RecordingState,
)

BODY = MemoryBuffer(b"Hello\r\n")
HOST = "mx.example.org"


def header() -> Header:
    return Header([("Subject", "Hi"), ("From", "a@example.org")])


async def deliver(
    pipeline: Pipeline,
    rcpts: list[str],
    *,
    head: Header | None = None,
    mail_from: str = "a@example.org",
) -> PipelineDelivery:
    delivery = await pipeline.start(MsgMetadata(id="m1"), mail_from)
    for rcpt in rcpts:
        await delivery.add_rcpt(rcpt)
    await delivery.body(head or header(), BODY)
    await delivery.commit()
    return delivery


class Collector:
    def __init__(self) -> None:
        self.statuses: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        assert rcpt_to not in self.statuses, f"{rcpt_to} reported twice"
        self.statuses[rcpt_to] = err


# A reason that is not an SMTPError


STAGE_KEYS = ["conn", "sender", "rcpt", "body"]


async def run_stages(pipeline: Pipeline) -> None:
    await deliver(pipeline, ["b@example.org"])


@pytest.mark.parametrize("stage", STAGE_KEYS)
async def test_a_reason_that_is_no_smtp_error_refuses_with_451_naming_the_check(
    stage: str,
) -> None:
    bad = CheckResult(reject=True, reason=ValueError("x"))  # type: ignore[arg-type]
    check = RecordingCheck("check.buggy", results={stage: bad})
    pipeline = Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError) as caught:
        await run_stages(pipeline)
    assert caught.value.code == 451
    assert caught.value.enhanced_code[0] == 4
    assert caught.value.check_name == "check.buggy"


async def test_a_reason_that_is_no_smtp_error_fails_each_recipient_of_body_non_atomic() -> None:
    bad = CheckResult(reject=True, reason=ValueError("x"))  # type: ignore[arg-type]
    check = RecordingCheck("check.buggy", results={"body": bad})
    target = MemoryTarget(partial=True)
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("b@example.org")
    await delivery.add_rcpt("c@example.org")
    collector = Collector()
    await delivery.body_non_atomic(collector, header(), BODY)
    assert set(collector.statuses) == {"b@example.org", "c@example.org"}
    for err in collector.statuses.values():
        assert isinstance(err, SMTPError)
        assert (err.code, err.check_name) == (451, "check.buggy")


# A partial target whose body_non_atomic raises


async def failing_body_non_atomic(c: StatusCollector, header: Header, body: Buffer) -> None:
    raise RuntimeError("disk on fire")


async def failing_body_non_atomic_smtp(c: StatusCollector, header: Header, body: Buffer) -> None:
    raise SMTPError(452, (4, 3, 1), "full")


FAILURES = [
    pytest.param(failing_body_non_atomic, id="error"),
    pytest.param(failing_body_non_atomic_smtp, id="smtp-error"),
]

BodyNonAtomic = Callable[[StatusCollector, Header, Buffer], Coroutine[object, object, None]]


class PartialFailure:
    """A good and a bad partial target; the bad one's body_non_atomic raises."""

    def __init__(self, fault: BodyNonAtomic, *, shared: bool = False) -> None:
        self.good, self.bad = MemoryTarget("good", partial=True), MemoryTarget("bad", partial=True)
        both = Destination(targets=[self.good, self.bad])
        self.pipeline = Pipeline(
            destinations={
                "bad.example": Destination(targets=[self.bad]),
                "both.example": both,
            },
            default=Destination(targets=[self.good]),
        )
        self.fault = fault
        self.rcpts = ["x1@bad.example", "x2@bad.example", "y@good.example"]
        if shared:
            self.rcpts.append("z@both.example")
        self.collector = Collector()

    async def run(self) -> PipelineDelivery:
        delivery = await self.pipeline.start(MsgMetadata(id="m"), "a@example.org")
        for rcpt in self.rcpts:
            await delivery.add_rcpt(rcpt)
        (bad,) = self.bad.deliveries
        bad.body_non_atomic = self.fault  # type: ignore[method-assign, assignment]  # injected fault
        await delivery.body_non_atomic(self.collector, header(), BODY)
        return delivery


@pytest.mark.parametrize("fault", FAILURES)
async def test_a_raising_partial_target_fails_each_of_its_recipients_naming_it(
    fault: BodyNonAtomic,
) -> None:
    case = PartialFailure(fault)
    await case.run()  # returns normally
    for rcpt in ("x1@bad.example", "x2@bad.example"):
        err = case.collector.statuses[rcpt]
        assert isinstance(err, SMTPError)
        assert err.target_name == "bad"


@pytest.mark.parametrize("fault", FAILURES)
async def test_a_raising_partial_target_leaves_the_other_targets_delivering(
    fault: BodyNonAtomic,
) -> None:
    case = PartialFailure(fault)
    delivery = await case.run()
    assert case.collector.statuses["y@good.example"] is None
    assert delivery.state is DeliveryState.READY
    await delivery.commit()
    assert [m.rcpts for m in case.good.messages] == [["y@good.example"]]


@pytest.mark.parametrize("fault", FAILURES)
async def test_a_raising_partial_target_is_aborted_at_commit(fault: BodyNonAtomic) -> None:
    case = PartialFailure(fault)
    delivery = await case.run()
    await delivery.commit()
    assert [d.outcome for d in case.bad.deliveries] == ["aborted"]
    assert case.bad.messages == []


@pytest.mark.parametrize("fault", FAILURES)
async def test_a_recipient_failing_in_one_partial_target_is_delivered_by_no_other(
    fault: BodyNonAtomic,
) -> None:
    case = PartialFailure(fault, shared=True)
    delivery = await case.run()
    assert isinstance(case.collector.statuses["z@both.example"], SMTPError)
    await delivery.commit()
    delivered = [r for m in case.good.messages for r in m.rcpts]
    assert delivered == ["y@good.example"]


# Destinations sharing a target


def shared_target_pipeline(
    target: MemoryTarget, *, headers: bool = True, senders: bool = True
) -> Pipeline:
    def dest(tag: str) -> Destination:
        mod = MapModifier(
            f"modify.{tag}",
            field=("X-Dest", tag) if headers else None,
            senders={"s@example.org": f"{tag}@example.org"} if senders else None,
        )
        return Destination(targets=[target], modifiers=[mod])

    return Pipeline(destinations={"a.example": dest("a"), "b.example": dest("b")})


Summary = list[tuple[str, tuple[str, ...], tuple[str, ...]]]


def summary(target: MemoryTarget) -> Summary:
    """Each message as (sender, recipients, X-Dest values), sorted."""
    return sorted(
        (m.mail_from, tuple(m.rcpts), tuple(Header.parse(m.header).values("X-Dest")))
        for m in target.messages
    )


async def test_destinations_with_header_modifiers_sharing_a_target_send_one_message_each() -> None:
    target = MemoryTarget()
    pipeline = shared_target_pipeline(target, senders=False)
    await deliver(pipeline, ["u@a.example", "v@b.example"], mail_from="s@example.org")
    assert summary(target) == [
        ("s@example.org", ("u@a.example",), ("a",)),
        ("s@example.org", ("v@b.example",), ("b",)),
    ]


async def test_destinations_with_sender_modifiers_sharing_a_target_send_one_message_each() -> None:
    target = MemoryTarget()
    pipeline = shared_target_pipeline(target, headers=False)
    await deliver(pipeline, ["u@a.example", "v@b.example"], mail_from="s@example.org")
    assert summary(target) == [
        ("a@example.org", ("u@a.example",), ()),
        ("b@example.org", ("v@b.example",), ()),
    ]


async def test_what_destinations_with_modifiers_deliver_does_not_depend_on_recipient_order() -> (
    None
):
    outcomes = []
    for rcpts in (["u@a.example", "v@b.example"], ["v@b.example", "u@a.example"]):
        target = MemoryTarget()
        await deliver(shared_target_pipeline(target), rcpts, mail_from="s@example.org")
        outcomes.append(summary(target))
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0]) == 2


async def test_destinations_without_modifiers_sharing_a_target_send_one_message() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(
        destinations={
            "a.example": Destination(targets=[target]),
            "b.example": Destination(targets=[target]),
        }
    )
    await deliver(pipeline, ["u@a.example", "v@b.example"])
    assert [m.rcpts for m in target.messages] == [["u@a.example", "v@b.example"]]
    assert [c for c in target.calls if c.startswith("start")] == ["start:a@example.org"]


# Context variables


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("tests.pipeline.var", default="unset")
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar(
    "tests.pipeline.caller", default="unset"
)

STEPS = ["state", "conn", "sender", "rcpt", "body"]


class ContextCheck(Named):
    """Records, at each of its steps, what VAR and CALLER hold; then sets VAR for itself,
    before and after awaiting (at the steps in `awaiting`)."""

    def __init__(self, label: str, awaiting: frozenset[str] = frozenset()) -> None:
        super().__init__(f"check.{label}")
        self.label = label
        self.awaiting = awaiting
        self.seen: list[tuple[str, str, str]] = []  # (step, VAR, CALLER)

    async def step(self, step: str) -> None:
        self.seen.append((step, VAR.get(), CALLER.get()))
        VAR.set(f"{self.label}:{step}:before")
        if step in self.awaiting:
            await asyncio.sleep(0)
        VAR.set(f"{self.label}:{step}")

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> ContextState:
        await self.step("state")
        return ContextState(self)


class ContextState:
    def __init__(self, check: ContextCheck) -> None:
        self.check = check

    async def check_connection(self) -> CheckResult:
        await self.check.step("conn")
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        await self.check.step("sender")
        return CheckResult()

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        await self.check.step("rcpt")
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        await self.check.step("body")
        return CheckResult()

    def close(self) -> None:
        pass


awaiting_steps = st.frozensets(st.sampled_from(STEPS))


def context_pipeline(checks: list[ContextCheck], late: ContextCheck) -> Pipeline:
    """`checks` for every message; `late` joins with the recipients of late.example."""
    return Pipeline(
        checks=checks,
        destinations={"late.example": Destination(targets=[MemoryTarget()], checks=[late])},
        default=Destination(targets=[MemoryTarget()]),
    )


RCPTS = ["b@example.org", "c@late.example", "d@example.org"]


async def run_in_caller_context(pipeline: Pipeline) -> list[str]:
    """Deliver a message with VAR and CALLER set to "caller"; VAR after each call."""
    VAR.set("caller")
    CALLER.set("caller")
    after: list[str] = []
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    after.append(VAR.get())
    for rcpt in RCPTS:
        await delivery.add_rcpt(rcpt)
        after.append(VAR.get())
    await delivery.body(header(), BODY)
    after.append(VAR.get())
    await delivery.commit()
    after.append(VAR.get())
    return after


def context_checks(
    first: frozenset[str], second: frozenset[str], late: frozenset[str]
) -> tuple[ContextCheck, ContextCheck, ContextCheck]:
    return ContextCheck("one", first), ContextCheck("two", second), ContextCheck("late", late)


@settings(max_examples=60, deadline=None)
@given(first=awaiting_steps, second=awaiting_steps, late=awaiting_steps)
def test_a_check_sees_at_each_step_what_it_set_at_its_step_before(
    first: frozenset[str], second: frozenset[str], late: frozenset[str]
) -> None:
    checks = context_checks(first, second, late)
    asyncio.run(run_in_caller_context(context_pipeline([checks[0], checks[1]], checks[2])))
    for check in checks:
        assert check.seen[0][:2] == ("state", "caller")
        for (before, _, _), (_, seen, _) in zip(check.seen, check.seen[1:], strict=False):
            assert seen == f"{check.label}:{before}"


@settings(max_examples=60, deadline=None)
@given(first=awaiting_steps, second=awaiting_steps, late=awaiting_steps)
def test_a_check_never_sees_what_its_sibling_checks_set(
    first: frozenset[str], second: frozenset[str], late: frozenset[str]
) -> None:
    checks = context_checks(first, second, late)
    asyncio.run(run_in_caller_context(context_pipeline([checks[0], checks[1]], checks[2])))
    for check in checks:
        others = {c.label for c in checks} - {check.label}
        assert not any(seen.split(":")[0] in others for _, seen, _ in check.seen)


@settings(max_examples=60, deadline=None)
@given(first=awaiting_steps, second=awaiting_steps, late=awaiting_steps)
def test_the_caller_sees_nothing_a_check_set_after_any_pipeline_call(
    first: frozenset[str], second: frozenset[str], late: frozenset[str]
) -> None:
    checks = context_checks(first, second, late)
    after = asyncio.run(run_in_caller_context(context_pipeline([checks[0], checks[1]], checks[2])))
    assert after == ["caller"] * (len(RCPTS) + 3)


@settings(max_examples=30, deadline=None)
@given(first=awaiting_steps, second=awaiting_steps, late=awaiting_steps)
def test_checks_see_what_the_caller_set_before_start_at_every_step(
    first: frozenset[str], second: frozenset[str], late: frozenset[str]
) -> None:
    checks = context_checks(first, second, late)
    asyncio.run(run_in_caller_context(context_pipeline([checks[0], checks[1]], checks[2])))
    for check in checks:
        assert {step for step, _, _ in check.seen} == set(STEPS)
        assert {caller for _, _, caller in check.seen} == {"caller"}


# Check results are values


def test_a_check_result_with_a_header_is_hashable() -> None:
    result = CheckResult(header=Header([("X-A", "1")]))
    assert hash(result) == hash(CheckResult(header=Header([("X-A", "1")])))


def test_a_check_result_keeps_its_header_as_a_tuple_of_frozen_fields() -> None:
    source = Header([("X-A", "1")])
    result = CheckResult(header=source)
    source.add("X-B", "2")
    assert isinstance(result.header, tuple)
    assert [f.name for f in result.header] == ["X-A"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.header[0].name = "X-B"  # type: ignore[misc]


SHARED = CheckResult(header=Header([("X-Shared", "1")]))


@pytest.mark.parametrize("stage", ["sender", "body"])
async def test_a_result_shared_by_every_message_adds_its_field_once_to_each(stage: str) -> None:
    check = RecordingCheck("check.shared", results={stage: SHARED})
    target = MemoryTarget()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    for _ in range(2):
        await deliver(pipeline, ["b@example.org"])
    counts = [Header.parse(m.header).values("X-Shared") for m in target.messages]
    assert counts == [["1"], ["1"]]
    assert [f.name for f in SHARED.header] == ["X-Shared"]


# Forged Authentication-Results


SPF_PASS = CheckResult(auth_result=[AuthenticationResult(method="spf", result="pass")])

FORGED_PLAIN = b"Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\r\n"
FORGED = [
    pytest.param(FORGED_PLAIN, id="plain"),
    pytest.param(
        b"Authentication-Results: MX.EXAMPLE.ORG; dkim=pass header.d=bank.example\r\n",
        id="upper-case",
    ),
    pytest.param(
        b"Authentication-Results: (trust me) mx.example.org; dkim=pass header.d=bank.example\r\n",
        id="comment",
    ),
    pytest.param(
        b"Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=bank.example\r\n",
        id="folded",
    ),
    pytest.param(
        b"Authentication-Results:\r\n mx.example.org; dkim=pass\r\n header.d=bank.example\r\n",
        id="folded-before-id",
    ),
]


def arriving(field: bytes) -> Header:
    return Header.parse(b"Subject: Hi\r\n" + field + b"From: a@example.org\r\n\r\n")


def auth_fields(stored: bytes) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each Authentication-Results field, top first, as (authserv-id, [(method, result)])."""
    out = []
    for field in Header.parse(stored).fields("Authentication-Results"):
        authserv, results = parse_authentication_results(field.value)
        out.append((authserv, [(r.method, r.result) for r in results]))
    return out


def spf_pipeline(target: DeliveryTarget) -> Pipeline:
    check = RecordingCheck("check.spf", results={"sender": SPF_PASS})
    return Pipeline(checks=[check], default=Destination(targets=[target]), hostname=HOST)


@pytest.mark.parametrize("field", FORGED)
async def test_a_field_forged_with_our_authserv_id_is_removed_and_ours_put_on_top(
    field: bytes,
) -> None:
    target = MemoryTarget()
    await deliver(spf_pipeline(target), ["b@example.org"], head=arriving(field))
    (stored,) = target.messages
    assert auth_fields(stored.header) == [(HOST, [("spf", "pass")])]
    assert Header.parse(stored.header).fields()[0].name == "Authentication-Results"
    assert b"bank.example" not in stored.header


async def test_a_field_of_another_authserv_id_is_kept_below_ours() -> None:
    field = b"Authentication-Results: other.example; dkim=pass header.d=bank.example\r\n"
    target = MemoryTarget()
    await deliver(spf_pipeline(target), ["b@example.org"], head=arriving(field))
    (stored,) = target.messages
    assert auth_fields(stored.header) == [
        (HOST, [("spf", "pass")]),
        ("other.example", [("dkim", "pass")]),
    ]
    assert field in stored.header


async def test_a_nested_pipeline_with_our_hostname_keeps_the_outer_pipelines_field() -> None:
    target = MemoryTarget()
    inner = Pipeline(default=Destination(targets=[target]), hostname=HOST)
    await deliver(spf_pipeline(inner), ["b@example.org"], head=arriving(FORGED_PLAIN))
    (stored,) = target.messages
    assert auth_fields(stored.header) == [(HOST, [("spf", "pass")])]


async def test_a_nested_pipeline_with_our_hostname_still_removes_a_forged_field() -> None:
    target = MemoryTarget()
    inner = Pipeline(default=Destination(targets=[target]), hostname=HOST)
    forger = MapModifier(
        "modify.forger",
        field=("Authentication-Results", f"{HOST}; dkim=pass header.d=bank.example"),
    )
    outer = Pipeline(
        checks=[RecordingCheck("check.spf", results={"sender": SPF_PASS})],
        modifiers=[forger],  # adds its field after the outer pipeline removed forged ones
        default=Destination(targets=[inner]),
        hostname=HOST,
    )
    await deliver(outer, ["b@example.org"])
    (stored,) = target.messages
    assert auth_fields(stored.header) == [(HOST, [("spf", "pass")])]
    assert b"bank.example" not in stored.header


# Cancellation


class SlowTarget(Named):
    """A MemoryTarget whose `slow` step first waits `delay` seconds; `entered` is set then."""

    def __init__(self, slow: str, delay: float, name: str = "target.slow") -> None:
        super().__init__(name)
        self.inner = MemoryTarget(name)
        self.slow, self.delay = slow, delay
        self.entered = asyncio.Event()

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return SlowDelivery(self, await self.inner.start(msg_meta, mail_from))

    @property
    def deliveries(self) -> list[MemoryDelivery]:
        return self.inner.deliveries


class SlowDelivery:
    def __init__(self, target: SlowTarget, inner: Delivery) -> None:
        self.target, self.inner = target, inner

    async def _wait(self, step: str) -> None:
        if step == self.target.slow:
            self.target.entered.set()
            await asyncio.sleep(self.target.delay)

    async def add_rcpt(self, rcpt_to: str) -> None:
        await self._wait("add_rcpt")
        await self.inner.add_rcpt(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        await self._wait("body")
        await self.inner.body(header, body)

    async def commit(self) -> None:
        await self._wait("commit")
        await self.inner.commit()

    async def abort(self) -> None:
        await self.inner.abort()


class SlowStateCheck(RecordingCheck):
    """A RecordingCheck whose states take `delay` seconds to make; `entered` is set then."""

    def __init__(self, name: str, *, delay: float) -> None:
        super().__init__(name, delay=delay)
        self.entered = asyncio.Event()

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecordingState:
        self.entered.set()
        await asyncio.sleep(self.delay)
        return await super().check_state_for_msg(msg_meta)


class Slow:
    """A message to fast and slow targets, with checks and a modifier, that gets stuck at
    one step; `run` is cancelled there."""

    def __init__(self, *, target_step: str = "", check_step: str = "", delay: float = 60) -> None:
        self.entered = asyncio.Event()
        self.check = RecordingCheck("check.rec")
        self.dest_check = RecordingCheck("check.dest")
        self.modifier = MapModifier("modify.map")
        self.fast = MemoryTarget("target.fast")
        self.slow = SlowTarget(target_step, delay)
        self.slow.entered = self.entered
        self.check_step = check_step
        self.check.gate = self.gate
        self.pipeline = Pipeline(
            checks=[self.check],
            modifiers=[self.modifier],
            destinations={
                "slow.example": Destination(targets=[self.slow], checks=[self.dest_check]),
            },
            default=Destination(targets=[self.fast]),
        )
        self.delivery: PipelineDelivery | None = None

    async def gate(self, check: RecordingCheck) -> None:
        if check.calls[-1] == self.check_step:
            self.entered.set()
            await asyncio.sleep(60)

    async def run(self) -> None:
        self.delivery = await self.pipeline.start(MsgMetadata(id="m"), "a@example.org")
        await self.delivery.add_rcpt("b@example.org")
        await self.delivery.add_rcpt("c@slow.example")
        await self.delivery.body(header(), BODY)
        await self.delivery.commit()

    async def cancelled(self) -> None:
        task = asyncio.create_task(self.run())
        await self.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def deliveries(self) -> list[MemoryDelivery]:
        return self.fast.deliveries + self.slow.deliveries

    def all_closed(self) -> bool:
        states = self.check.states + self.dest_check.states
        mods = self.modifier.calls  # empty when no modifier state was made
        return all(s.closes == 1 for s in states) and (not mods or mods[-1] == "close")


CHECK_STEPS = [
    pytest.param("conn", id="connection"),
    pytest.param("sender:a@example.org", id="sender"),
    pytest.param("rcpt:b@example.org", id="first-rcpt"),
    pytest.param("rcpt:c@slow.example", id="second-rcpt"),
    pytest.param("body", id="body"),
]


@pytest.mark.parametrize("step", CHECK_STEPS)
async def test_a_call_cancelled_in_a_slow_check_aborts_every_started_delivery(step: str) -> None:
    message = Slow(check_step=step)
    await message.cancelled()
    assert all(d.outcome == "aborted" for d in message.deliveries())
    assert message.fast.messages == message.slow.inner.messages == []
    assert message.delivery is None or message.delivery.state is DeliveryState.ABORTED


@pytest.mark.parametrize("step", CHECK_STEPS)
async def test_a_call_cancelled_in_a_slow_check_closes_every_state(step: str) -> None:
    message = Slow(check_step=step)
    await message.cancelled()
    assert message.check.states
    assert message.all_closed()


@pytest.mark.parametrize("step", ["add_rcpt", "body"])
async def test_a_call_cancelled_in_a_slow_target_aborts_the_whole_message(step: str) -> None:
    message = Slow(target_step=step)
    await message.cancelled()
    assert message.delivery is not None
    assert message.delivery.state is DeliveryState.ABORTED
    assert [d.outcome for d in message.deliveries()] == ["aborted", "aborted"]
    assert message.all_closed()


@pytest.mark.parametrize("step", ["add_rcpt", "body"])
async def test_a_call_cancelled_in_a_slow_target_leaves_no_recipient_accepted(step: str) -> None:
    message = Slow(target_step=step)
    await message.cancelled()
    assert message.delivery is not None
    statuses = [r.status for r in message.delivery.recipients]
    assert RecipientStatus.ACCEPTED not in statuses
    assert RecipientStatus.DELIVERED not in statuses


async def test_an_add_rcpt_cancelled_in_a_slow_destination_check_state_aborts_the_message() -> None:
    late = SlowStateCheck("check.slow_state", delay=60)
    fast = MemoryTarget()
    pipeline = Pipeline(
        destinations={"slow.example": Destination(targets=[MemoryTarget()], checks=[late])},
        default=Destination(targets=[fast]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("b@example.org")
    task = asyncio.create_task(delivery.add_rcpt("c@slow.example"))
    await late.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert delivery.state is DeliveryState.ABORTED
    assert [d.outcome for d in fast.deliveries] == ["aborted"]


async def test_a_cancelled_commit_completes_before_the_cancellation_goes_on() -> None:
    message = Slow(target_step="commit", delay=0.05)
    task = asyncio.create_task(message.run())
    await message.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert message.delivery is not None
    assert message.delivery.state is DeliveryState.COMMITTED
    assert len(message.fast.messages) == len(message.slow.inner.messages) == 1
    assert message.all_closed()


async def test_a_cancelled_commit_reports_its_recipients_delivered() -> None:
    message = Slow(target_step="commit", delay=0.05)
    task = asyncio.create_task(message.run())
    await message.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert message.delivery is not None
    assert [r.status for r in message.delivery.recipients] == [RecipientStatus.DELIVERED] * 2


# Recipient records


class Records:
    """Targets one and two by domain, an alias list to both, nothing else routed."""

    def __init__(self) -> None:
        self.one, self.two = MemoryTarget("one"), MemoryTarget("two", partial=True)
        self.two.refuse.add("bad@two.example")
        alias = MapModifier(
            "modify.alias", rcpts={"list@example.org": ["m1@one.example", "m2@two.example"]}
        )
        self.pipeline = Pipeline(
            modifiers=[alias],
            destinations={
                "one.example": Destination(targets=[self.one]),
                "two.example": Destination(targets=[self.two]),
            },
        )

    async def start(self) -> PipelineDelivery:
        return await self.pipeline.start(MsgMetadata(id="m"), "a@example.org")


def accepted(given: str, target: str) -> RecipientRecord:
    return RecipientRecord(
        given=given,
        status=RecipientStatus.ACCEPTED,
        error=None,
        addresses=(given,),
        targets=(TargetOutcome(target=target, address=given),),
    )


async def test_an_accepted_recipient_is_recorded_with_its_address_and_target() -> None:
    delivery = await Records().start()
    await delivery.add_rcpt("b@one.example")
    assert delivery.recipients == (accepted("b@one.example", "one"),)


async def test_a_recipient_without_a_route_is_recorded_refused_with_its_error() -> None:
    delivery = await Records().start()
    with pytest.raises(SMTPError) as caught:
        await delivery.add_rcpt("x@nowhere.example")
    (record,) = delivery.recipients
    assert (record.given, record.status) == ("x@nowhere.example", RecipientStatus.REFUSED)
    assert record.error == caught.value
    assert (record.error.code, record.error.enhanced_code) == (550, (5, 1, 2))
    assert record.targets == ()


async def test_a_recipient_a_target_refused_is_recorded_refused_naming_the_target() -> None:
    delivery = await Records().start()
    with pytest.raises(SMTPError):
        await delivery.add_rcpt("bad@two.example")
    (record,) = delivery.recipients
    assert record.status is RecipientStatus.REFUSED
    assert record.error is not None
    assert (record.error.code, record.error.target_name) == (550, "two")


async def test_an_alias_is_recorded_with_every_address_and_the_target_of_each() -> None:
    delivery = await Records().start()
    await delivery.add_rcpt("list@example.org")
    (record,) = delivery.recipients
    assert record.status is RecipientStatus.ACCEPTED
    assert record.addresses == ("m1@one.example", "m2@two.example")
    assert record.targets == (
        TargetOutcome(target="one", address="m1@one.example"),
        TargetOutcome(target="two", address="m2@two.example"),
    )


async def test_recipients_are_recorded_in_the_clients_order() -> None:
    delivery = await Records().start()
    given = ["c@two.example", "x@nowhere.example", "b@one.example", "list@example.org"]
    for rcpt in given:
        try:
            await delivery.add_rcpt(rcpt)
        except SMTPError:
            pass
    assert [r.given for r in delivery.recipients] == given


async def plain_pair() -> tuple[PipelineDelivery, MemoryTarget, MemoryTarget]:
    """A delivery into one default destination of two targets, the second refusing bad@."""
    one, two = MemoryTarget("one"), MemoryTarget("two")
    two.refuse.add("bad@example.org")
    pipeline = Pipeline(default=Destination(targets=[one, two]))
    return await pipeline.start(MsgMetadata(id="m"), "a@example.org"), one, two


async def test_a_recipient_of_a_plain_destination_is_recorded_with_each_of_its_targets() -> None:
    delivery, _, _ = await plain_pair()
    await delivery.add_rcpt("B@Example.org")
    (record,) = delivery.recipients
    assert record.addresses == ("B@Example.org",)
    assert record.targets == (
        TargetOutcome(target="one", address="B@Example.org"),
        TargetOutcome(target="two", address="B@Example.org"),
    )


async def test_a_recipient_the_second_target_refused_is_recorded_with_the_first_alone() -> None:
    delivery, one, _ = await plain_pair()
    await delivery.add_rcpt("ok@example.org")
    with pytest.raises(SMTPError):
        await delivery.add_rcpt("bad@example.org")
    _, refused = delivery.recipients
    assert refused.status is RecipientStatus.REFUSED
    assert refused.targets == (TargetOutcome(target="one", address="bad@example.org"),)
    await delivery.body(header(), BODY)
    await delivery.commit()
    assert [m.rcpts for m in one.messages] == [["ok@example.org"]]


async def test_records_keep_their_targets_after_commit() -> None:
    delivery, _, _ = await plain_pair()
    await delivery.add_rcpt("b@example.org")
    await delivery.body(header(), BODY)
    await delivery.commit()
    (record,) = delivery.recipients
    assert record.status is RecipientStatus.DELIVERED
    assert [t.target for t in record.targets] == ["one", "two"]


async def recorded_after(end: str) -> tuple[RecipientRecord, ...]:
    delivery = await Records().start()
    await delivery.add_rcpt("b@one.example")
    with pytest.raises(SMTPError):
        await delivery.add_rcpt("x@nowhere.example")
    await delivery.add_rcpt("list@example.org")
    await delivery.body(header(), BODY)
    await (delivery.commit() if end == "commit" else delivery.abort())
    return delivery.recipients


async def test_after_commit_accepted_recipients_are_delivered_and_refused_stay_refused() -> None:
    records = await recorded_after("commit")
    assert [r.status for r in records] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.REFUSED,
        RecipientStatus.DELIVERED,
    ]


async def test_after_abort_accepted_recipients_are_aborted_and_refused_stay_refused() -> None:
    records = await recorded_after("abort")
    assert [r.status for r in records] == [
        RecipientStatus.ABORTED,
        RecipientStatus.REFUSED,
        RecipientStatus.ABORTED,
    ]


async def test_a_recipient_failing_in_body_non_atomic_is_recorded_failed_by_its_target() -> None:
    records = Records()
    records.two.fail_in_body.add("c@two.example")
    delivery = await records.start()
    await delivery.add_rcpt("b@one.example")
    await delivery.add_rcpt("c@two.example")
    collector = Collector()
    await delivery.body_non_atomic(collector, header(), BODY)
    ok, failed = delivery.recipients
    assert ok == accepted("b@one.example", "one")
    assert failed.status is RecipientStatus.FAILED
    assert failed.error is not None
    assert failed.error == collector.statuses["c@two.example"]
    assert failed.targets == (
        TargetOutcome(target="two", address="c@two.example", error=failed.error),
    )
