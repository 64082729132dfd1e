"""maddy's own msgpipeline tests (internal/msgpipeline/*_test.go), ported to our pipeline.

Each test names the Go test it comes from. maddy's `sourceBlock` is our `Source`, its
`rcptBlock` our `Destination`, `perSource`/`sourceIn` our `sources`/`source_tables`,
`perRcpt`/`rcptIn` our `destinations`/`tables`, global checks and modifiers the
Pipeline's own. Where our documented behaviour deliberately differs from maddy's, the test
checks ours and its docstring says so.
"""

from __future__ import annotations

import pytest
from authres import SPFAuthenticationResult

from mailmodule import CheckResult, Header, MsgMetadata, SMTPError
from mailmodule.errors import DeliveryStateError
from mailmodule.pipeline import (
    DeliveryState,
    Destination,
    Pipeline,
    RecipientStatus,
    Source,
    parse_authentication_results,
)
from tests.pipeline_kit import (
    FaultyCheck,
    FaultyModifier,
    MapModifier,
    MapTable,
    MemoryTarget,
    RecordingCheck,
    RefusingBodyTarget,
    Stored,
    badly_closed,
)
from tests.test_pipeline import BODY, Collector, deliver, header

SENDER = "sender@example.com"
RCPTS = ["rcpt1@example.com", "rcpt2@example.com"]


def refusal(text: str) -> SMTPError:
    """A configured rejection (maddy's rejectErr), as a 5xx reply."""
    return SMTPError(550, (5, 7, 1), text)


def to(*targets: MemoryTarget) -> Destination:
    return Destination(targets=targets)


def source_to(*targets: MemoryTarget) -> Source:
    """A source that sends every recipient to `targets` (maddy's defaultRcpt)."""
    return Source(default=to(*targets))


def only(target: MemoryTarget) -> Stored:
    (stored,) = target.messages
    return stored


def assert_message(stored: Stored, mail_from: str, rcpts: list[str]) -> None:
    """maddy's CheckTestMessage: sender, recipients in any order, body, message id."""
    assert stored.mail_from == mail_from
    assert sorted(stored.rcpts) == sorted(rcpts)
    assert stored.body == b"Hello\r\n"
    assert stored.meta.id == "m1"


async def attempt(
    pipeline: Pipeline, rcpts: list[str], *, mail_from: str = SENDER
) -> tuple[str, SMTPError | None]:
    """maddy's DoTestDeliveryErr: the step that failed ("start", "rcpt", "body",
    "commit") and its error, the message aborted; ("done", None) once committed."""
    try:
        delivery = await pipeline.start(MsgMetadata(id="m1"), mail_from)
    except SMTPError as err:
        return "start", err
    async with delivery:
        step = "rcpt"
        try:
            for rcpt in rcpts:
                await delivery.add_rcpt(rcpt)
            step = "body"
            await delivery.body(header(), BODY)
            step = "commit"
            await delivery.commit()
        except SMTPError as err:
            return step, err
    return "done", None


def assert_nothing_delivered(*targets: MemoryTarget) -> None:
    for target in targets:
        assert target.messages == []
        assert all(d.outcome == "aborted" for d in target.deliveries)


# msgpipeline_test.go: routing


async def test_every_recipient_of_the_default_destination_arrives_in_one_message() -> None:
    """maddy: TestMsgPipeline_AllToTarget."""
    target = MemoryTarget()
    await deliver(Pipeline(default=to(target)), RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, RCPTS)


async def test_senders_are_routed_to_the_source_of_their_domain() -> None:
    """maddy: TestMsgPipeline_PerSourceDomainSplit."""
    org, com = MemoryTarget("target.org"), MemoryTarget("target.com")
    pipeline = Pipeline(
        sources={"example.com": source_to(com), "example.org": source_to(org)},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, RCPTS, mail_from="sender@example.com")
    await deliver(pipeline, RCPTS, mail_from="sender@example.org")
    assert_message(only(com), "sender@example.com", RCPTS)
    assert_message(only(org), "sender@example.org", RCPTS)


async def test_source_tables_are_tried_in_order_before_sender_rules() -> None:
    """maddy: TestMsgPipeline_SourceIn, without its failing table (see the next test).

    A table entry with an empty value still matches, as in maddy."""
    by_table, com = MemoryTarget("target.table"), MemoryTarget("target.com")
    empty = MapTable()
    specific = MapTable({"specific@example.com": ""})
    pipeline = Pipeline(
        source_tables=[
            (empty, Source(reject=refusal("non-matching table used"))),
            (specific, source_to(by_table)),
        ],
        sources={"example.com": source_to(com)},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, ["rcpt@example.com"], mail_from="sender@example.com")
    await deliver(pipeline, ["rcpt@example.com"], mail_from="Specific@Example.COM")
    assert_message(only(com), "sender@example.com", ["rcpt@example.com"])
    assert_message(only(by_table), "Specific@Example.COM", ["rcpt@example.com"])
    assert empty.keys == ["sender@example.com", "specific@example.com"]


