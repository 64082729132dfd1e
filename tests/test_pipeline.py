from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    CheckResult,
    ConfigError,
    ConnState,
    Delivery,
    DeliveryTarget,
    Header,
    HeaderField,
    InterfaceMismatchError,
    MailModuleError,
    MemoryBuffer,
    MsgMetadata,
    PartialDelivery,
    SMTPError,
)
from mailmodule.pipeline import (
    CheckSpec,
    Destination,
    FailAction,
    Pipeline,
    parse_authentication_results,
)
from tests.pipeline_kit import (
    DirTarget,
    MapModifier,
    MapState,
    MemoryTarget,
    Named,
    RecordingCheck,
    RecordingState,
)

BODY = MemoryBuffer(b"Hello\r\n")


def header() -> Header:
    return Header([("Subject", "Hi"), ("From", "a@example.org")])


async def deliver(
    pipeline: Pipeline,
    rcpts: list[str],
    *,
    meta: MsgMetadata | None = None,
    mail_from: str = "a@example.org",
) -> Delivery:
    delivery = await pipeline.start(meta or MsgMetadata(id="m1"), mail_from)
    for rcpt in rcpts:
        await delivery.add_rcpt(rcpt)
    await delivery.body(header(), BODY)
    await delivery.commit()
    return delivery


class Collector:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, Exception | None]] = []

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses.append((rcpt_to, err))


# Delivery basics


async def test_a_message_reaches_its_target_with_its_own_metadata_copy() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(default=Destination(targets=[target]))
    meta = MsgMetadata(id="m1", original_from="a@example.org")
    await deliver(pipeline, ["b@example.org"], meta=meta)
    (stored,) = target.messages
    assert stored.rcpts == ["b@example.org"]
    assert stored.body == b"Hello\r\n"
    assert stored.meta is not meta
    assert meta.original_rcpts is None  # the caller's metadata is untouched
    assert stored.meta.original_rcpts == {"b@example.org": "b@example.org"}


async def test_a_pipeline_is_a_delivery_target_and_its_delivery_partial() -> None:
    pipeline = Pipeline(default=Destination(targets=[MemoryTarget()]))
    assert isinstance(pipeline, DeliveryTarget)
    assert isinstance(await pipeline.start(MsgMetadata(), "a@x"), PartialDelivery)


async def test_each_target_is_started_once_and_shared_by_its_recipients() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(
        destinations={"example.org": Destination(targets=[target])},
        default=Destination(targets=[target]),
    )
    await deliver(pipeline, ["b@example.org", "c@example.net", "d@example.org"])
    assert [c for c in target.calls if c.startswith("start")] == ["start:a@example.org"]
    assert target.messages[0].rcpts == ["b@example.org", "c@example.net", "d@example.org"]


async def test_duplicate_recipients_are_silently_ignored() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(default=Destination(targets=[target]))
    await deliver(pipeline, ["b@example.org", "B@EXAMPLE.ORG", "b@example.org"])
    assert target.messages[0].rcpts == ["b@example.org"]


