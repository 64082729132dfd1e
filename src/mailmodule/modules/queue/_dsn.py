"""Delivery status notifications (RFC 3464): the report a queue sends back to a sender.

A report is a multipart/report with three parts: a text for people, the
message/delivery-status fields (one block for the message, one per recipient) and the
original header (text/rfc822-headers) or, with RET=FULL, the whole message
(message/rfc822). With SMTPUTF8 the global forms of RFC 6533 are used.

Nothing from the envelope or from a failing server goes into a header field or the
report's fields as it came: line breaks and other control characters never pass, an
envelope ID is written as xtext, addresses that are not plain ASCII as RFC 6533's
utf-8-addr-xtext (or as UTF-8 in a global report), and diagnostic text is flattened to one
line of printable characters.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Final, Literal, final

import attrs

from mailmodule.buffer import Buffer
from mailmodule.errors import NO_ENHANCED_CODE, SMTPError
from mailmodule.header import Header
from mailmodule.metadata import Timestamp
from mailmodule.smtp import xtext_encode

__all__ = ["Action", "RecipientStatus", "Report", "build_report"]

Action = Literal["failed", "delayed", "delivered"]

#: Bodies larger than this are not returned whole even with RET=FULL: the header only.
MAX_RETURNED_BODY: Final = 1 << 20
_DIAGNOSTIC_MAX = 900  # characters of a server's text kept in Diagnostic-Code
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_NON_ASCII_OR_CONTROL = re.compile(r"[^\x20-\x7e]+")
_ADDRESS_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}
_INTROS = {
    "failed": "Your message could not be delivered to one or more recipients.",
    "delayed": "Your message could not be delivered yet to one or more recipients.\r\n"
    "Delivery is being retried; you do not need to send it again.",
    "delivered": "Your message was delivered to the recipients listed below.",
}


@final
@attrs.frozen(kw_only=True)
class RecipientStatus:
    """What happened to one recipient.

    `recipient` is the final address the queue delivered to; `original_recipient` and
    `original_recipient_type` come from the client's ORCPT= ("" when it gave none);
    `error` is the last error (None for a delivered recipient).
    """

    recipient: str
    action: Action
    error: SMTPError | None = None
    original_recipient: str = ""
    original_recipient_type: str = "rfc822"

    @property
    def status(self) -> str:
        """The RFC 3463 status: the error's enhanced code, or one made from its reply
        code; 2.0.0 when delivered."""
        err = self.error
        if err is None:
            return "2.0.0" if self.action == "delivered" else "4.0.0"
        if err.enhanced_code == NO_ENHANCED_CODE:
            return f"{err.code // 100}.0.0"
        return err.enhanced_code_str


def _statuses(value: Iterable[RecipientStatus]) -> tuple[RecipientStatus, ...]:
    return tuple(value)


@final
@attrs.frozen(kw_only=True)
class Report:
    """One report about one message, to its sender.

    `reporting_mta` is our host name; `queue_id` the queue's ID of the message;
    `envelope_id` the client's ENVID= ("" when none); `return_full` whether RET=FULL asked
    for the whole message back; `utf8` whether the message was SMTPUTF8 (the report then
    uses RFC 6533's global types).
    """

    reporting_mta: str
    sender: str
    queue_id: str
    arrival: Timestamp
    last_attempt: Timestamp
    recipients: tuple[RecipientStatus, ...] = attrs.field(converter=_statuses)
    envelope_id: str = ""
    return_full: bool = False
    utf8: bool = False

    @property
    def action(self) -> Action:
        """The action of the report as a whole: failed if any recipient failed."""
        actions = {r.action for r in self.recipients}
        if "delayed" in actions and "failed" not in actions:
            return "delayed"
        if actions == {"delivered"}:
            return "delivered"
        return "failed"


def build_report(
    report: Report,
    header: Header,
    body: Buffer | None,
    *,
    from_address: str,
    message_id: str,
    now: Timestamp,
) -> tuple[Header, bytes]:
    """The report as a message: its header and its body.

    Args:
        report: what to report.
        header: the header of the original message.
        body: the original body, returned with RET=FULL when it is at most
            `MAX_RETURNED_BODY` bytes; None to return the header only.
        from_address: the From of the report, such as "MAILER-DAEMON@mx.example.org".
        message_id: the Message-ID of the report, without angle brackets.
        now: its Date.

    Raises:
        StorageError: the original body cannot be read.
    """
    full = b""
    if report.return_full and body is not None and len(body) <= MAX_RETURNED_BODY:
        with body.open() as reader:
            full = header.to_bytes() + reader.read()
    original = full or header.to_bytes()
    parts = [
        (_text_part_header(), _human_text(report, bool(full) or not report.return_full)),
        (_status_part_header(report.utf8), _status_fields(report)),
        (_original_part_header(report.utf8, bool(full)), original),
    ]
    boundary = _boundary(parts)
    out = bytearray()
    for part_header, content in parts:
        out += b"--" + boundary + b"\r\n" + part_header.to_bytes() + content
        if not content.endswith(b"\r\n"):
            out += b"\r\n"
    out += b"--" + boundary + b"--\r\n"

    fields = [
        ("Date", email.utils.format_datetime(now.to_datetime())),
        ("Message-ID", f"<{_plain(message_id)}>"),
        ("From", f"<{_plain(from_address)}>"),
        ("To", f"<{_header_address(report.sender, report.utf8)}>"),
        ("Subject", _SUBJECTS[report.action]),
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        (
            "Content-Type",
            f'multipart/report; report-type=delivery-status; boundary="{boundary.decode()}"',
        ),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    return Header(fields), bytes(out)


def _boundary(parts: Sequence[tuple[Header, bytes]]) -> bytes:
    while True:
        boundary = f"=_report_{secrets.token_hex(12)}".encode()
        if not any(boundary in content for _, content in parts):
            return boundary


def _text_part_header() -> Header:
    return Header(
        [
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("Content-Description", "Notification"),
            ("Content-Transfer-Encoding", "8bit"),
        ]
    )


def _status_part_header(utf8: bool) -> Header:
    kind = "message/global-delivery-status" if utf8 else "message/delivery-status"
    return Header([("Content-Type", kind), ("Content-Description", "Delivery report")])


def _original_part_header(utf8: bool, full: bool) -> Header:
    if full:
        kind, what = ("message/global" if utf8 else "message/rfc822"), "Original message"
    else:
        kind, what = (
            ("message/global-headers" if utf8 else "text/rfc822-headers"),
            ("Original message header"),
        )
    return Header(
        [
            ("Content-Type", kind),
            ("Content-Description", what),
            ("Content-Transfer-Encoding", "8bit"),
        ]
    )


def _human_text(report: Report, complete: bool) -> bytes:
    lines = [
        f"This is the mail system at {_line(report.reporting_mta, True)}.",
        "",
        _INTROS[report.action],
        "",
        f"Queue ID: {_line(report.queue_id, False)}",
        f"Arrival: {email.utils.format_datetime(report.arrival.to_datetime())}",
        "",
    ]
    for r in report.recipients:
        what = {"failed": "failed", "delayed": "is delayed", "delivered": "succeeded"}[r.action]
        line = f"Delivery to {_line(r.recipient, True)} {what}"
        if r.error is not None:
            line += f": {_line(str(r.error), True)}"
        lines.append(line)
    if not complete:
        lines += ["", "The message was too large to be returned whole: its header follows."]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _status_fields(report: Report) -> bytes:
    utf8 = report.utf8
    message: list[tuple[str, str]] = []
    if report.envelope_id:
        message.append(("Original-Envelope-Id", xtext_encode(report.envelope_id)))
    message.append(("Reporting-MTA", f"dns; {_line(report.reporting_mta, utf8)}"))
    message.append(("Arrival-Date", email.utils.format_datetime(report.arrival.to_datetime())))
    blocks = [_block(message)]
    for r in report.recipients:
        fields: list[tuple[str, str]] = []
        if r.original_recipient:
            kind = r.original_recipient_type
            if not _ADDRESS_TYPE.fullmatch(kind):
                kind = "rfc822"
            fields.append(("Original-Recipient", _typed_address(r.original_recipient, kind, utf8)))
        fields.append(("Final-Recipient", _typed_address(r.recipient, "rfc822", utf8)))
        fields.append(("Action", r.action))
        fields.append(("Status", r.status))
        if r.error is not None:
            code = r.error.enhanced_code_str or r.status
            text = _line(r.error.message, utf8)[:_DIAGNOSTIC_MAX]
            fields.append(("Diagnostic-Code", f"smtp; {r.error.code} {code} {text}".rstrip()))
        fields.append(
            (
                "Last-Attempt-Date",
                email.utils.format_datetime(report.last_attempt.to_datetime()),
            )
        )
        blocks.append(_block(fields))
    return b"".join(blocks)


def _block(fields: list[tuple[str, str]]) -> bytes:
    """Fields in the order given (Header() puts its first pair on top), then a blank
    line."""
    return Header(fields).to_bytes()


def _line(text: str, utf8: bool) -> str:
    """`text` as one line: control characters (line breaks too) become a space, and
    without `utf8` anything beyond ASCII a "?"."""
    text = _CONTROLS.sub(" ", text)
    if not utf8:
        text = _NON_ASCII_OR_CONTROL.sub("?", text)
    return text.strip()


def _plain(text: str) -> str:
    """A value we made ourselves, made safe all the same."""
    return _NON_ASCII_OR_CONTROL.sub("", text)


def _header_address(address: str, utf8: bool) -> str:
    """The sender in the report's To: one line, no angle brackets of its own."""
    return _line(address, utf8).replace("<", "").replace(">", "")


def _typed_address(address: str, kind: str, utf8: bool) -> str:
    """`type; address` for a DSN field (RFC 3464 2.3.1, RFC 6533 3): printable ASCII as
    it is, anything else as utf-8-addr-xtext, or as UTF-8 in a global report."""
    if not _NON_ASCII_OR_CONTROL.search(address):
        return f"{kind}; {address}"
    if utf8 and not _CONTROLS.search(address):
        return f"utf-8; {address}"
    return "utf-8; " + "".join(_xtext_char(c) for c in address)


def _xtext_char(ch: str) -> str:
    if "\x21" <= ch <= "\x7e" and ch not in "+=\\":
        return ch
    return f"\\x{{{ord(ch):X}}}"