async def test_a_failing_source_table_refuses_the_sender_with_451() -> None:
    """maddy: TestMsgPipeline_SourceIn (its failing table). Deliberate difference: maddy
    logs the table's error and tries the next rule; we refuse the sender with 451 rather
    than route it as if the table did not know it."""
    com = MemoryTarget("target.com")
    broken = MapTable({"sender@example.com": ""}, error=OSError("this one will fail"))
    pipeline = Pipeline(
        source_tables=[
            (MapTable(), Source(reject=refusal("non-matching table used"))),
            (broken, Source(reject=refusal("failing table used"))),
        ],
        sources={"example.com": source_to(com)},
        default_source=Source(reject=refusal("default source used")),
    )
    step, err = await attempt(pipeline, ["rcpt@example.com"])
    assert step == "start"
    assert err is not None
    assert err.code == 451
    assert isinstance(err.__cause__, OSError)
    assert com.deliveries == []


async def test_the_null_sender_takes_the_default_source() -> None:
    """maddy: TestMsgPipeline_EmptyMAILFROM."""
    target = MemoryTarget()
    await deliver(Pipeline(default=to(target)), RCPTS, mail_from="")
    assert_message(only(target), "", RCPTS)


async def test_the_null_sender_has_a_source_rule_of_its_own() -> None:
    """maddy: TestMsgPipeline_EmptyMAILFROM_ExplicitDest."""
    target = MemoryTarget()
    pipeline = Pipeline(
        sources={"": source_to(target)},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, RCPTS, mail_from="")
    assert_message(only(target), "", RCPTS)


async def test_recipients_are_routed_by_their_full_address() -> None:
    """maddy: TestMsgPipeline_PerRcptAddrSplit."""
    one, two = MemoryTarget("target1"), MemoryTarget("target2")
    pipeline = Pipeline(
        destinations={"rcpt1@example.com": to(one), "rcpt2@example.com": to(two)},
        default=Destination(reject=refusal("default destination used")),
    )
    await deliver(pipeline, ["rcpt1@example.com"], mail_from=SENDER)
    await deliver(pipeline, ["rcpt2@example.com"], mail_from=SENDER)
    assert_message(only(one), SENDER, ["rcpt1@example.com"])
    assert_message(only(two), SENDER, ["rcpt2@example.com"])


async def test_recipients_are_routed_by_their_domain() -> None:
    """maddy: TestMsgPipeline_PerRcptDomainSplit."""
    com, org = MemoryTarget("target1"), MemoryTarget("target2")
    pipeline = Pipeline(
        destinations={"example.com": to(com), "example.org": to(org)},
        default=Destination(reject=refusal("default destination used")),
    )
    await deliver(pipeline, ["rcpt1@example.com", "rcpt2@example.org"], mail_from=SENDER)
    await deliver(pipeline, ["rcpt1@example.org", "rcpt2@example.com"], mail_from=SENDER)
    assert len(com.messages) == len(org.messages) == 2
    assert_message(com.messages[0], SENDER, ["rcpt1@example.com"])
    assert_message(com.messages[1], SENDER, ["rcpt2@example.com"])
    assert_message(org.messages[0], SENDER, ["rcpt2@example.org"])
    assert_message(org.messages[1], SENDER, ["rcpt1@example.org"])


async def test_destination_tables_win_over_domain_rules() -> None:
    """maddy: TestMsgPipeline_DestInSplit, without its failing table (see the next test)."""
    by_domain, by_table = MemoryTarget("target1"), MemoryTarget("target2")
    pipeline = Pipeline(
        tables=[
            (MapTable(), Destination(reject=refusal("non-matching table used"))),
            (MapTable({"specific@example.com": ""}), to(by_table)),
        ],
        destinations={"example.com": to(by_domain)},
        default=Destination(reject=refusal("default destination used")),
    )
    await deliver(pipeline, ["rcpt1@example.com", "specific@example.com"], mail_from=SENDER)
    assert_message(only(by_domain), SENDER, ["rcpt1@example.com"])
    assert_message(only(by_table), SENDER, ["specific@example.com"])


async def test_a_failing_destination_table_refuses_the_recipient_with_451() -> None:
    """maddy: TestMsgPipeline_DestInSplit (its failing table). Deliberate difference: maddy
    logs the table's error and tries the next rule; we refuse the recipient with 451."""
    by_domain = MemoryTarget("target1")
    pipeline = Pipeline(
        tables=[
            (MapTable(), Destination(reject=refusal("non-matching table used"))),
            (MapTable(error=OSError("nope")), Destination(reject=refusal("failing table used"))),
        ],
        destinations={"example.com": to(by_domain)},
    )
    delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    async with delivery:
        with pytest.raises(SMTPError) as info:
            await delivery.add_rcpt("rcpt1@example.com")
    assert info.value.code == 451
    assert isinstance(info.value.__cause__, OSError)
    (record,) = delivery.recipients
    assert record.status is RecipientStatus.REFUSED
    assert by_domain.deliveries == []


async def test_a_sender_address_rule_wins_over_its_domain_rule() -> None:
    """maddy: TestMsgPipeline_PerSourceAddrAndDomainSplit."""
    by_addr, by_domain = MemoryTarget("target1"), MemoryTarget("target2")
    pipeline = Pipeline(
        sources={"sender1@example.com": source_to(by_addr), "example.com": source_to(by_domain)},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, ["rcpt@example.com"], mail_from="sender1@example.com")
    await deliver(pipeline, ["rcpt@example.com"], mail_from="sender2@example.com")
    assert_message(only(by_addr), "sender1@example.com", ["rcpt@example.com"])
    assert_message(only(by_domain), "sender2@example.com", ["rcpt@example.com"])


