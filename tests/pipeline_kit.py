"""Real, small modules for pipeline tests: they record what happened to them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import attrs

from mailmodule import (
    Buffer,
    CheckResult,
    ConfigMap,
    Delivery,
    Header,
    MsgMetadata,
    StatusCollector,
)
from mailmodule.buffer import read_all


class Named:
    def __init__(self, name: str) -> None:
        self._name = name

    def init(self, cfg: ConfigMap) -> None:
        pass

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._name


# Checks


Hook = Callable[[str], CheckResult | None]


class RecordingState:
    def __init__(self, check: RecordingCheck) -> None:
        self.check = check
        self.closes = 0

    async def _stage(self, stage: str, arg: str = "") -> CheckResult:
        self.check.calls.append(f"{stage}:{arg}" if arg else stage)
        if self.check.delay:
            await asyncio.sleep(self.check.delay)
        if self.check.gate is not None:
            await self.check.gate(self.check)
        result = self.check.results.get(stage)
        if isinstance(result, BaseException):
            raise result
        return result if result is not None else CheckResult()

    async def check_connection(self) -> CheckResult:
        return await self._stage("conn")

    async def check_sender(self, mail_from: str) -> CheckResult:
        return await self._stage("sender", mail_from)

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return await self._stage("rcpt", rcpt_to)

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return await self._stage("body")

    def close(self) -> None:
        self.closes += 1
        self.check.calls.append("close")


class RecordingCheck(Named):
    """A check whose stage results are set per stage ("conn", "sender", "rcpt", "body")."""

    def __init__(
        self,
        name: str = "check.rec",
        *,
        results: Mapping[str, CheckResult | BaseException] | None = None,
        delay: float = 0.0,
        shared_state: bool = False,
    ) -> None:
        super().__init__(name)
        self.results: dict[str, CheckResult | BaseException] = dict(results or {})
        self.delay = delay
        self.calls: list[str] = []
        self.states: list[RecordingState] = []
        self.shared = RecordingState(self) if shared_state else None
        self.gate: Callable[[RecordingCheck], Awaitable[None]] | None = None

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecordingState:
        state = self.shared or RecordingState(self)
        self.states.append(state)
        return state


# Modifiers


class MapState:
    def __init__(self, mod: MapModifier) -> None:
        self.mod = mod

    async def rewrite_sender(self, mail_from: str) -> str:
        self.mod.calls.append(f"sender:{mail_from}")
        return self.mod.senders.get(mail_from, mail_from)

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        self.mod.calls.append(f"rcpt:{rcpt_to}")
        return self.mod.rcpts.get(rcpt_to, [rcpt_to])

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        self.mod.calls.append("body")
        if self.mod.field is not None:
            header.add(*self.mod.field)

    def close(self) -> None:
        self.mod.calls.append("close")


class MapModifier(Named):
    def __init__(
        self,
        name: str = "modify.map",
        *,
        senders: dict[str, str] | None = None,
        rcpts: dict[str, list[str]] | None = None,
        field: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(name)
        self.senders = senders or {}
        self.rcpts = rcpts or {}
        self.field = field
        self.calls: list[str] = []

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> MapState:
        return MapState(self)


# Targets


@attrs.define
class Stored:
    meta: MsgMetadata
    mail_from: str
    rcpts: list[str]
    header: bytes
    body: bytes


class MemoryDelivery:
    def __init__(self, target: MemoryTarget, meta: MsgMetadata, mail_from: str) -> None:
        self.target, self.meta, self.mail_from = target, meta, mail_from
        self.rcpts: list[str] = []
        self.pending: Stored | None = None
        self.outcome = "open"

    async def add_rcpt(self, rcpt_to: str) -> None:
        self.target.calls.append(f"add_rcpt:{rcpt_to}")
        if rcpt_to in self.target.refuse:
            from mailmodule import SMTPError

            raise SMTPError(550, (5, 1, 1), f"no mailbox {rcpt_to}")
        if rcpt_to not in self.rcpts:
            self.rcpts.append(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        self.target.calls.append("body")
        self.pending = Stored(
            self.meta, self.mail_from, list(self.rcpts), header.to_bytes(), read_all(body)
        )

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        self.target.calls.append("body_non_atomic")
        await self.body(header, body)
        for rcpt in self.rcpts:
            if rcpt in self.target.fail_in_body:
                from mailmodule import SMTPError

                c.set_status(rcpt, SMTPError(452, (4, 2, 2), f"{rcpt} is over quota"))

    async def commit(self) -> None:
        self.target.calls.append("commit")
        assert self.pending is not None
        self.target.messages.append(self.pending)
        self.outcome = "committed"

    async def abort(self) -> None:
        self.target.calls.append("abort")
        self.pending = None
        self.outcome = "aborted"


class MemoryTarget(Named):
    """Keeps committed messages in `messages`; nothing is visible before commit."""

    def __init__(self, name: str = "target.memory", *, partial: bool = False) -> None:
        super().__init__(name)
        self.messages: list[Stored] = []
        self.calls: list[str] = []
        self.deliveries: list[MemoryDelivery] = []
        self.refuse: set[str] = set()
        self.fail_in_body: set[str] = set()
        self.partial = partial

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        self.calls.append(f"start:{mail_from}")
        d = MemoryDelivery(self, msg_meta, mail_from)
        self.deliveries.append(d)
        if self.partial:
            return d
        return _AtomicOnly(d)


class _AtomicOnly:
    """The same delivery without body_non_atomic."""

    def __init__(self, inner: MemoryDelivery) -> None:
        self.inner = inner

    async def add_rcpt(self, rcpt_to: str) -> None:
        await self.inner.add_rcpt(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        await self.inner.body(header, body)

    async def commit(self) -> None:
        await self.inner.commit()

    async def abort(self) -> None:
        await self.inner.abort()


class DirDelivery:
    def __init__(self, target: DirTarget, meta: MsgMetadata) -> None:
        self.target, self.meta = target, meta
        self.tmp: Path | None = None

    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: Buffer) -> None:
        self.tmp = self.target.root / "tmp" / f"{self.meta.id}-{id(self)}"
        self.tmp.write_bytes(header.to_bytes() + read_all(body))

    async def commit(self) -> None:
        assert self.tmp is not None
        os.replace(self.tmp, self.target.root / "new" / self.tmp.name)

    async def abort(self) -> None:
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()


class DirTarget(Named):
    """Writes into tmp/ on body, moves to new/ on commit, removes on abort (maildir-like)."""

    def __init__(self, root: Path, name: str = "target.dir") -> None:
        super().__init__(name)
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "new").mkdir(parents=True, exist_ok=True)

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return DirDelivery(self, msg_meta)

    def delivered(self) -> list[str]:
        return sorted(os.listdir(self.root / "new"))

    def pending(self) -> list[str]:
        return sorted(os.listdir(self.root / "tmp"))


# Fakes for the ports of maddy's msgpipeline tests (internal/testutils there).


class MapTable:
    """A table of fixed entries that records the keys it was asked for (maddy's
    testutils.Table); with `error` set, every lookup raises it instead."""

    def __init__(
        self, entries: Mapping[str, str] | None = None, *, error: Exception | None = None
    ) -> None:
        self.entries = dict(entries or {})
        self.error = error
        self.keys: list[str] = []

    async def lookup(self, key: str) -> str | None:
        self.keys.append(key)
        if self.error is not None:
            raise self.error
        return self.entries.get(key)


class FaultyCheck(RecordingCheck):
    """A RecordingCheck that cannot make a state while `start_error` is set (maddy's
    testutils.Check.InitErr)."""

    def __init__(self, name: str = "check.faulty", *, start_error: Exception | None = None) -> None:
        super().__init__(name)
        self.start_error = start_error

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecordingState:
        if self.start_error is not None:
            raise self.start_error
        return await super().check_state_for_msg(msg_meta)


def badly_closed(check: RecordingCheck) -> int:
    """How many of `check`'s states were not closed exactly once."""
    return sum(1 for state in check.states if state.closes != 1)


