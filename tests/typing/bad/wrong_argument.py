"""Arguments of the wrong type, or a parameter added to a seed method."""

from __future__ import annotations

from mailmodule import Buffer, Delivery, Header, PlainAuth


class BytesAuth:
    def auth_plain(self, username: bytes, password: bytes) -> None:
        pass


class ExtraParam:
    async def add_rcpt(self, rcpt_to: str, notify: list[str]) -> None:
        pass

    async def body(self, header: Header, body: Buffer) -> None:
        pass

    async def abort(self) -> None:
        pass

    async def commit(self) -> None:
        pass


auth: PlainAuth = BytesAuth()  # E: assignment: Incompatible types in assignment
delivery: Delivery = ExtraParam()  # E: assignment: Incompatible types in assignment