@pytest.mark.parametrize(
    ("mail_from", "why"),
    [("sender2@example.com", "domain source"), ("sender2@example.org", "default source")],
)
async def test_a_rejecting_source_refuses_the_sender_at_start(mail_from: str, why: str) -> None:
    """maddy: TestMsgPipeline_PerSourceReject."""
    target = MemoryTarget()
    pipeline = Pipeline(
        sources={
            "sender1@example.com": source_to(target),
            "example.com": Source(reject=refusal("go away, domain source")),
        },
        default_source=Source(reject=refusal("go away, default source")),
    )
    await deliver(pipeline, ["rcpt@example.com"], mail_from="sender1@example.com")
    with pytest.raises(SMTPError, match=rf"550 5\.7\.1 go away, {why}"):
        await pipeline.start(MsgMetadata(id="m2"), mail_from)
    assert_message(only(target), "sender1@example.com", ["rcpt@example.com"])
    assert len(target.deliveries) == 1


async def test_a_rejecting_destination_refuses_only_its_recipients() -> None:
    """maddy: TestMsgPipeline_PerRcptReject."""
    target = MemoryTarget()
    pipeline = Pipeline(
        destinations={
            "rcpt1@example.com": to(target),
            "example.com": Destination(reject=refusal("go away")),
        },
        default=Destination(reject=refusal("go away")),
    )
    delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    with pytest.raises(SMTPError, match=r"550 5\.7\.1 go away"):
        await delivery.add_rcpt("rcpt2@example.com")
    await delivery.add_rcpt("rcpt1@example.com")
    await delivery.body(Header(), BODY)
    await delivery.commit()
    assert_message(only(target), SENDER, ["rcpt1@example.com"])


async def test_postmaster_is_a_recipient_rule_of_its_own() -> None:
    """maddy: TestMsgPipeline_PostmasterRcpt."""
    target = MemoryTarget()
    pipeline = Pipeline(
        destinations={"postmaster": to(target), "example.com": Destination(reject=refusal("no"))},
        default=Destination(reject=refusal("no")),
    )
    await deliver(pipeline, ["postmaster"], mail_from="disappointed-user@example.com")
    assert_message(only(target), "disappointed-user@example.com", ["postmaster"])


async def test_postmaster_is_a_sender_rule_of_its_own() -> None:
    """maddy: TestMsgPipeline_PostmasterSrc."""
    target = MemoryTarget()
    pipeline = Pipeline(
        sources={"postmaster": source_to(target), "example.com": Source(reject=refusal("no"))},
        default_source=Source(reject=refusal("no")),
    )
    await deliver(pipeline, ["disappointed-user@example.com"], mail_from="postmaster")
    assert_message(only(target), "postmaster", ["disappointed-user@example.com"])


async def test_sender_rules_match_whatever_the_case() -> None:
    """maddy: TestMsgPipeline_CaseInsensetiveMatch_Src, with a target per rule to tell
    which rule matched; the target sees the sender as the client gave it."""
    pm, by_addr, by_domain = MemoryTarget("pm"), MemoryTarget("addr"), MemoryTarget("domain")
    pipeline = Pipeline(
        sources={
            "postmaster": source_to(pm),
            "sender@example.com": source_to(by_addr),
            "example.com": source_to(by_domain),
        },
        default_source=Source(reject=refusal("default source used")),
    )
    rcpt = ["disappointed-user@example.com"]
    for mail_from in ("POSTMastER", "SenDeR@EXAMPLE.com", "sender@exAMPle.com", "x@EXAMPLE.COM"):
        await deliver(pipeline, rcpt, mail_from=mail_from)
    assert_message(only(pm), "POSTMastER", rcpt)
    assert [m.mail_from for m in by_addr.messages] == ["SenDeR@EXAMPLE.com", "sender@exAMPle.com"]
    assert_message(only(by_domain), "x@EXAMPLE.COM", rcpt)


async def test_recipient_rules_match_whatever_the_case() -> None:
    """maddy: TestMsgPipeline_CaseInsensetiveMatch_Rcpt, with a target per rule; the target
    sees the recipient as the client gave it."""
    pm, by_addr, by_domain = MemoryTarget("pm"), MemoryTarget("addr"), MemoryTarget("domain")
    pipeline = Pipeline(
        destinations={
            "postmaster": to(pm),
            "sender@example.com": to(by_addr),
            "example.com": to(by_domain),
        },
        default=Destination(reject=refusal("default destination used")),
    )
    for rcpt in ("POSTMastER", "SenDeR@EXAMPLE.com", "sender@exAMPle.com", "x@EXAMPLE.COM"):
        await deliver(pipeline, [rcpt], mail_from=SENDER)
    assert_message(only(pm), SENDER, ["POSTMastER"])
    assert [m.rcpts for m in by_addr.messages] == [["SenDeR@EXAMPLE.com"], ["sender@exAMPle.com"]]
    assert_message(only(by_domain), SENDER, ["x@EXAMPLE.COM"])


