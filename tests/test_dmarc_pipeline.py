"""The pipeline's ResultsCheck hook: what DMARC needs, with no DMARC in the pipeline."""

from __future__ import annotations

import pytest

from mailmodule import (
    AuthResult,
    AuthResultProperty,
    CheckResult,
    Header,
    InterfaceMismatchError,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
)
from mailmodule.pipeline import Destination, Pipeline, parse_authentication_results
from tests.pipeline_kit import MemoryTarget, RecordingCheck

SPF = AuthResult(
    method="spf", result="pass", properties=[AuthResultProperty("smtp", "mailfrom", "a@x.org")]
)


class Verdict:
    """A ResultsCheck that records what it was given and answers `result`."""

    def __init__(self, result: CheckResult | Exception) -> None:
        self.result = result
        self.seen: list[tuple[str, tuple[AuthResult, ...], str | None]] = []

    async def check_results(
        self, msg_meta: MsgMetadata, header: Header, results: tuple[AuthResult, ...]
    ) -> CheckResult:
        self.seen.append((msg_meta.id, results, header.get("From")))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def deliver(pipeline: Pipeline) -> None:
    delivery = await pipeline.start(MsgMetadata(id="m1"), "a@x.org")
    await delivery.add_rcpt("b@y.org")
    await delivery.body(Header([("From", "a@x.org")]), MemoryBuffer(b"Hi\r\n"))
    await delivery.commit()


def pipeline(verdict: Verdict, target: MemoryTarget) -> Pipeline:
    spf = RecordingCheck("check.spf", results={"body": CheckResult(auth_result=[SPF])})
    return Pipeline(
        checks=[spf], result_checks=[verdict], default=Destination(targets=[target]), hostname="mx"
    )


async def test_a_results_check_sees_the_body_checks_results_and_adds_its_own() -> None:
    verdict = Verdict(CheckResult(auth_result=[AuthResult(method="dmarc", result="pass")]))
    target = MemoryTarget()
    await deliver(pipeline(verdict, target))
    assert verdict.seen == [("m1", (SPF,), "a@x.org")]
    field = Header.parse(target.messages[0].header).get("Authentication-Results")
    assert field is not None
    _, results = parse_authentication_results(field)
    assert [r.method for r in results] == ["spf", "dmarc"]


async def test_a_results_check_that_quarantines_sends_the_message_to_junk() -> None:
    target = MemoryTarget()
    await deliver(pipeline(Verdict(CheckResult(quarantine=True)), target))
    assert target.messages[0].meta.quarantine


async def test_a_results_check_that_rejects_refuses_the_message_with_its_reply() -> None:
    reply = SMTPError(550, (5, 7, 1), "DMARC check failed")
    target = MemoryTarget()
    with pytest.raises(SMTPError) as info:
        await deliver(pipeline(Verdict(CheckResult(reject=True, reason=reply)), target))
    assert (info.value.code, info.value.message) == (550, "DMARC check failed")
    assert not target.messages


async def test_a_results_check_that_raises_fails_the_message_for_now() -> None:
    with pytest.raises(SMTPError) as info:
        await deliver(pipeline(Verdict(RuntimeError("boom")), MemoryTarget()))
    assert info.value.code == 451


def test_a_results_check_without_the_method_is_refused() -> None:
    with pytest.raises(InterfaceMismatchError):
        Pipeline(result_checks=[object()])  # type: ignore[list-item]  # the mistake under test
