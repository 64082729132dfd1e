"""Go's (value, bool, error) lookup is `value | None`, and rewrite_rcpt returns a list."""

from __future__ import annotations

from mailmodule import Buffer, Header, ModifierState, MultiTable


class TupleTable:
    async def lookup_multi(self, key: str) -> tuple[str, bool]:
        return "", False


class OneRcpt:
    async def rewrite_sender(self, mail_from: str) -> str:
        return mail_from

    async def rewrite_rcpt(self, rcpt_to: str) -> str:
        return rcpt_to

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        pass

    def close(self) -> None:
        pass


table: MultiTable = TupleTable()  # E: assignment: Incompatible types in assignment
state: ModifierState = OneRcpt()  # E: assignment: Incompatible types in assignment