async def test_recipient_rules_match_in_unicode_normal_form() -> None:
    """maddy: TestMsgPipeline_UnicodeNFC_Rcpt: a decomposed, upper-case "É" matches rules
    written with the composed "é"."""
    by_addr, by_domain = MemoryTarget("addr"), MemoryTarget("domain")
    pipeline = Pipeline(
        destinations={"rcpt@\u00e9.example.com": to(by_addr), "\u00e9.example.com": to(by_domain)},
        default=Destination(reject=refusal("default destination used")),
    )
    await deliver(pipeline, ["rcpt@E\u0301.EXAMPLE.com"], mail_from=SENDER)
    await deliver(pipeline, ["f@E\u0301.exAMPle.com"], mail_from=SENDER)
    assert_message(only(by_addr), SENDER, ["rcpt@E\u0301.EXAMPLE.com"])
    assert_message(only(by_domain), SENDER, ["f@E\u0301.exAMPle.com"])


@pytest.mark.parametrize(
    "mail_from", ["not_postmaster_but_no_at_sign", "@no_mailbox", "no_domain@"]
)
async def test_a_malformed_sender_is_refused_with_501_at_start(mail_from: str) -> None:
    """maddy: TestMsgPipeline_MalformedSource; our reply is 501 5.1.7, maddy's own."""
    target = MemoryTarget()
    pipeline = Pipeline(
        destinations={"postmaster": to(target), SENDER: to(target), "example.com": to(target)}
    )
    with pytest.raises(SMTPError) as info:
        await pipeline.start(MsgMetadata(id="m1"), mail_from)
    assert (info.value.code, info.value.enhanced_code) == (501, (5, 1, 7))
    assert target.deliveries == []


async def test_two_destinations_sharing_a_target_deliver_one_message() -> None:
    """maddy: TestMsgPipeline_TwoRcptToOneTarget."""
    target = MemoryTarget()
    pipeline = Pipeline(destinations={"example.com": to(target), "example.org": to(target)})
    rcpts = ["recipient@example.com", "recipient@example.org"]
    await deliver(pipeline, rcpts, mail_from=SENDER)
    assert_message(only(target), SENDER, rcpts)
    assert len(target.deliveries) == 1


async def test_an_alias_of_two_domains_reaches_the_target_of_each() -> None:
    """maddy: TestMsgPipeline_multi_alias."""
    org, net = MemoryTarget("target1"), MemoryTarget("target2")
    alias = MapModifier(
        rcpts={"recipient@example.com": ["recipient-1@example.org", "recipient-2@example.net"]}
    )
    pipeline = Pipeline(
        default_source=Source(
            modifiers=[alias],
            destinations={"example.org": to(org), "example.net": to(net)},
        )
    )
    await deliver(pipeline, ["recipient@example.com"], mail_from=SENDER)
    assert_message(only(org), SENDER, ["recipient-1@example.org"])
    assert_message(only(net), SENDER, ["recipient-2@example.net"])
    assert only(org).meta.original_rcpts == {
        "recipient-1@example.org": "recipient@example.com",
        "recipient-2@example.net": "recipient@example.com",
    }


# check_test.go


async def test_passing_checks_deliver_unquarantined_and_close_their_states() -> None:
    """maddy: TestMsgPipeline_Checks."""
    target = MemoryTarget()
    one, two = RecordingCheck("check1"), RecordingCheck("check2")
    pipeline = Pipeline(checks=[one, two], default=to(target))
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    assert_message(only(target), "whatever@whatever", ["whatever@whatever"])
    assert not only(target).meta.quarantine
    assert len(one.states) == len(two.states) == 1
    assert badly_closed(one) == badly_closed(two) == 0


async def test_the_auth_results_of_every_check_share_one_field_named_by_hostname() -> None:
    """maddy: TestMsgPipeline_AuthResults."""

    def spf(mail_from: str, helo: str) -> CheckResult:
        found = SPFAuthenticationResult(result="fail", smtp_mailfrom=mail_from, smtp_helo=helo)
        return CheckResult(auth_result=[found])

    target = MemoryTarget()
    one = RecordingCheck("check1", results={"body": spf("from@one.example", "helo.one")})
    two = RecordingCheck("check2", results={"body": spf("from@two.example", "helo.two")})
    pipeline = Pipeline(checks=[one, two], default=to(target), hostname="TEST-HOST")
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    (field,) = Header.parse(only(target).header).values("Authentication-Results")
    assert field.startswith("TEST-HOST;")
    authserv, results = parse_authentication_results(field)
    assert authserv.casefold() == "test-host"
    assert [r.method for r in results] == ["spf", "spf"]
    found = {p.value for r in results for p in r.properties if p.name == "mailfrom"}
    assert found == {"from@one.example", "from@two.example"}
    assert badly_closed(one) == badly_closed(two) == 0


async def test_the_header_fields_of_every_check_are_added() -> None:
    """maddy: TestMsgPipeline_Headers."""
    target = MemoryTarget()
    one = RecordingCheck("check1", results={"body": CheckResult(header=Header([("HDR1", "1")]))})
    two = RecordingCheck("check2", results={"body": CheckResult(header=Header([("HDR2", "2")]))})
    pipeline = Pipeline(checks=[one, two], default=to(target), hostname="TEST-HOST")
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    stored = Header.parse(only(target).header)
    assert (stored.get("HDR1"), stored.get("HDR2")) == ("1", "2")
    assert badly_closed(one) == badly_closed(two) == 0


