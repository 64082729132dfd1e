"""Modifiers that rewrite addresses through a table: `modify.replace_rcpt` and
`modify.replace_sender`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, final

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import AddressError
from mailmodule.header import Header
from mailmodule.interfaces import MultiTable, Table
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["ReplaceAddress"]


_TABLE: Final = Setting.module(
    "table",
    "maps an address (or a domain) to its replacement(s)",
    Table,
    default_doc="required (in code: the first inline argument)",
)


@final
class ReplaceAddress(ModuleBase):
    """`modify.replace_rcpt` and `modify.replace_sender`: rewrite addresses by a table.

    Settings: `table` (or the first inline argument names an instance), looked up with the
    address in `address.for_lookup` form; when the whole address is not found, its domain
    is looked up and, when found, replaces the domain. A MultiTable expands one recipient
    into several (a sender takes the first). The module name says which address is
    rewritten: "modify.replace_rcpt" rewrites recipients, "modify.replace_sender" the
    sender.
    """

    def __init__(
        self,
        mod_name: str = "modify.replace_rcpt",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.table: Table | None = None
        self.rewrites_sender = mod_name.endswith("sender")

    SETTINGS: ClassVar = (_TABLE,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        table = self.ref(cfg, _TABLE)
        assert isinstance(table, Table)
        self.table = table

    async def replace(self, addr: str) -> list[str]:
        """The addresses `addr` becomes (itself when the table does not know it)."""
        table = self.table
        if table is None:
            return [addr]
        try:
            key = address.for_lookup(addr)
        except AddressError:
            return [addr]
        found = await self._lookup(table, key)
        if found:
            return found
        local, _, domain = key.rpartition("@")
        if not domain or not local:
            return [addr]
        domains = await self._lookup(table, domain)
        if not domains:
            return [addr]
        own_local = address.split(addr)[0]
        return [f"{own_local}@{d}" for d in domains]

    @staticmethod
    async def _lookup(table: Table, key: str) -> list[str]:
        if isinstance(table, MultiTable):
            return await table.lookup_multi(key)
        found = await table.lookup(key)
        return [] if found is None else [found]

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> _ReplaceState:
        return _ReplaceState(self)


@final
class _ReplaceState:
    def __init__(self, mod: ReplaceAddress) -> None:
        self._mod = mod

    async def rewrite_sender(self, mail_from: str) -> str:
        if not self._mod.rewrites_sender or not mail_from:
            return mail_from
        return (await self._mod.replace(mail_from))[0]

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        if self._mod.rewrites_sender:
            return [rcpt_to]
        return await self._mod.replace(rcpt_to)

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        pass

    def close(self) -> None:
        pass