async def test_commit_happens_only_when_every_body_succeeded() -> None:
    good, bad = MemoryTarget("target.good"), MemoryTarget("target.bad")

    async def refuse(header: Header, body: object) -> None:
        raise SMTPError(452, (4, 3, 1), "disk full")

    pipeline = Pipeline(default=Destination(targets=[good, bad]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("b@example.org")
    bad.deliveries[0].body = refuse  # type: ignore[method-assign]  # injected fault
    with pytest.raises(SMTPError, match="disk full") as info:
        await delivery.body(header(), BODY)
    assert info.value.target_name == "target.bad"
    with pytest.raises(SMTPError, match="Bad sequence"):
        await delivery.commit()
    await delivery.abort()
    assert good.messages == bad.messages == []
    assert [d.outcome for d in (*good.deliveries, *bad.deliveries)] == ["aborted", "aborted"]


async def test_a_failing_commit_still_commits_the_others_and_names_the_target() -> None:
    first, broken, last = MemoryTarget("t1"), MemoryTarget("t2"), MemoryTarget("t3")
    pipeline = Pipeline(default=Destination(targets=[first, broken, last]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("b@example.org")
    await delivery.body(header(), BODY)

    async def explode() -> None:
        raise OSError("rename failed")

    broken.deliveries[0].commit = explode  # type: ignore[method-assign]  # injected fault
    with pytest.raises(SMTPError) as info:
        await delivery.commit()
    assert info.value.target_name == "t2"
    assert isinstance(info.value.__cause__, OSError)
    assert len(first.messages) == len(last.messages) == 1


async def test_abort_reaches_every_started_delivery_and_is_idempotent() -> None:
    one, two = MemoryTarget("t1"), MemoryTarget("t2")
    pipeline = Pipeline(
        destinations={"one.example": Destination(targets=[one])},
        default=Destination(targets=[two]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("b@one.example")
    await delivery.add_rcpt("c@two.example")
    await delivery.abort()
    await delivery.abort()
    assert [d.outcome for d in (*one.deliveries, *two.deliveries)] == ["aborted", "aborted"]
    with pytest.raises(SMTPError, match="Bad sequence"):
        await delivery.add_rcpt("d@x")


# Routing


async def test_routing_prefers_tables_then_address_then_domain_then_default() -> None:
    """maddy's precedence: destination_in tables (full address) win over the rest."""
    by_addr, by_domain, by_table, fallback = (MemoryTarget(n) for n in "abcd")

    class Known:
        async def lookup(self, key: str) -> str | None:
            return "yes" if key in ("x@tabled.example", "listed@example.org") else None

    pipeline = Pipeline(
        destinations={
            "Special@Example.ORG": Destination(targets=[by_addr]),
            "example.org": Destination(targets=[by_domain]),
        },
        tables=[(Known(), Destination(targets=[by_table]))],
        default=Destination(targets=[fallback]),
    )
    await deliver(
        pipeline,
        [
            "special@example.org",
            "other@example.org",
            "x@tabled.example",
            "Listed@example.org",
            "y@else.example",
            "z@tabled.example",
        ],
    )
    assert by_addr.messages[0].rcpts == ["special@example.org"]
    assert by_domain.messages[0].rcpts == ["other@example.org"]
    assert by_table.messages[0].rcpts == ["x@tabled.example", "Listed@example.org"]
    assert fallback.messages[0].rcpts == ["y@else.example", "z@tabled.example"]


async def test_route_answers_a_rejection_for_the_unroutable_and_raises_table_errors() -> None:
    class Broken:
        async def lookup(self, key: str) -> str | None:
            raise OSError("table gone")

    known = Destination(targets=[MemoryTarget()])
    pipeline = Pipeline(destinations={"example.org": known})
    assert await pipeline.route("Joe@EXAMPLE.org") is known
    nowhere = await pipeline.route("joe@elsewhere.example")
    assert nowhere.reject is not None
    assert (nowhere.reject.code, nowhere.reject.enhanced_code) == (550, (5, 1, 2))
    tabled = Pipeline(tables=[(Broken(), known)])
    with pytest.raises(SMTPError, match="recipient routing") as info:
        await tabled.route("joe@example.org")
    assert info.value.code == 451
    assert isinstance(info.value.__cause__, OSError)


async def test_domains_route_in_their_normal_form() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(destinations={"XN--BCHER-KVA.example": Destination(targets=[target])})
    await deliver(pipeline, ["joe@Bücher.Example"])
    assert target.messages[0].rcpts == ["joe@Bücher.Example"]


async def test_a_recipient_without_a_route_is_refused_and_others_go_on() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(destinations={"example.org": Destination(targets=[target])})
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError) as info:
        await delivery.add_rcpt("b@elsewhere.example")
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 1, 2))
    await delivery.add_rcpt("c@example.org")
    await delivery.body(header(), BODY)
    await delivery.commit()
    assert target.messages[0].rcpts == ["c@example.org"]


async def test_a_rejecting_destination_refuses_with_its_reply() -> None:
    pipeline = Pipeline(
        destinations={"spam.example": Destination(reject=SMTPError(550, (5, 7, 1), "No"))},
        default=Destination(targets=[MemoryTarget()]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError, match=r"550 5\.7\.1 No"):
        await delivery.add_rcpt("x@spam.example")


def test_a_destination_needs_targets_or_a_rejection() -> None:
    with pytest.raises(ConfigError, match="either targets or a reject"):
        Destination()


def test_a_fail_action_code_must_be_a_refusal_reply_code() -> None:
    with pytest.raises(ValueError, match=r"FailAction\.code must be a 4xx or 5xx reply code"):
        FailAction(code="554")  # type: ignore[arg-type]  # wrong on purpose
    for code in (99, 250, 354, 600):
        with pytest.raises(ValueError, match="code must be a 4xx or 5xx reply code"):
            FailAction(code=code)
    with pytest.raises(ValueError, match="enhanced_code must be of class 4 or 5"):
        FailAction(code=550, enhanced_code=(2, 0, 0))


class SyncModifier(Named):
    def mod_state_for_msg(self, msg_meta: MsgMetadata) -> None:
        return None


REJECT = Destination(reject=SMTPError(550, (5, 7, 1), "No"))


@pytest.mark.parametrize(
    ("kind", "arguments", "culprit", "lacks"),
    [
        (Pipeline, {"checks": [RecordingCheck(), 5]}, "int (checks[1])", "check_state_for_msg"),
        (
            Pipeline,
            {"modifiers": [SyncModifier("modify.sync")]},
            "modify.sync (modifiers[0])",
            "mod_state_for_msg() must be async",
        ),
        (Destination, {"targets": [MemoryTarget(), object()]}, "object (targets[1])", "start"),
        (Pipeline, {"tables": [(5, REJECT)]}, "int (tables[0])", "lookup"),
        (CheckSpec, {"check": MemoryTarget("target.m")}, "target.m", "check_state_for_msg"),
    ],
)
def test_a_module_lacking_its_interface_is_refused_when_the_pipeline_is_built(
    kind: Callable[..., object], arguments: dict[str, object], culprit: str, lacks: str
) -> None:
    with pytest.raises(InterfaceMismatchError) as info:
        kind(**arguments)
    assert info.value.name == culprit
    assert any(lacks in problem for problem in info.value.missing)


@pytest.mark.parametrize(
    ("kind", "arguments", "key"),
    [
        (Pipeline, {"checks": 5}, "checks"),
        (Pipeline, {"modifiers": "modify.x"}, "modifiers"),
        (Pipeline, {"destinations": ["example.org"]}, "destinations"),
        (Pipeline, {"destinations": {"example.org": "local"}}, "destinations['example.org']"),
        (Pipeline, {"destinations": {7: REJECT}}, "destinations"),
        (Pipeline, {"tables": [REJECT]}, "tables"),
        (Pipeline, {"default": "local"}, "default"),
        (Destination, {"reject": "550 No"}, "reject"),
        (CheckSpec, {"check": RecordingCheck(), "fail_action": "ignore"}, "fail_action"),
    ],
)
def test_a_misshapen_pipeline_argument_is_refused_naming_its_key(
    kind: Callable[..., object], arguments: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        kind(**arguments)
    assert info.value.key == key


junk = st.recursive(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=8),
        st.builds(RecordingCheck),
        st.builds(MemoryTarget),
        st.builds(MapModifier),
        st.just(REJECT),
        st.just(SMTPError(550, (5, 7, 1), "No")),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=2)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([Pipeline, Destination]),
    key=st.sampled_from(
        ["checks", "modifiers", "destinations", "tables", "default", "targets", "reject"]
    ),
    value=junk,
)
def test_whatever_a_pipeline_is_built_from_it_is_refused_with_a_typed_error_or_works(
    kind: Callable[..., object], key: str, value: object
) -> None:
    if (kind is Pipeline) == (key in ("targets", "reject")):
        return  # not an argument of this kind
    outcome = built_or_refused(kind, {key: value})
    if isinstance(outcome, ConfigError):
        assert outcome.key is not None
    elif isinstance(outcome, InterfaceMismatchError):
        assert outcome.missing
    else:
        assert isinstance(outcome, Pipeline | Destination)


def built_or_refused(kind: Callable[..., object], arguments: dict[str, object]) -> object:
    try:
        return kind(**arguments)
    except MailModuleError as err:
        return err


async def test_pipelines_nest() -> None:
    inner_target = MemoryTarget()
    inner = Pipeline(
        modifiers=[MapModifier(rcpts={"alias@example.org": ["real@example.org"]})],
        default=Destination(targets=[inner_target]),
    )
    outer = Pipeline(default=Destination(targets=[inner]))
    await deliver(outer, ["alias@example.org"])
    assert inner_target.messages[0].rcpts == ["real@example.org"]


# Checks


async def test_stages_run_in_order_and_every_state_closes_once() -> None:
    check = RecordingCheck()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()]))
    await deliver(pipeline, ["b@x.example", "c@x.example"])
    assert check.calls == [
        "conn",
        "sender:a@example.org",
        "rcpt:b@x.example",
        "rcpt:c@x.example",
        "body",
        "close",
    ]


