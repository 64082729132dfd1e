"""Sending delivery status notifications for queued messages, as their senders asked."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import final

from mailmodule.buffer import MemoryBuffer
from mailmodule.errors import SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import DeliveryTarget
from mailmodule.metadata import MailOptions, MsgMetadata, RcptOptions, Timestamp, generate_msg_id
from mailmodule.modules.queue._dsn import Action, RecipientStatus, Report, build_report
from mailmodule.modules.queue._protocol import StoredMessage

__all__ = ["Bouncer", "Outcome", "rcpt_options", "wants_report"]

_log = logging.getLogger("mailmodule.modules.queue")

#: One recipient's outcome of an attempt: the final address, what happened, the error.
Outcome = tuple[str, Action, SMTPError | None]

_NOTIFY_OF: dict[Action, str] = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS"}


def rcpt_options(meta: MsgMetadata | None, rcpt: str) -> RcptOptions | None:
    """The RCPT TO parameters the client gave for the address that became `rcpt`."""
    if meta is None:
        return None
    client = (meta.original_rcpts or {}).get(rcpt, rcpt)
    return meta.rcpt_opts.get(client) or meta.rcpt_opts.get(rcpt)


def wants_report(opts: RcptOptions | None, action: Action) -> bool:
    """Whether NOTIFY= asks for a report of `action` (RFC 3461 4.1): without NOTIFY only
    for failures; never with NEVER."""
    notify = () if opts is None else opts.notify
    if not notify:
        return action == "failed"
    return _NOTIFY_OF[action] in notify


@final
class Bouncer:
    """Builds the reports of a queue and delivers them to a target (maddy's `bounce`).

    Reports go from the null sender, so a report that cannot be delivered is never
    reported on again; a message from the null sender gets no report at all.

    Args:
        target: where reports are delivered (a mailbox, another queue, ...).
        hostname: our name, the Reporting-MTA.
        domain: the domain of the reports' From (MAILER-DAEMON@domain) and Message-ID.
    """

    def __init__(self, target: DeliveryTarget, *, hostname: str, domain: str) -> None:
        self.target = target
        self.hostname = hostname
        self.domain = domain

    async def report(
        self, message: StoredMessage, outcomes: Sequence[Outcome], *, now: Timestamp
    ) -> bool:
        """Send one report about the `outcomes` whose recipients asked for one.

        Failures are logged, never raised: a report is not worth losing the queue's own
        work over. Final-Recipient shows the address the client gave (as maddy does), so
        that a report does not reveal what an alias expanded to.

        Returns:
            Whether a report was sent.
        """
        meta = message.meta
        if not meta.from_:
            return False
        msg_meta = meta.msg_meta
        statuses = []
        for rcpt, action, error in outcomes:
            opts = rcpt_options(msg_meta, rcpt)
            if not wants_report(opts, action):
                continue
            shown = (msg_meta.original_rcpts or {}).get(rcpt, rcpt) if msg_meta else rcpt
            statuses.append(
                RecipientStatus(
                    recipient=shown,
                    action=action,
                    error=error,
                    original_recipient="" if opts is None else opts.original_recipient,
                    original_recipient_type=(
                        "rfc822" if opts is None else opts.original_recipient_type or "rfc822"
                    ),
                )
            )
        if not statuses:
            return False
        smtp_opts = MailOptions() if msg_meta is None else msg_meta.smtp_opts
        report = Report(
            reporting_mta=self.hostname,
            sender=meta.from_,
            queue_id=message.id,
            arrival=meta.first_attempt,
            last_attempt=meta.last_attempt,
            recipients=statuses,
            envelope_id=smtp_opts.envelope_id,
            return_full=smtp_opts.return_ == "FULL",
            utf8=smtp_opts.utf8,
        )
        report_id = generate_msg_id()
        try:
            header, body = build_report(
                report,
                message.header,
                message.body,
                from_address=f"MAILER-DAEMON@{self.domain}",
                message_id=f"{report_id}@{self.domain}",
                now=now,
            )
            await self._deliver(report_id, smtp_opts, meta.from_, header, body)
        except Exception as exc:
            _log.error("queue msg %s: cannot send the delivery report: %s", message.id, exc)
            return False
        _log.info(
            "queue msg %s: %s report %s sent to %r",
            message.id,
            report.action,
            report_id,
            meta.from_,
        )
        return True

    async def _deliver(
        self, report_id: str, opts: MailOptions, to: str, header: Header, body: bytes
    ) -> None:
        meta = MsgMetadata(
            id=report_id, smtp_opts=MailOptions(utf8=opts.utf8, require_tls=opts.require_tls)
        )
        delivery = await self.target.start(meta, "")
        try:
            await delivery.add_rcpt(to)
            await delivery.body(header, MemoryBuffer(body))
        except BaseException:
            await delivery.abort()
            raise
        await delivery.commit()