def failing_check(stage: str | None) -> FaultyCheck:
    """maddy's testutils.Check failing at `stage` ("init", "conn", "sender", "rcpt",
    "body"), or at none; its reply names the stage."""
    why = refusal(f"refused at {stage}")
    check = FaultyCheck("check.err", start_error=why if stage == "init" else None)
    if stage not in (None, "init"):
        check.results[stage] = CheckResult(reject=True, reason=why)
    return check


# stage -> the step of the message it refuses at, for a check of the pipeline or a source
AT_START: list[tuple[str | None, str]] = [("init", "start"), ("conn", "start"), ("sender", "start")]
LATER: list[tuple[str | None, str]] = [("rcpt", "rcpt"), ("body", "body"), (None, "done")]


def assert_refused(
    step: str, err: SMTPError | None, stage: str | None, expected: str, *targets: MemoryTarget
) -> None:
    assert step == expected
    if stage is None:
        assert err is None
        for target in targets:
            assert_message(only(target), SENDER, RCPTS)
        return
    assert err is not None
    assert (err.code, err.message, err.check_name) == (550, f"refused at {stage}", "check.err")
    assert_nothing_delivered(*targets)


@pytest.mark.parametrize(("stage", "step"), AT_START + LATER)
async def test_a_failing_pipeline_check_refuses_at_its_stage(stage: str | None, step: str) -> None:
    """maddy: TestMsgPipeline_Globalcheck_Errors (maddy's reasons are plain errors: see
    test_a_check_reason_that_is_no_smtp_error_refuses_with_451)."""
    target = MemoryTarget()
    check = failing_check(stage)
    pipeline = Pipeline(checks=[check], default=to(target), hostname="TEST-HOST")
    assert_refused(*await attempt(pipeline, RCPTS), stage, step, target)
    assert badly_closed(check) == 0


async def test_a_check_reason_that_is_no_smtp_error_refuses_with_451() -> None:
    """maddy: TestMsgPipeline_Globalcheck_Errors, whose reasons are plain Go errors.
    Deliberate difference: maddy returns such a reason as it is; we refuse with 451 4.7.0
    naming the check, as for any fault of a check."""
    check = RecordingCheck(
        "check.err",
        results={"sender": CheckResult(reject=True, reason=RuntimeError("3"))},  # type: ignore[arg-type]  # maddy's errors.New
    )
    pipeline = Pipeline(checks=[check], default=to(MemoryTarget()))
    step, err = await attempt(pipeline, RCPTS)
    assert step == "start"
    assert err is not None
    assert (err.code, err.enhanced_code, err.check_name) == (451, (4, 7, 0), "check.err")


@pytest.mark.parametrize(("stage", "step"), AT_START + LATER)
async def test_a_failing_source_check_refuses_at_its_stage(stage: str | None, step: str) -> None:
    """maddy: TestMsgPipeline_SourceCheck_Errors."""
    target = MemoryTarget()
    check, passing = failing_check(stage), RecordingCheck("check.global")
    pipeline = Pipeline(
        checks=[passing],
        default_source=Source(checks=[check], default=to(target)),
        hostname="TEST-HOST",
    )
    assert_refused(*await attempt(pipeline, RCPTS), stage, step, target)
    assert badly_closed(check) == badly_closed(passing) == 0


@pytest.mark.parametrize(
    ("stage", "step"), [("init", "rcpt"), ("conn", "rcpt"), ("sender", "rcpt"), *LATER]
)
async def test_a_failing_destination_check_refuses_at_its_stage(
    stage: str | None, step: str
) -> None:
    """maddy: TestMsgPipeline_RcptCheck_Errors, with the failing check where its name says
    (maddy's test puts it in the source block). A destination's checks join at its first
    recipient and see the connection and sender replayed, so those refuse that recipient."""
    target = MemoryTarget()
    check = failing_check(stage)
    passing, source_check = RecordingCheck("check.global"), RecordingCheck("check.source")
    pipeline = Pipeline(
        checks=[passing],
        default_source=Source(
            checks=[source_check], default=Destination(checks=[check], targets=[target])
        ),
        hostname="TEST-HOST",
    )
    assert_refused(*await attempt(pipeline, RCPTS), stage, step, target)
    assert badly_closed(check) == badly_closed(passing) == badly_closed(source_check) == 0


# regress_test.go


def one_of_each_stage(rcpt: str = "whatever@whatever") -> list[str]:
    return ["conn", "sender:whatever@whatever", f"rcpt:{rcpt}", "body", "close"]


async def test_a_source_check_sees_each_stage_once() -> None:
    """maddy: TestMsgPipeline_Issue161."""
    first, second = RecordingCheck("check1"), RecordingCheck("check2")
    pipeline = Pipeline(
        checks=[first],
        default_source=Source(checks=[second], default=to(MemoryTarget())),
    )
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    assert second.calls == one_of_each_stage()
    assert badly_closed(first) == badly_closed(second) == 0


async def test_a_destination_check_sees_each_stage_once_though_replayed() -> None:
    """maddy: TestMsgPipeline_Issue161_2 (check1 is both a pipeline and a source check)."""
    first, second = RecordingCheck("check1"), RecordingCheck("check2")
    pipeline = Pipeline(
        checks=[first],
        default_source=Source(
            checks=[first], default=Destination(checks=[second], targets=[MemoryTarget()])
        ),
    )
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    assert second.calls == one_of_each_stage()
    assert badly_closed(first) == badly_closed(second) == 0