async def test_a_sender_rejection_carries_the_check_name_and_closes_states() -> None:
    check = RecordingCheck(
        "check.spf",
        results={"sender": CheckResult(reject=True, reason=SMTPError(550, (5, 7, 23), "SPF fail"))},
    )
    target = MemoryTarget()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m"), "a@x")
    assert info.value.check_name == "check.spf"
    assert check.states[0].closes == 1
    assert target.calls == []


async def test_a_recipient_rejection_refuses_only_that_recipient() -> None:
    check = RecordingCheck()
    target = MemoryTarget()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))

    async def gate(c: RecordingCheck) -> None:
        if c.calls[-1] == "rcpt:bad@x.example":
            raise SMTPError(550, (5, 1, 1), "unknown user")

    check.gate = gate
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError, match="unknown user"):
        await delivery.add_rcpt("bad@x.example")
    await delivery.add_rcpt("good@x.example")
    await delivery.body(header(), BODY)
    await delivery.commit()
    assert target.messages[0].rcpts == ["good@x.example"]


async def test_the_first_rejecting_check_in_configured_order_wins() -> None:
    first = RecordingCheck(
        "check.first",
        results={"body": CheckResult(reject=True, reason=SMTPError(550, (5, 7, 1), "first"))},
    )
    second = RecordingCheck(
        "check.second",
        results={"body": CheckResult(reject=True, reason=SMTPError(550, (5, 7, 1), "second"))},
    )
    first.delay = 0.01  # the first one answers last
    pipeline = Pipeline(checks=[first, second], default=Destination(targets=[MemoryTarget()]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("b@x.example")
    with pytest.raises(SMTPError, match="first") as info:
        await delivery.body(header(), BODY)
    assert info.value.check_name == "check.first"
    await delivery.abort()


class Unstartable(RecordingCheck):
    def __init__(self, name: str, *, delay: float) -> None:
        super().__init__(name, delay=delay)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecordingState:
        if self.delay:
            await asyncio.sleep(self.delay)
        raise SMTPError(451, (4, 7, 0), f"{self.name()} cannot start")


async def test_checks_that_cannot_start_fail_in_configured_order_and_others_close() -> None:
    late, early, fine = (
        Unstartable("check.late", delay=0.01),  # fails last, but is configured first
        Unstartable("check.early", delay=0),
        RecordingCheck("check.fine"),
    )
    pipeline = Pipeline(checks=[late, early, fine], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError, match=r"check\.late cannot start") as info:
        await pipeline.start(MsgMetadata(id="m"), "a@x")
    assert info.value.check_name == "check.late"
    assert fine.calls == ["close"]  # made, never run, closed


async def test_a_destination_check_that_cannot_start_leaves_its_sibling_checking() -> None:
    """Two destination checks join a message that has a check of its own; one cannot
    start and is ignored by its action: the other still checks each recipient."""
    own, joining = RecordingCheck("check.own"), RecordingCheck("check.joining")
    broken = CheckSpec(
        Unstartable("check.broken", delay=0), fail_action=FailAction(action="ignore")
    )
    pipeline = Pipeline(
        checks=[own],
        default=Destination(targets=[MemoryTarget()], checks=[joining, broken]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("b@x.example")
    await delivery.add_rcpt("c@x.example")
    await delivery.abort()
    assert joining.calls.count("rcpt:b@x.example") == 1
    assert joining.calls.count("rcpt:c@x.example") == 1


async def test_checks_of_one_stage_run_concurrently() -> None:
    """Each check waits until all three have started: only concurrent stages finish."""
    checks = [RecordingCheck(f"check.{i}") for i in range(3)]
    started = 0
    all_started = asyncio.Event()

    async def gate(c: RecordingCheck) -> None:
        nonlocal started
        started += 1
        if started % 3 == 0:
            all_started.set()
        await asyncio.wait_for(all_started.wait(), 5)

    for c in checks:
        c.gate = gate
    pipeline = Pipeline(checks=checks, default=Destination(targets=[MemoryTarget()]))
    await asyncio.wait_for(pipeline.start(MsgMetadata(id="m"), "a@x"), 10)
    assert started == 6  # connection and sender stages, three checks each


async def test_a_state_shared_by_two_configured_checks_is_called_once() -> None:
    check = RecordingCheck(shared_state=True)
    pipeline = Pipeline(
        checks=[check, CheckSpec(check, name="again")],
        default=Destination(targets=[MemoryTarget()]),
    )
    await deliver(pipeline, ["b@x.example"])
    assert check.calls.count("conn") == 1
    assert check.calls.count("close") == 1


async def test_quarantine_reaches_the_targets_metadata() -> None:
    check = RecordingCheck(results={"body": CheckResult(quarantine=True)})
    target = MemoryTarget()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    await deliver(pipeline, ["b@x.example"])
    assert target.messages[0].meta.quarantine


async def test_fail_actions_reject_quarantine_or_ignore_a_failure() -> None:
    failing = {"sender": CheckResult(reason=SMTPError(550, (5, 7, 1), "looks bad"))}
    for fail, outcome in (
        (FailAction(action="quarantine"), "quarantined"),
        (FailAction(action="ignore"), "clean"),
    ):
        target = MemoryTarget()
        spec = CheckSpec(RecordingCheck(results=failing), fail_action=fail)
        await deliver(Pipeline(checks=[spec], default=Destination(targets=[target])), ["b@x"])
        assert target.messages[0].meta.quarantine == (outcome == "quarantined")
    spec = CheckSpec(
        RecordingCheck("check.dnsbl", results=failing),
        fail_action=FailAction(action="reject", code=554, message="Listed"),
    )
    with pytest.raises(SMTPError) as info:
        await Pipeline(checks=[spec], default=Destination(targets=[MemoryTarget()])).start(
            MsgMetadata(id="m"), "a@x"
        )
    assert str(info.value) == "554 5.7.1 Listed"
    assert info.value.check_name == "check.dnsbl"


async def test_a_check_that_raises_is_a_temporary_failure() -> None:
    check = RecordingCheck(results={"conn": RuntimeError("bug")})
    pipeline = Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m"), "a@x")
    assert info.value.is_temporary
    assert isinstance(info.value.__cause__, RuntimeError)
    assert check.states[0].closes == 1


class SyncStageState(RecordingState):
    """A state whose sender stage forgot `async`: it returns a result, not an awaitable."""

    def check_sender(self, mail_from: str) -> CheckResult:  # type: ignore[override]
        return CheckResult(reject=True)


class AwaitableStageState(RecordingState):
    """A state whose sender stage returns an awaitable that is not a coroutine."""

    def check_sender(self, mail_from: str) -> asyncio.Future[CheckResult]:  # type: ignore[override]
        done: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
        done.set_result(CheckResult(header=(HeaderField.build("X-Seen", mail_from),)))
        return done


class StateOf(RecordingCheck):
    def __init__(self, state_type: type[RecordingState]) -> None:
        super().__init__()
        self.state_type = state_type

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecordingState:
        state = self.state_type(self)
        self.states.append(state)
        return state


async def test_a_check_stage_that_returns_no_awaitable_is_a_temporary_failure() -> None:
    check = StateOf(SyncStageState)
    pipeline = Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m"), "a@x")
    assert info.value.code == 451
    assert isinstance(info.value.__cause__, TypeError)
    assert check.states[0].closes == 1


async def test_a_check_stage_may_return_any_awaitable_as_await_would_take() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(
        checks=[StateOf(AwaitableStageState)], default=Destination(targets=[target])
    )
    await deliver(pipeline, ["b@example.org"])
    assert b"X-Seen: a@example.org\r\n" in target.messages[0].header


class Awaited:
    """An awaitable that is not iterable (it has `__await__` alone), waiting first or not."""

    def __init__(self, result: CheckResult, *, waits: bool) -> None:
        self.result = result
        self.waits = waits

    def __await__(self) -> Generator[object, None, CheckResult]:
        if self.waits:
            yield from asyncio.sleep(0).__await__()
        return self.result


class AwaitedStageState(RecordingState):
    waits = False

    def check_sender(self, mail_from: str) -> Awaited:  # type: ignore[override]
        return Awaited(
            CheckResult(header=(HeaderField.build("X-Seen", mail_from),)), waits=self.waits
        )


class WaitingAwaitedStageState(AwaitedStageState):
    waits = True


@pytest.mark.parametrize("state_type", [AwaitedStageState, WaitingAwaitedStageState])
async def test_a_check_stage_may_return_an_awaitable_that_only_has_await(
    state_type: type[RecordingState],
) -> None:
    target = MemoryTarget()
    check = StateOf(state_type)
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    await deliver(pipeline, ["b@example.org"])
    assert b"X-Seen: a@example.org\r\n" in target.messages[0].header
    assert check.states[0].closes == 1


class TypeErrorState(RecordingState):
    async def check_sender(self, mail_from: str) -> CheckResult:
        raise TypeError("the check's own bug")


async def test_a_check_raising_a_type_error_fails_with_that_error_as_the_cause() -> None:
    pipeline = Pipeline(
        checks=[StateOf(TypeErrorState)], default=Destination(targets=[MemoryTarget()])
    )
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 7, 0))
    cause = info.value.__cause__
    assert isinstance(cause, TypeError)
    assert str(cause) == "the check's own bug"


async def test_check_fields_are_added_after_body_checks_with_auth_results_on_top() -> None:
    spf = SPFAuthenticationResult(result="pass", smtp_mailfrom="josé@bücher.example")
    dkim = DKIMAuthenticationResult(
        result="fail", reason="signature verification failed", header_d="example.com"
    )
    one = RecordingCheck("check.one", results={"sender": CheckResult(auth_result=[spf])})
    two = RecordingCheck(
        "check.two",
        results={"body": CheckResult(auth_result=[dkim], header=Header([("X-Spam-Score", "1.5")]))},
    )
    target = MemoryTarget()
    pipeline = Pipeline(
        checks=[one, two], default=Destination(targets=[target]), hostname="mx.example.org"
    )
    await deliver(pipeline, ["b@x.example"])
    stored = Header.parse(target.messages[0].header)
    names = [f.name for f in stored]
    assert names == ["Authentication-Results", "X-Spam-Score", "Subject", "From"]
    field = stored.fields("Authentication-Results")[0]
    assert all(len(line) <= 78 for line in field.raw.decode().split("\r\n"))
    authserv, results = parse_authentication_results(field.value)
    assert authserv == "mx.example.org"
    assert [(r.method, r.result) for r in results] == [("spf", "pass"), ("dkim", "fail")]
    assert results[0].properties[0].value == "josé@bücher.example"


async def test_destination_checks_joining_late_see_earlier_stages_replayed() -> None:
    late = RecordingCheck("check.late")
    pipeline = Pipeline(
        destinations={"late.example": Destination(targets=[MemoryTarget()], checks=[late])},
        default=Destination(targets=[MemoryTarget()]),
    )
    await deliver(pipeline, ["first@other.example", "x@late.example"])
    assert late.calls == [
        "conn",
        "sender:a@example.org",
        "rcpt:first@other.example",
        "rcpt:x@late.example",
        "body",
        "close",
    ]


async def test_early_check_refuses_a_connection_through_the_first_refusing_check() -> None:
    class Early(RecordingCheck):
        async def check_connection(self, state: ConnState) -> None:
            if state.remote_addr.startswith("192.0.2."):
                raise SMTPError(554, (5, 7, 1), "go away")

    pipeline = Pipeline(
        checks=[Early("check.early")], default=Destination(targets=[MemoryTarget()])
    )
    await pipeline.early_check(ConnState(remote_addr="198.51.100.1:25"))
    with pytest.raises(SMTPError, match="go away") as info:
        await pipeline.early_check(ConnState(remote_addr="192.0.2.1:25"))
    assert info.value.check_name == "check.early"


# Modifiers


async def test_modifiers_rewrite_sender_then_recipients_then_body_in_order() -> None:
    mod = MapModifier(
        senders={"a@example.org": "bounce@example.org"},
        rcpts={"list@example.org": ["m1@example.org", "m2@example.org"]},
        field=("X-Modified", "yes"),
    )
    target = MemoryTarget()
    pipeline = Pipeline(modifiers=[mod], default=Destination(targets=[target]))
    meta = MsgMetadata(id="m", original_from="a@example.org")
    await deliver(pipeline, ["list@example.org"], meta=meta)
    assert mod.calls == ["sender:a@example.org", "rcpt:list@example.org", "body", "close"]
    stored = target.messages[0]
    assert stored.mail_from == "bounce@example.org"
    assert stored.rcpts == ["m1@example.org", "m2@example.org"]
    assert stored.meta.original_rcpts == {
        "m1@example.org": "list@example.org",
        "m2@example.org": "list@example.org",
    }
    assert stored.meta.original_from == "a@example.org"
    assert Header.parse(stored.header).get("x-modified") == "yes"


class _SenderToNone(MapState):
    async def rewrite_sender(self, mail_from: str) -> str:
        return None  # type: ignore[return-value]  # wrong on purpose


class SenderToNoneModifier(MapModifier):
    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> MapState:
        return _SenderToNone(self)


async def test_a_modifier_making_the_sender_no_string_fails_the_start_and_closes_states() -> None:
    first, broken = MapModifier("modify.first"), SenderToNoneModifier("modify.broken")
    pipeline = Pipeline(modifiers=[first, broken], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 0, 0))
    assert "a sender modifier" in str(info.value)
    assert "rewrite_sender returned None" in str(info.value.__cause__)
    assert first.calls == ["sender:a@example.org", "close"]
    assert broken.calls == ["close"]


async def test_an_alias_with_an_unroutable_member_is_refused_whole() -> None:
    target = MemoryTarget()
    mod = MapModifier(rcpts={"team@example.org": ["joe@example.org", "eve@elsewhere.example"]})
    pipeline = Pipeline(
        modifiers=[mod], destinations={"example.org": Destination(targets=[target])}
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError, match="No route"):
        await delivery.add_rcpt("team@example.org")
    await delivery.add_rcpt("ann@example.org")
    await delivery.body(header(), BODY)
    await delivery.commit()
    assert target.messages[0].rcpts == ["ann@example.org"]  # joe was never added


@pytest.mark.parametrize("returned", [[], "b@example.org", 5, None, [""], ["b@x", None]])
async def test_a_modifier_returning_no_list_of_recipients_refuses_it(returned: object) -> None:
    mod = MapModifier(rcpts={"gone@example.org": returned})  # type: ignore[dict-item]
    target = MemoryTarget()
    pipeline = Pipeline(modifiers=[mod], default=Destination(targets=[target]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError, match="Temporary failure in a recipient modifier") as info:
        await delivery.add_rcpt("gone@example.org")
    assert isinstance(info.value.__cause__, TypeError)
    assert "gone@example.org" in str(info.value.__cause__)
    await delivery.abort()
    assert target.calls == []  # no target ever saw the recipient


async def test_destination_modifiers_apply_only_to_their_recipients() -> None:
    local, remote = MemoryTarget("local"), MemoryTarget("remote")
    mod = MapModifier(senders={"a@example.org": "srs@example.org"}, field=("X-Dest", "remote"))
    pipeline = Pipeline(
        destinations={"example.org": Destination(targets=[local])},
        default=Destination(targets=[remote], modifiers=[mod]),
    )
    await deliver(pipeline, ["b@example.org", "c@far.example"])
    assert local.messages[0].mail_from == "a@example.org"
    assert remote.messages[0].mail_from == "srs@example.org"
    assert Header.parse(local.messages[0].header).get("x-dest") is None
    assert Header.parse(remote.messages[0].header).get("x-dest") == "remote"


# Partial delivery


async def test_body_non_atomic_reports_each_client_recipient_exactly_once() -> None:
    partial, atomic = MemoryTarget("partial", partial=True), MemoryTarget("atomic")
    partial.fail_in_body = {"m2@example.org"}
    mod = MapModifier(rcpts={"list@example.org": ["m1@example.org", "m2@example.org"]})
    pipeline = Pipeline(
        modifiers=[mod],
        destinations={"example.org": Destination(targets=[partial])},
        default=Destination(targets=[atomic]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    assert isinstance(delivery, PartialDelivery)
    for rcpt in ("list@example.org", "solo@example.org", "far@far.example"):
        await delivery.add_rcpt(rcpt)
    collector = Collector()
    await delivery.body_non_atomic(collector, header(), BODY)
    await delivery.commit()
    statuses = dict(collector.statuses)
    assert len(collector.statuses) == 3
    assert isinstance(statuses["list@example.org"], SMTPError)
    assert statuses["solo@example.org"] is None
    assert statuses["far@far.example"] is None


async def test_body_non_atomic_fails_every_recipient_of_a_failing_atomic_target() -> None:
    good, bad = MemoryTarget("good"), MemoryTarget("bad")

    async def refuse(header: Header, body: object) -> None:
        raise SMTPError(451, (4, 3, 0), "try later")

    pipeline = Pipeline(
        destinations={"bad.example": Destination(targets=[bad])},
        default=Destination(targets=[good]),
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("x@bad.example")
    await delivery.add_rcpt("y@good.example")
    bad.deliveries[0].body = refuse  # type: ignore[method-assign]  # injected fault
    collector = Collector()
    await delivery.body_non_atomic(collector, header(), BODY)
    await delivery.commit()
    statuses = dict(collector.statuses)
    assert str(statuses["x@bad.example"]) == "451 4.3.0 try later"
    assert statuses["y@good.example"] is None
    assert len(good.messages) == 1
    assert bad.deliveries[0].outcome == "aborted"


# Cancellation and logging


async def test_cancelling_the_caller_aborts_every_started_delivery(tmp_path: Path) -> None:
    memory, directory = MemoryTarget(), DirTarget(tmp_path)
    slow = RecordingCheck(results={}, delay=10)
    pipeline = Pipeline(
        destinations={
            "fast.example": Destination(targets=[memory, directory]),
            "slow.example": Destination(targets=[memory], checks=[slow]),
        },
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@x.example")
    await delivery.add_rcpt("a@fast.example")
    task = asyncio.create_task(delivery.add_rcpt("x@slow.example"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d.outcome for d in memory.deliveries] == ["aborted"]
    assert slow.states[0].closes == 1
    assert directory.pending() == directory.delivered() == []


async def test_log_lines_carry_the_message_id_and_never_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = RecordingCheck(
        results={"rcpt": RuntimeError("bug"), "sender": CheckResult(quarantine=True)}
    )
    spec = CheckSpec(failing, fail_action=FailAction(action="ignore"))
    pipeline = Pipeline(checks=[spec], default=Destination(targets=[MemoryTarget()]))
    with caplog.at_level(logging.DEBUG, logger="mailmodule.pipeline"):
        await deliver(pipeline, ["b@x.example"], meta=MsgMetadata(id="abc123"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines
    assert all("abc123" in line for line in lines)
    assert not any("Hello" in line for line in lines)
