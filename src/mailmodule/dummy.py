"""`Dummy`: the module that does nothing, for tests and placeholders.

The twin of maddy's `module.Dummy`. It is always registered as "dummy" in the default
registry, both as a factory and as an instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, StatusCollector
from mailmodule.metadata import MsgMetadata

__all__ = ["Dummy"]


@final
class Dummy:
    """A module that implements Module, PlainAuth, DeliveryTarget, Table and MultiTable, and
    does nothing.

    `auth_plain` accepts anyone; `lookup` finds nothing; `lookup_multi` returns an empty
    list (maddy's returns one empty string, which reads as a match; an empty list is what
    "nothing found" means here); its deliveries accept every call and deliver nowhere.

    The module to reach for first in a test:

        >>> import asyncio
        >>> from mailmodule import Dummy, MsgMetadata, Header, MemoryBuffer
        >>> async def deliver() -> None:
        ...     delivery = await Dummy().start(MsgMetadata(id="1"), "a@example.org")
        ...     await delivery.add_rcpt("b@example.org")
        ...     await delivery.body(Header(), MemoryBuffer(b"Hi"))
        ...     await delivery.commit()
        >>> asyncio.run(deliver())

    Args (the `ModuleFactory` signature, all optional):
        mod_name: the module name, "dummy".
        inst_name: the instance name, "dummy" by default.
    """

    __slots__ = ("_inst", "_name")

    def __init__(
        self,
        mod_name: str = "dummy",
        inst_name: str = "dummy",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        self._name = mod_name
        self._inst = inst_name

    def init(self, cfg: ConfigMap) -> None:
        """Accept any configuration."""

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._inst

    def auth_plain(self, username: str, password: str) -> None:
        """Accept every username and password."""

    async def lookup(self, key: str) -> str | None:
        """Find nothing."""
        return None

    async def lookup_multi(self, key: str) -> list[str]:
        """Find nothing (maddy returns [""]; see the class docstring)."""
        return []

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        """A delivery that accepts every call and delivers nowhere."""
        return _DummyDelivery()

    def __repr__(self) -> str:
        return f"Dummy({self._name!r}, {self._inst!r})"


@final
class _DummyDelivery:
    __slots__ = ()

    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: Buffer) -> None:
        pass

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        pass

    async def abort(self) -> None:
        pass

    async def commit(self) -> None:
        pass