async def test_the_second_of_two_pipeline_checks_sees_each_stage_once() -> None:
    """maddy: TestMsgPipeline_Issue161_3."""
    first, second = RecordingCheck("check1"), RecordingCheck("check2")
    pipeline = Pipeline(checks=[first, second], default=to(MemoryTarget()))
    await deliver(pipeline, ["whatever@whatever"], mail_from="whatever@whatever")
    assert second.calls == one_of_each_stage()
    assert badly_closed(first) == badly_closed(second) == 0


# modifier_test.go


async def test_a_pipeline_modifier_rewrites_the_sender() -> None:
    """maddy: TestMsgPipeline_SenderModifier."""
    target = MemoryTarget()
    mod = MapModifier(senders={SENDER: "sender2@example.com"})
    await deliver(Pipeline(modifiers=[mod], default=to(target)), RCPTS, mail_from=SENDER)
    assert_message(only(target), "sender2@example.com", RCPTS)
    assert mod.calls.count("close") == 1


async def test_pipeline_modifiers_rewrite_the_sender_in_turn() -> None:
    """maddy: TestMsgPipeline_SenderModifier_Multiple."""
    target = MemoryTarget()
    first = MapModifier("first", senders={SENDER: "sender2@example.com"})
    second = MapModifier("second", senders={"sender2@example.com": "sender3@example.com"})
    pipeline = Pipeline(modifiers=[first, second], default=to(target))
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), "sender3@example.com", RCPTS)
    assert first.calls.count("close") == second.calls.count("close") == 1


async def test_the_source_is_chosen_by_the_sender_pipeline_modifiers_made() -> None:
    """maddy: TestMsgPipeline_SenderModifier_PreDispatch."""
    target = MemoryTarget()
    mod = MapModifier(senders={SENDER: "sender@example.org"})
    pipeline = Pipeline(
        modifiers=[mod],
        sources={"example.org": source_to(target)},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), "sender@example.org", RCPTS)
    assert mod.calls.count("close") == 1


async def test_a_source_modifier_rewrites_the_sender_once_the_source_is_chosen() -> None:
    """maddy: TestMsgPipeline_SenderModifier_PostDispatch: the new sender would take the
    rejecting default source, and does not."""
    target = MemoryTarget()
    mod = MapModifier(senders={"sender@example.org": SENDER})
    pipeline = Pipeline(
        sources={"example.org": Source(modifiers=[mod], default=to(target))},
        default_source=Source(reject=refusal("default source used")),
    )
    await deliver(pipeline, RCPTS, mail_from="sender@example.org")
    assert_message(only(target), SENDER, RCPTS)
    assert mod.calls.count("close") == 1


async def test_a_destination_modifier_rewrites_the_sender_of_its_own_deliveries() -> None:
    """maddy: TestMsgPipeline_SenderModifier_PerRcpt. Deliberate difference: maddy ignores a
    destination's sender rewrite; we honour it in that destination's deliveries only."""
    com, org = MemoryTarget("target.com"), MemoryTarget("target.org")
    mod = MapModifier(senders={SENDER: "sender2@example.com"})
    pipeline = Pipeline(
        destinations={
            "example.com": Destination(modifiers=[mod], targets=[com]),
            "example.org": Destination(modifiers=[], targets=[org]),
        }
    )
    await deliver(pipeline, ["rcpt@example.com", "rcpt@example.org"], mail_from=SENDER)
    assert_message(only(com), "sender2@example.com", ["rcpt@example.com"])
    assert_message(only(org), SENDER, ["rcpt@example.org"])
    assert mod.calls.count("close") == 1


ALIASES = {
    "rcpt1@example.com": ["rcpt1-alias@example.com"],
    "rcpt2@example.com": ["rcpt2-alias@example.com"],
}
# Turns the first alias into another; its rule for rcpt2 must never apply, since rcpt2 is
# already rcpt2-alias when it gets there.
REALIASES = {
    "rcpt1-alias@example.com": ["rcpt1-alias2@example.com"],
    "rcpt2@example.com": ["wtf@example.com"],
}
RESULT = ["rcpt1-alias2@example.com", "rcpt2-alias@example.com"]


async def test_a_pipeline_modifier_rewrites_recipients() -> None:
    """maddy: TestMsgPipeline_RcptModifier."""
    target = MemoryTarget()
    mod = MapModifier(rcpts=ALIASES)
    await deliver(Pipeline(modifiers=[mod], default=to(target)), RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, ["rcpt1-alias@example.com", "rcpt2-alias@example.com"])
    assert mod.calls.count("close") == 1


async def test_original_recipients_map_each_alias_to_the_address_the_client_gave() -> None:
    """maddy: TestMsgPipeline_RcptModifier_OriginalRcpt."""
    target = MemoryTarget()
    mod = MapModifier(rcpts=ALIASES)
    await deliver(Pipeline(modifiers=[mod], default=to(target)), RCPTS, mail_from=SENDER)
    originals = only(target).meta.original_rcpts
    assert originals is not None
    assert originals["rcpt1-alias@example.com"] == "rcpt1@example.com"
    assert originals["rcpt2-alias@example.com"] == "rcpt2@example.com"