class FaultyModState:
    def __init__(self, mod: FaultyModifier) -> None:
        self.mod = mod
        self.closes = 0

    def _stage(self, stage: str) -> None:
        self.mod.calls.append(stage)
        if stage in self.mod.fail:
            raise self.mod.error

    async def rewrite_sender(self, mail_from: str) -> str:
        self._stage("sender")
        return self.mod.senders.get(mail_from, mail_from)

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        self._stage("rcpt")
        return self.mod.rcpts.get(rcpt_to, [rcpt_to])

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        self._stage("body")

    def close(self) -> None:
        self.closes += 1


class FaultyModifier(Named):
    """A modifier that raises `error` at each stage named in `fail` ("init", "sender",
    "rcpt", "body"), else rewrites as MapModifier does; it keeps every state it made
    (maddy's testutils.Modifier with InitErr, MailFromErr, RcptToErr, BodyErr)."""

    def __init__(
        self,
        name: str = "modify.faulty",
        *,
        fail: set[str] | None = None,
        error: Exception | None = None,
        senders: dict[str, str] | None = None,
        rcpts: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(name)
        self.fail = set(fail or ())
        self.error = error if error is not None else RuntimeError(f"{name} failed")
        self.senders = senders or {}
        self.rcpts = rcpts or {}
        self.calls: list[str] = []
        self.states: list[FaultyModState] = []

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> FaultyModState:
        self.calls.append("init")
        if "init" in self.fail:
            raise self.error
        state = FaultyModState(self)
        self.states.append(state)
        return state

    def badly_closed(self) -> int:
        """How many of the states made were not closed exactly once."""
        return sum(1 for state in self.states if state.closes != 1)


class _RefusingBody:
    def __init__(self, inner: Delivery, error: Exception) -> None:
        self.inner, self.error = inner, error

    async def add_rcpt(self, rcpt_to: str) -> None:
        await self.inner.add_rcpt(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        raise self.error

    async def commit(self) -> None:
        await self.inner.commit()

    async def abort(self) -> None:
        await self.inner.abort()


class RefusingBodyTarget(MemoryTarget):
    """A MemoryTarget (atomic only) whose deliveries refuse every body with `error`
    (maddy's testutils.Target.BodyErr)."""

    def __init__(self, name: str = "target.refusing", *, error: Exception) -> None:
        super().__init__(name)
        self.error = error

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _RefusingBody(await super().start(msg_meta, mail_from), self.error)
