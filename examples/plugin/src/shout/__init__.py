"""A third-party mailmodule plugin: `check.shout` and `target.outbox`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailmodule import Buffer, CheckResult, ConfigMap, Header, MsgMetadata, SMTPError

__all__ = ["OutboxTarget", "ShoutCheck"]


class _Module:
    def __init__(self, mod_name: str, inst_name: str, aliases: list[str], args: list[str]):
        self._name, self._inst = mod_name, inst_name

    def init(self, cfg: ConfigMap) -> None:
        pass

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._inst


class _ShoutState:
    async def check_connection(self) -> CheckResult:
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        return CheckResult()

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        subject = header.get("Subject", "")
        if subject.isupper() and len(subject) > 3:
            return CheckResult(quarantine=True, header=Header([("X-Shouting", "yes")]))
        return CheckResult()

    def close(self) -> None:
        pass


class ShoutCheck(_Module):
    """`check.shout`: quarantines messages whose subject is all capitals."""

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _ShoutState:
        return _ShoutState()


class _OutboxDelivery:
    def __init__(self, outbox: OutboxTarget) -> None:
        self._outbox = outbox
        self._rcpts: list[str] = []
        self._message: bytes | None = None
        self._failed = False

    async def add_rcpt(self, rcpt_to: str) -> None:
        if rcpt_to.lower() not in self._rcpts:
            self._rcpts.append(rcpt_to.lower())

    async def body(self, header: Header, body: Buffer) -> None:
        try:
            with body.open() as reader:
                self._message = header.to_bytes() + reader.read()
        except Exception:
            self._failed = True
            raise

    async def abort(self) -> None:
        self._message = None

    async def commit(self) -> None:
        if self._failed or self._message is None:
            raise SMTPError(451, (4, 3, 0), "nothing to commit")
        self._outbox.messages.append((tuple(self._rcpts), self._message))


class OutboxTarget(_Module):
    """`target.outbox`: keeps delivered messages in memory, in `messages`."""

    def __init__(self, mod_name: str, inst_name: str, aliases: list[str], args: list[str]):
        super().__init__(mod_name, inst_name, aliases, args)
        self.messages: list[tuple[tuple[str, ...], bytes]] = []

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> _OutboxDelivery:
        return _OutboxDelivery(self)


if TYPE_CHECKING:  # mypy proves both keep mailmodule's Protocols
    from mailmodule import Check, DeliveryTarget, ModuleFactory

    _check: Check = ShoutCheck("check.shout", "shout", [], [])
    _target: DeliveryTarget = OutboxTarget("target.outbox", "outbox", [], [])
    _factories: list[ModuleFactory] = [ShoutCheck, OutboxTarget]
