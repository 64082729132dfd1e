"""A CheckState without close(): the pipeline could never release it."""

from __future__ import annotations

from mailmodule import Buffer, CheckResult, CheckState, Header


class NoClose:
    async def check_connection(self) -> CheckResult:
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        return CheckResult()

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return CheckResult()


state: CheckState = NoClose()  # E: assignment: "NoClose" is missing following "CheckState" protocol member