async def test_original_recipients_see_through_pipeline_and_source_modifiers() -> None:
    """maddy: TestMsgPipeline_RcptModifier_OriginalRcpt_Multiple."""
    target = MemoryTarget()
    first, second = MapModifier("first", rcpts=ALIASES), MapModifier("second", rcpts=REALIASES)
    pipeline = Pipeline(
        modifiers=[first], default_source=Source(modifiers=[second], default=to(target))
    )
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, RESULT)
    originals = only(target).meta.original_rcpts
    assert originals is not None
    assert originals["rcpt1-alias2@example.com"] == "rcpt1@example.com"
    assert originals["rcpt2-alias@example.com"] == "rcpt2@example.com"
    assert first.calls.count("close") == second.calls.count("close") == 1


async def test_pipeline_modifiers_rewrite_recipients_in_turn() -> None:
    """maddy: TestMsgPipeline_RcptModifier_Multiple."""
    target = MemoryTarget()
    first, second = MapModifier("first", rcpts=ALIASES), MapModifier("second", rcpts=REALIASES)
    pipeline = Pipeline(modifiers=[first, second], default=to(target))
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, RESULT)
    assert first.calls.count("close") == second.calls.count("close") == 1


async def test_recipients_are_routed_by_what_pipeline_and_source_modifiers_made() -> None:
    """maddy: TestMsgPipeline_RcptModifier_PreDispatch."""
    target = MemoryTarget()
    first, second = MapModifier("first", rcpts=ALIASES), MapModifier("second", rcpts=REALIASES)
    pipeline = Pipeline(
        modifiers=[first],
        default_source=Source(
            modifiers=[second],
            destinations={
                "rcpt2-alias@example.com": to(target),
                "rcpt1-alias2@example.com": to(target),
            },
            default=Destination(reject=refusal("default destination used")),
        ),
    )
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, RESULT)
    assert first.calls.count("close") == second.calls.count("close") == 1


async def test_a_destination_modifier_rewrites_recipients_after_routing() -> None:
    """maddy: TestMsgPipeline_RcptModifier_PostDispatch: the new addresses are not routed
    again (their rule would reject them)."""
    target = MemoryTarget()
    mod = MapModifier(
        rcpts={
            "rcpt1@example.com": ["rcpt1@example.org"],
            "rcpt2@example.com": ["rcpt2@example.org"],
        }
    )
    pipeline = Pipeline(
        destinations={
            "example.com": Destination(modifiers=[mod], targets=[target]),
            "example.org": Destination(reject=refusal("wrong destination used")),
        },
        default=Destination(reject=refusal("default destination used")),
    )
    await deliver(pipeline, RCPTS, mail_from=SENDER)
    assert_message(only(target), SENDER, ["rcpt1@example.org", "rcpt2@example.org"])
    assert mod.calls.count("close") == 1


def assert_modifier_refused(
    step: str, err: SMTPError | None, mod: FaultyModifier, expected: str, target: MemoryTarget
) -> None:
    """A modifier's plain exception refuses the message with 451, its cause chained."""
    assert step == expected
    if expected == "done":
        assert err is None
        assert_message(only(target), SENDER, RCPTS)
        return
    assert err is not None
    assert err.code == 451
    assert err.__cause__ is mod.error
    assert_nothing_delivered(target)


MODIFIER_STAGES = [
    ("init", "start"),
    ("sender", "start"),
    ("rcpt", "rcpt"),
    ("body", "body"),
    (None, "done"),
]


@pytest.mark.parametrize(("stage", "step"), MODIFIER_STAGES)
async def test_a_failing_pipeline_modifier_refuses_at_its_stage(
    stage: str | None, step: str
) -> None:
    """maddy: TestMsgPipeline_GlobalModifier_Errors."""
    target = MemoryTarget()
    mod = FaultyModifier(fail={stage} if stage else set())
    pipeline = Pipeline(modifiers=[mod], default=to(target))
    assert_modifier_refused(*await attempt(pipeline, RCPTS), mod, step, target)
    assert mod.badly_closed() == 0


@pytest.mark.parametrize(("stage", "step"), MODIFIER_STAGES)
async def test_a_failing_source_modifier_refuses_at_its_stage(stage: str | None, step: str) -> None:
    """maddy: TestMsgPipeline_SourceModifier_Errors."""
    target = MemoryTarget()
    mod, passing = FaultyModifier(fail={stage} if stage else set()), FaultyModifier("global")
    pipeline = Pipeline(
        modifiers=[passing], default_source=Source(modifiers=[mod], default=to(target))
    )
    assert_modifier_refused(*await attempt(pipeline, RCPTS), mod, step, target)
    assert mod.badly_closed() == passing.badly_closed() == 0


def destination_modifier_pipeline(
    mod: FaultyModifier, target: MemoryTarget
) -> tuple[Pipeline, FaultyModifier, FaultyModifier]:
    passing, source_mod = FaultyModifier("global"), FaultyModifier("source")
    pipeline = Pipeline(
        modifiers=[passing],
        default_source=Source(
            modifiers=[source_mod], default=Destination(modifiers=[mod], targets=[target])
        ),
    )
    return pipeline, passing, source_mod


