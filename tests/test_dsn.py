"""Delivery status notifications: RFC 3464 reports, NOTIFY, RET, ENVID, ORCPT, and no
injection from the envelope or a failing server."""

from __future__ import annotations

import email
import email.message
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule.buffer import MemoryBuffer
from mailmodule.errors import SMTPError
from mailmodule.header import Header
from mailmodule.metadata import MailOptions, MsgMetadata, RcptOptions, Timestamp
from mailmodule.modules.queue import (
    Bouncer,
    QueueStore,
    RecipientStatus,
    Report,
    RetryPolicy,
    Scheduler,
    build_report,
)
from tests.queue_kit import START, FakeClock, ScriptedTarget, permanent, queue_message, temporary

NOW = Timestamp(int(START * 1e9))


def report_of(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def build(report: Report, *, body: bytes = b"Hi.\r\n") -> email.message.EmailMessage:
    header, content = build_report(
        report,
        Header([("Subject", "original"), ("From", "ann@example.net")]),
        MemoryBuffer(body),
        from_address="MAILER-DAEMON@mx.example.org",
        message_id="r1@mx.example.org",
        now=NOW,
    )
    return report_of(header.to_bytes() + content)


def failed(rcpt: str = "joe@example.org", err: SMTPError | None = None) -> Report:
    return Report(
        reporting_mta="mx.example.org",
        sender="ann@example.net",
        queue_id="q1",
        arrival=NOW,
        last_attempt=NOW,
        recipients=[RecipientStatus(recipient=rcpt, action="failed", error=err or permanent())],
    )


def status_blocks(msg: email.message.EmailMessage) -> list[dict[str, str]]:
    part = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    blocks = []
    for sub in part.get_payload():
        assert isinstance(sub, email.message.Message)
        blocks.append({k: str(v) for k, v in sub.items()})
    return blocks


def test_a_report_is_a_multipart_report_of_three_parts() -> None:
    msg = build(failed())
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert msg["To"] == "ann@example.net"
    assert msg["From"] == "MAILER-DAEMON@mx.example.org"
    assert msg["Auto-Submitted"] == "auto-replied"


def test_the_delivery_status_has_the_message_and_recipient_fields() -> None:
    msg = build(failed(err=SMTPError(550, (5, 1, 1), "No such user here")))
    message, rcpt = status_blocks(msg)
    assert message["Reporting-MTA"] == "dns; mx.example.org"
    assert "Arrival-Date" in message
    assert rcpt["Final-Recipient"] == "rfc822; joe@example.org"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"


def test_envid_and_orcpt_are_reported_as_given() -> None:
    report = Report(
        reporting_mta="mx.example.org",
        sender="ann@example.net",
        queue_id="q1",
        arrival=NOW,
        last_attempt=NOW,
        recipients=[
            RecipientStatus(
                recipient="joe@example.org",
                action="failed",
                error=permanent(),
                original_recipient="team@example.org",
            )
        ],
        envelope_id="env 1+2",
    )
    message, rcpt = status_blocks(build(report))
    assert message["Original-Envelope-Id"] == "env+201+2B2"
    assert rcpt["Original-Recipient"] == "rfc822; team@example.org"


def test_ret_full_returns_the_whole_message() -> None:
    report = Report(
        reporting_mta="mx.example.org",
        sender="ann@example.net",
        queue_id="q1",
        arrival=NOW,
        last_attempt=NOW,
        recipients=[RecipientStatus(recipient="joe@example.org", action="failed")],
        return_full=True,
    )
    msg = build(report, body=b"The body.\r\n")
    original = list(msg.iter_parts())[2]
    assert original.get_content_type() == "message/rfc822"
    assert b"The body." in original.as_bytes()


def test_a_diagnostic_with_line_breaks_cannot_add_fields_or_parts() -> None:
    evil = "Bad\r\nX-Injected: yes\r\n\r\n--boundary\r\nContent-Type: text/html"
    msg = build(failed(err=SMTPError(550, (5, 0, 0), evil)))
    _, rcpt = status_blocks(msg)
    assert "X-Injected" not in rcpt
    assert len(list(msg.iter_parts())) == 3
    assert "\n" not in rcpt["Diagnostic-Code"]


@given(st.text(max_size=60))
def test_no_recipient_address_breaks_the_report_fields(rcpt: str) -> None:
    msg = build(failed(rcpt=rcpt or "x"))
    blocks = status_blocks(msg)
    assert len(blocks) == 2
    assert set(blocks[1]) == {
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
        "Last-Attempt-Date",
    }
    assert not any(c < " " for c in blocks[1]["Final-Recipient"])


@given(st.text(max_size=60))
def test_no_sender_address_breaks_the_report_header(sender: str) -> None:
    report = Report(
        reporting_mta="mx.example.org",
        sender=sender or "x",
        queue_id="q1",
        arrival=NOW,
        last_attempt=NOW,
        recipients=[RecipientStatus(recipient="joe@example.org", action="failed")],
    )
    header, _ = build_report(
        report,
        Header([("Subject", "x")]),
        None,
        from_address="MAILER-DAEMON@mx.example.org",
        message_id="r@mx",
        now=NOW,
    )
    assert [f.name for f in header][:4] == ["Date", "Message-ID", "From", "To"]
    assert len(header) == 9


def test_a_non_ascii_address_is_written_as_utf8_addr_xtext() -> None:
    _, rcpt = status_blocks(build(failed(rcpt="bücher@example.org")))
    assert rcpt["Final-Recipient"] == "utf-8; b\\x{FC}cher@example.org"


# The queue sending reports


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.store = QueueStore(tmp_path / "queue")
        self.clock = FakeClock()
        self.mailbox = ScriptedTarget()
        self.target = ScriptedTarget()
        self.scheduler = Scheduler(
            store=self.store,
            target=self.target,
            policy=RetryPolicy(),
            clock=self.clock,
            bouncer=Bouncer(self.mailbox, hostname="mx.example.org", domain="example.org"),
            post_init_delay=0,
        )

    async def deliver(
        self, *rcpts: str, meta: MsgMetadata | None = None, sender: str = "ann@example.net"
    ) -> None:
        queue_message(self.store, list(rcpts), meta=meta, sender=sender)
        await self.scheduler.start()
        await self.scheduler.idle()

    async def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.scheduler.idle()


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    r = Run(tmp_path)
    yield r
    await r.scheduler.aclose()


async def test_a_permanent_failure_sends_one_report_from_the_null_sender(run: Run) -> None:
    run.target.answer = lambda rcpt: permanent()
    await run.deliver("joe@example.org")
    [dsn] = run.mailbox.committed
    assert dsn.sender == ""
    assert dsn.rcpts == ["ann@example.net"]
    msg = report_of(dsn.data)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert status_blocks(msg)[1]["Action"] == "failed"


async def test_a_message_from_the_null_sender_gets_no_report(run: Run) -> None:
    run.target.answer = lambda rcpt: permanent()
    await run.deliver("joe@example.org", sender="")
    assert run.mailbox.committed == []
    assert run.store.ids() == []


async def test_notify_never_sends_no_report(run: Run) -> None:
    meta = MsgMetadata(id="m1")
    meta.rcpt_opts["joe@example.org"] = RcptOptions(notify=("NEVER",))
    run.target.answer = lambda rcpt: permanent()
    await run.deliver("joe@example.org", meta=meta)
    assert run.mailbox.committed == []


async def test_notify_success_reports_a_delivery(run: Run) -> None:
    meta = MsgMetadata(id="m1")
    meta.rcpt_opts["joe@example.org"] = RcptOptions(notify=("SUCCESS",))
    await run.deliver("joe@example.org", meta=meta)
    [dsn] = run.mailbox.committed
    assert status_blocks(report_of(dsn.data))[1]["Action"] == "delivered"


async def test_no_notify_reports_no_delivery(run: Run) -> None:
    await run.deliver("joe@example.org")
    assert len(run.target.committed) == 1
    assert run.mailbox.committed == []


async def test_notify_delay_reports_the_first_delay_once(run: Run) -> None:
    meta = MsgMetadata(id="m1")
    meta.rcpt_opts["joe@example.org"] = RcptOptions(notify=("DELAY", "FAILURE"))
    run.target.answer = lambda rcpt: temporary()
    await run.deliver("joe@example.org", meta=meta)
    await run.later(15 * 60)
    [dsn] = run.mailbox.committed
    assert status_blocks(report_of(dsn.data))[1]["Action"] == "delayed"


async def test_the_report_names_the_address_the_client_gave_and_its_orcpt(run: Run) -> None:
    meta = MsgMetadata(id="m1", original_rcpts={"joe@example.org": "team@example.org"})
    meta.rcpt_opts["team@example.org"] = RcptOptions(
        original_recipient_type="rfc822", original_recipient="Team@Example.org"
    )
    run.target.answer = lambda rcpt: permanent()
    await run.deliver("joe@example.org", meta=meta)
    [dsn] = run.mailbox.committed
    rcpt = status_blocks(report_of(dsn.data))[1]
    assert rcpt["Final-Recipient"] == "rfc822; team@example.org"  # not what it expanded to
    assert rcpt["Original-Recipient"] == "rfc822; Team@Example.org"


async def test_ret_and_envid_of_the_message_reach_the_report(run: Run) -> None:
    meta = MsgMetadata(id="m1", smtp_opts=MailOptions(return_="FULL", envelope_id="abc"))
    run.target.answer = lambda rcpt: permanent()
    await run.deliver("joe@example.org", meta=meta)
    msg = report_of(run.mailbox.committed[0].data)
    assert status_blocks(msg)[0]["Original-Envelope-Id"] == "abc"
    assert list(msg.iter_parts())[2].get_content_type() == "message/rfc822"
