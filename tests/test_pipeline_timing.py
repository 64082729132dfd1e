"""When each check answers never changes what the pipeline decides.

Checks of one stage run concurrently and finish in any order; the outcome (who refuses,
at which step, with which reply; which fields and auth results the message gets; whether
it is quarantined) must be the one of configured order, whatever the timing.
"""

from __future__ import annotations

import asyncio

from authres import SPFAuthenticationResult
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import CheckResult, Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.pipeline import Destination, Pipeline
from tests.pipeline_kit import MemoryTarget, RecordingCheck

STAGES = ("conn", "sender", "rcpt", "body")
SAYINGS = ("nothing", "field", "auth", "quarantine", "reject", "raise")


def result(saying: str, check: int, stage: str) -> CheckResult | BaseException:
    tag = f"{check}-{stage}"
    if saying == "field":
        return CheckResult(header=Header([("X-Check", tag)]))
    if saying == "auth":
        return CheckResult(auth_result=[SPFAuthenticationResult(result="pass", reason=tag)])
    if saying == "quarantine":
        return CheckResult(quarantine=True)
    if saying == "reject":
        return CheckResult(reject=True, reason=SMTPError(550, (5, 7, 1), f"refused {tag}"))
    if saying == "raise":
        return RuntimeError(f"bug {tag}")
    return CheckResult()


Config = list[dict[str, str]]  # per check: stage -> what it says


async def outcome(config: Config, delays: list[float]) -> tuple[object, ...]:
    checks = [
        RecordingCheck(
            f"check.{i}",
            results={stage: result(says, i, stage) for stage, says in sayings.items()},
            delay=delay,
        )
        for i, (sayings, delay) in enumerate(zip(config, delays, strict=True))
    ]
    target = MemoryTarget()
    pipeline = Pipeline(checks=checks, default=Destination(targets=[target]))
    step = "start"
    try:
        delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
        try:
            step = "rcpt"
            await delivery.add_rcpt("b@example.org")
            step = "body"
            await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"Hi\r\n"))
            step = "commit"
            await delivery.commit()
        finally:
            await delivery.abort()  # a no-op after commit
    except SMTPError as err:
        decided: tuple[object, ...] = (step, err.code, err.enhanced_code, err.check_name)
    else:
        stored = target.messages[0]
        decided = ("delivered", stored.header, stored.meta.quarantine)
    assert all(state.closes == 1 for check in checks for state in check.states)
    return decided


@settings(max_examples=60, deadline=None)
@given(
    config=st.lists(
        st.fixed_dictionaries({stage: st.sampled_from(SAYINGS) for stage in STAGES}),
        min_size=1,
        max_size=4,
    ),
    data=st.data(),
)
def test_the_outcome_does_not_depend_on_which_check_answers_first(
    config: Config, data: st.DataObject
) -> None:
    delays = data.draw(
        st.lists(st.sampled_from([0.0, 0.001, 0.003]), min_size=len(config), max_size=len(config))
    )
    at_once = asyncio.run(outcome(config, [0.0] * len(config)))
    timed = asyncio.run(outcome(config, delays))
    assert timed == at_once


def test_the_first_check_in_configured_order_decides_though_it_answers_last() -> None:
    config: Config = [
        {"conn": "nothing", "sender": "nothing", "rcpt": "raise", "body": "nothing"},
        {"conn": "field", "sender": "nothing", "rcpt": "reject", "body": "nothing"},
    ]
    decided = asyncio.run(outcome(config, [0.003, 0.0]))
    assert decided == ("rcpt", 451, (4, 7, 0), "check.0")