@pytest.mark.parametrize(("stage", "step"), [("init", "rcpt"), ("rcpt", "rcpt"), (None, "done")])
async def test_a_failing_destination_modifier_refuses_at_its_stage(
    stage: str | None, step: str
) -> None:
    """maddy: TestMsgPipeline_RcptModifier_Errors."""
    target = MemoryTarget()
    mod = FaultyModifier(fail={stage} if stage else set())
    pipeline, passing, source_mod = destination_modifier_pipeline(mod, target)
    assert_modifier_refused(*await attempt(pipeline, RCPTS), mod, step, target)
    assert mod.badly_closed() == passing.badly_closed() == source_mod.badly_closed() == 0


@pytest.mark.parametrize(("stage", "step"), [("sender", "rcpt"), ("body", "body")])
async def test_a_destination_modifier_failing_on_sender_or_body_refuses_too(
    stage: str, step: str
) -> None:
    """maddy: TestMsgPipeline_RcptModifier_Errors, the stages it skips. Deliberate
    difference: maddy never calls a destination's modifiers for the sender or the body; we
    do (when its first recipient arrives, and for its own header copy), so their failures
    refuse that recipient or the body."""
    target = MemoryTarget()
    mod = FaultyModifier(fail={stage})
    pipeline, passing, source_mod = destination_modifier_pipeline(mod, target)
    assert_modifier_refused(*await attempt(pipeline, RCPTS), mod, step, target)
    assert mod.badly_closed() == passing.badly_closed() == source_mod.badly_closed() == 0


# bodynonatomic_test.go


async def test_body_non_atomic_reports_a_target_failure_for_that_recipient_only() -> None:
    """maddy: TestMsgPipeline_BodyNonAtomic."""
    target = MemoryTarget("target.partial", partial=True)
    target.fail_in_body.add("tester@example.org")
    pipeline = Pipeline(default=to(target))
    collector = Collector()
    delivery = await pipeline.start(MsgMetadata(id="m1"), "sender@example.org")
    await delivery.add_rcpt("tester@example.org")
    await delivery.add_rcpt("tester2@example.org")
    await delivery.body_non_atomic(collector, header(), BODY)
    await delivery.commit()
    statuses = dict(collector.statuses)
    failure = statuses["tester@example.org"]
    assert isinstance(failure, SMTPError)
    assert (failure.code, failure.target_name) == (452, "target.partial")
    assert "over quota" in failure.message
    assert statuses["tester2@example.org"] is None
    assert [r.status for r in delivery.recipients] == [
        RecipientStatus.FAILED,
        RecipientStatus.DELIVERED,
    ]


async def test_body_non_atomic_reports_an_alias_failure_under_the_address_given() -> None:
    """maddy: TestMsgPipeline_BodyNonAtomic_ModifiedRcpt. Deliberate difference: once every
    recipient failed, only abort is left (maddy lets Commit do nothing)."""
    target = MemoryTarget("target.partial", partial=True)
    target.fail_in_body.add("tester-alias@example.org")
    alias = MapModifier(rcpts={"tester@example.org": ["tester-alias@example.org"]})
    pipeline = Pipeline(modifiers=[alias], default=to(target))
    collector = Collector()
    delivery = await pipeline.start(MsgMetadata(id="m1"), "sender@example.org")
    await delivery.add_rcpt("tester@example.org")
    await delivery.body_non_atomic(collector, header(), BODY)
    ((rcpt, failure),) = collector.statuses
    assert rcpt == "tester@example.org"
    assert isinstance(failure, SMTPError)
    assert "tester-alias@example.org is over quota" in failure.message
    assert delivery.state is DeliveryState.FAILED
    await delivery.abort()
    assert target.messages == []


async def test_body_non_atomic_fails_every_recipient_of_an_atomic_target_that_refuses() -> None:
    """maddy: TestMsgPipeline_BodyNonAtomic_ExpandAtomic. Deliberate difference: with every
    recipient failed, commit is refused (503 5.5.1) and only abort is left."""
    partial = MemoryTarget("target.partial", partial=True)
    partial.fail_in_body.add("tester@example.org")
    atomic = RefusingBodyTarget(error=SMTPError(554, (5, 3, 0), "go away"))
    pipeline = Pipeline(default=to(partial, atomic))
    collector = Collector()
    delivery = await pipeline.start(MsgMetadata(id="m1"), "sender@example.org")
    await delivery.add_rcpt("tester@example.org")
    await delivery.add_rcpt("tester2@example.org")
    await delivery.body_non_atomic(collector, header(), BODY)
    statuses = dict(collector.statuses)
    assert set(statuses) == {"tester@example.org", "tester2@example.org"}
    first, second = statuses["tester@example.org"], statuses["tester2@example.org"]
    assert isinstance(first, SMTPError)
    assert first.target_name in ("target.partial", "target.refusing")
    assert isinstance(second, SMTPError)
    assert (second.code, second.message, second.target_name) == (554, "go away", "target.refusing")
    with pytest.raises(DeliveryStateError) as info:
        await delivery.commit()
    assert (info.value.code, info.value.enhanced_code) == (503, (5, 5, 1))
    await delivery.abort()
    assert partial.messages == atomic.messages == []
    assert all(d.outcome == "aborted" for d in partial.deliveries)
