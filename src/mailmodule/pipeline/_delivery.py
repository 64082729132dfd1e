"""One message in a pipeline, recipient by recipient.

Each recipient the client gives gets a record: what the modifiers made of it and which
targets took which address for it. Two rules follow from the records:

- a recipient refused to the client is in no target that commits: a target that took an
  address for it, and for no recipient still accepted, has its delivery started again
  without that address before it gets the body;
- an accepted recipient is in every target its route names, or it fails: the whole
  message with `body`, that recipient alone with `body_non_atomic` (and then, again, in
  no target that commits).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.errors import AddressError, DeliveryStateError, SMTPError
from mailmodule.header import Header, HeaderField
from mailmodule.interfaces import (
    Delivery,
    DeliveryTarget,
    ModifierState,
    PartialDelivery,
    StatusCollector,
)
from mailmodule.metadata import MsgMetadata
from mailmodule.pipeline import _build
from mailmodule.pipeline._authresults import (
    format_authentication_results,
    remove_forged_authentication_results,
)
from mailmodule.pipeline._checks import CheckRunner, name_of
from mailmodule.pipeline._eager import begin_to_completion, drive, to_completion
from mailmodule.pipeline._errors import as_smtp, fresh, own_failure
from mailmodule.pipeline._modifiers import ModifierRunner
from mailmodule.pipeline._routes import Destination, Source
from mailmodule.pipeline._state import AFTER, DeliveryState, Step, advance

if TYPE_CHECKING:
    from mailmodule.pipeline._pipeline import Pipeline

__all__ = [
    "ABORT_TIMEOUT",
    "PipelineDelivery",
    "RecipientRecord",
    "RecipientStatus",
    "TargetOutcome",
]

_log = logging.getLogger("mailmodule.pipeline")

#: The longest a target may take to abort before the pipeline gives up on it.
ABORT_TIMEOUT: Final = 30.0

# The Authentication-Results fields pipelines of this process added to the message now
# being handed down: a nested pipeline with the same authserv-id keeps them.
_OWN_FIELDS: Final[contextvars.ContextVar[tuple[HeaderField, ...]]] = contextvars.ContextVar(
    "mailmodule.pipeline.own_fields", default=()
)


class RecipientStatus(enum.Enum):
    """Where one recipient of a message stands."""

    PENDING = "pending"  #: being added
    REFUSED = "refused"  #: the client was told so; no target delivers it
    ACCEPTED = "accepted"  #: every target its route names has it
    FAILED = "failed"  #: accepted, then the body failed for it
    DELIVERED = "delivered"  #: committed everywhere
    ABORTED = "aborted"  #: accepted, then the message was aborted


# Enum members read through their class cost ~100 ns each on Python 3.11: the hot paths
# read these module constants instead.
_PENDING: Final = RecipientStatus.PENDING
_REFUSED: Final = RecipientStatus.REFUSED
_ACCEPTED: Final = RecipientStatus.ACCEPTED
_FAILED: Final = RecipientStatus.FAILED
_DELIVERED: Final = RecipientStatus.DELIVERED
_ABORTED_RCPT: Final = RecipientStatus.ABORTED
_ADD_RCPT: Final = Step.ADD_RCPT
_RCPT_DONE: Final = Step.RCPT_DONE
_BODY: Final = Step.BODY
_BODY_OK: Final = Step.BODY_OK
_BODY_FAILED: Final = Step.BODY_FAILED
_COMMIT: Final = Step.COMMIT
_ABORT: Final = Step.ABORT
_OPEN: Final = DeliveryState.OPEN
_ADDING: Final = DeliveryState.ADDING
_IN_BODY: Final = DeliveryState.IN_BODY
_COMMITTED: Final = DeliveryState.COMMITTED
_ABORTED: Final = DeliveryState.ABORTED
_AFTER_ADD_RCPT: Final = AFTER[_ADD_RCPT]
_AFTER_RCPT_DONE: Final = AFTER[_RCPT_DONE]
_AFTER_BODY: Final = AFTER[_BODY]
_AFTER_BODY_OK: Final = AFTER[_BODY_OK]
_AFTER_COMMIT: Final = AFTER[_COMMIT]
_CoroutineType: Final[type] = types.CoroutineType
_AUTH_RESULTS: Final = "Authentication-Results"


@final
@attrs.frozen(kw_only=True)
class TargetOutcome:
    """One target's part in the delivery of one recipient."""

    target: str  #: the target's name
    address: str  #: the address the target was given
    error: SMTPError | None = None  #: the target's failure for it, if any


@final
@attrs.frozen(kw_only=True)
class RecipientRecord:
    """A recipient as the pipeline handled it: a snapshot, see `PipelineDelivery.recipients`."""

    given: str  #: as the client gave it
    status: RecipientStatus
    error: SMTPError | None  #: why it was refused or failed
    addresses: tuple[str, ...]  #: what the modifiers made of it
    targets: tuple[TargetOutcome, ...]  #: the targets that took an address for it


@final
class _Rcpt:
    """The mutable record behind a `RecipientRecord`.

    Kept small, since a message may have many: a recipient routed as it came to a plain
    destination (the common case) holds no list or pair of its own, only `via`.
    """

    __slots__ = ("addresses", "error", "given", "held", "status", "via")

    def __init__(self, given: str) -> None:
        self.given = given
        self.status = _PENDING
        self.error: SMTPError | None = None
        self.addresses: Sequence[str] = ()
        #: (run, address) for each target that took an address for it, unless `via` is set
        self.held: Sequence[tuple[_TargetRun, str]] = ()
        #: The plain destination every target of which took its one address.
        self.via: _DestRun | None = None

    def pairs(self) -> Sequence[tuple[_TargetRun, str]]:
        """(run, address) for each target that took an address for it."""
        via = self.via
        if via is None:
            return self.held
        return [(run, self.addresses[0]) for run in via.runs]

    def fail(self, err: SMTPError) -> None:
        if self.status is _ACCEPTED:
            self.status = _FAILED
            self.error = err


_NONE, _OK, _BAD = 0, 1, 2  # a run's body: not given, taken, refused


@final
class _TargetRun:
    """One delivery into one target: the addresses it took, for which client recipients."""

    __slots__ = ("body", "delivery", "dest", "dirty", "errors", "holders", "target")

    def __init__(self, target: DeliveryTarget, dest: _DestRun | None) -> None:
        self.target = target
        self.dest = dest  # None: shared by every destination without modifiers
        self.delivery: Delivery | None = None
        self.holders: dict[str, list[_Rcpt]] = {}  # address -> recipients it stands for
        self.errors: dict[str, SMTPError] = {}  # address -> the target's failure for it
        self.dirty = False  # holds an address no accepted recipient needs: restart it
        self.body = _NONE

    @property
    def name(self) -> str:
        return name_of(self.target)

    def release(self, addr: str, rcpt: _Rcpt) -> None:
        """`rcpt` no longer needs `addr` here."""
        holders = self.holders.get(addr)
        if holders is None or rcpt not in holders:
            return
        holders.remove(rcpt)
        if not _needed(holders):
            del self.holders[addr]
            self.dirty = True


@final
class _DestRun:
    """A destination's part of one message: its modifier states, sender and header."""

    __slots__ = ("dest", "header", "mods", "runs", "sender")

    def __init__(self, dest: Destination, mods: list[ModifierState], sender: str) -> None:
        self.dest = dest
        self.mods = mods
        self.sender = sender
        self.runs: list[_TargetRun] = []
        self.header: Header | None = None


@final
class _Collector:
    """Takes a target's per-address statuses for `body_non_atomic`."""

    __slots__ = ("run",)

    def __init__(self, run: _TargetRun) -> None:
        self.run = run

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        if err is not None and rcpt_to in self.run.holders:
            self.run.errors.setdefault(rcpt_to, as_smtp(err, target=self.run.name))


def _taken(rcpt: _Rcpt, plan: Sequence[tuple[_DestRun, str]]) -> list[tuple[_TargetRun, str]]:
    """The (run, address) pairs of `plan` whose target took the address for `rcpt`."""
    return [
        (run, addr) for drun, addr in plan for run in drun.runs if rcpt in run.holders.get(addr, ())
    ]


def _needed(holders: list[_Rcpt]) -> bool:
    return any(h.status is _ACCEPTED for h in holders)


@final
class PipelineDelivery:
    """One message in a Pipeline. Implements `Delivery` and `PartialDelivery`.

    Made by `Pipeline.start`. Use it as an async context manager, which aborts the message
    unless it was committed: `async with await pipeline.start(meta, sender) as delivery:`.
    Calls follow the legal steps of `DeliveryState`; an illegal one raises
    `DeliveryStateError` (503 5.5.1) and changes nothing.

    `meta` is this message's own MsgMetadata copy, which the targets see: a message source
    may record per-recipient options in `meta.rcpt_opts` before `add_rcpt`.

    Cancellation: a cancelled `add_rcpt` or body aborts the whole message (every started
    delivery is aborted, every state closed) before the cancellation goes on; a cancelled
    `commit` or `abort` first runs to its end, each target's abort bounded by
    `ABORT_TIMEOUT`.
    """

    __slots__ = (
        "_debug",
        "_dests",
        "_header",
        "_mail_from",
        "_meta",
        "_mods",
        "_own_fields",
        "_p",
        "_plain",
        "_rcpts",
        "_runner",
        "_runs",
        "_sender",
        "_source",
        "_source_mods",
        "_state",
    )

    def __init__(self, pipeline: Pipeline, meta: MsgMetadata, mail_from: str) -> None:
        self._p = pipeline
        self._meta = meta
        self._mail_from = mail_from
        self._sender = mail_from
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self._runner = CheckRunner(meta)
        self._mods = ModifierRunner(meta)
        self._source_mods: list[ModifierState] = []  # the pipeline's and the source's
        self._source: Source = pipeline.default_source
        self._dests: dict[int, _DestRun] = {}
        # The source's destination for all recipients, when it is plain (see `add_rcpt`).
        self._plain: _DestRun | None = None
        self._runs: dict[tuple[int, int], _TargetRun] = {}
        self._rcpts: dict[str, _Rcpt] = {}  # lookup key -> record, in the client's order
        self._header: Header | None = None
        self._own_fields: tuple[HeaderField, ...] = ()
        self._state = _OPEN

    @property
    def meta(self) -> MsgMetadata:
        return self._meta

    @property
    def state(self) -> DeliveryState:
        """Where the message stands."""
        return self._state

    @property
    def recipients(self) -> tuple[RecipientRecord, ...]:
        """A snapshot of every recipient given so far, in the client's order."""
        return tuple(
            RecipientRecord(
                given=r.given,
                status=r.status,
                error=r.error,
                addresses=tuple(r.addresses),
                targets=tuple(
                    TargetOutcome(target=run.name, address=a, error=run.errors.get(a))
                    for run, a in r.pairs()
                ),
            )
            for r in self._rcpts.values()
        )

    async def __aenter__(self) -> PipelineDelivery:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Stages

    async def begin(self) -> None:
        """Run the connection and sender checks, modifiers and the source's own; called
        once by `Pipeline.start`."""
        p = self._p
        checks = p.checks
        if checks:
            if rest := self._runner.begin_open(checks, self._mail_from):
                await rest
        else:
            self._runner.opened(self._mail_from)
        states: list[ModifierState] = []
        sender = self._mail_from
        if p.modifiers:
            states, sender = await self._mods.open(p.modifiers, sender)
        source = await p.source_for(sender) if p.routes_senders else p.default_source
        if source.reject is not None:
            raise fresh(source.reject)
        self._source = source
        if source.checks:
            await self._runner.open(source.checks, sender)
        if source.modifiers:
            own, sender = await self._mods.open(source.modifiers, sender)
            states.extend(own)
        self._source_mods = states
        self._sender = sender
        static = source.static_route
        if static is not None and static.plain:
            self._plain = self._add_dest_run(static, [], sender)
        if self._debug:
            _log.debug("msg %s: started, sender %r", self._meta.id, sender)

    async def add_rcpt(self, rcpt_to: str) -> None:
        self._state = _AFTER_ADD_RCPT.get(self._state) or advance(self._state, _ADD_RCPT)
        rcpt: _Rcpt | None = None
        try:
            try:
                key = address.for_lookup(rcpt_to)
            except AddressError as exc:
                raise SMTPError(
                    501, (5, 1, 3), f"Invalid recipient address: {exc.message}"
                ) from exc
            known = self._rcpts.get(key)
            if known is not None and known.status is _ACCEPTED:
                self._state = _AFTER_RCPT_DONE.get(self._state) or advance(self._state, _RCPT_DONE)
                return  # given twice: once is enough
            rcpt = self._rcpts[key] = _Rcpt(rcpt_to)  # a refused one given again starts over
            runner = self._runner
            checks = self._p.checks
            one = (rcpt_to,)  # the stages' arguments, and its addresses if kept as it is
            if checks and (rest := runner.begin_stage(checks, "check_rcpt", one)):
                await rest
            source = self._source
            if source.checks:
                await runner.stage(source.checks, "check_rcpt", one)
            mods = self._source_mods
            addrs: Sequence[str]
            if len(mods) == 1:  # the common case, without a layer of calls
                try:
                    new = await mods[0].rewrite_rcpt(rcpt_to)
                except Exception as exc:
                    raise as_smtp(exc, what="a recipient modifier") from exc
                if new.__class__ is list and len(new) == 1 and new[0] == rcpt_to:
                    addrs = one  # kept as it is: the common case
                else:
                    addrs = []
                    ModifierRunner.add_rcpts(addrs, rcpt_to, new)
            elif mods:
                addrs = await ModifierRunner.rewrite_rcpt(mods, rcpt_to)
            else:
                addrs = one
            rcpt.addresses = addrs
            plain = self._plain if len(addrs) == 1 else None
            if plain is not None:
                # The common case: one address, one destination that does not change it.
                plan: Sequence[tuple[_DestRun, str]] = ((plain, addrs[0]),)
            else:
                plan = await self._plan(source, key, rcpt_to, addrs)
            for drun, addr in plan:
                for run in drun.runs:
                    holders = run.holders.get(addr)
                    if holders is None:
                        # The target's first address: start its delivery first.
                        try:
                            delivery = run.delivery
                            if delivery is None:
                                delivery = run.delivery = await run.target.start(
                                    self._meta, drun.sender
                                )
                            await delivery.add_rcpt(addr)
                        except BaseException as exc:
                            rcpt.held = _taken(rcpt, plan)
                            if not isinstance(exc, Exception):
                                raise
                            raise as_smtp(exc, target=run.name) from exc
                        run.holders[addr] = [rcpt]
                    else:
                        holders.append(rcpt)
            if plain is not None:
                rcpt.via = plain
            else:
                rcpt.held = [(run, addr) for drun, addr in plan for run in drun.runs]
        except asyncio.CancelledError:
            if rcpt is not None:
                self._refuse(rcpt, SMTPError(451, (4, 4, 5), "Cancelled"))
            await to_completion(self._abort_quietly())
            raise
        except Exception as exc:
            err = as_smtp(exc, what="recipient handling")
            if rcpt is not None:
                self._refuse(rcpt, err)
            if self._state is _ADDING:
                self._state = advance(self._state, _RCPT_DONE)
            _log.debug("msg %s: recipient %r refused: %s", self._meta.id, rcpt_to, err)
            if err is exc:
                raise
            raise err from exc
        rcpt.status = _ACCEPTED
        if source.late_checks:
            runner.passed(rcpt_to)
        originals = self._meta.original_rcpts
        if originals is None:
            originals = self._meta.original_rcpts = {}
        if rcpt.via is not None:
            originals[addrs[0]] = rcpt_to
        else:
            for _, addr in rcpt.held:
                originals[addr] = rcpt_to
        self._state = _AFTER_RCPT_DONE.get(self._state) or advance(self._state, _RCPT_DONE)
        if self._debug:
            _log.debug("msg %s: recipient %r accepted as %r", self._meta.id, rcpt_to, addrs)

    async def _plan(
        self, source: Source, key: str, rcpt_to: str, addrs: Sequence[str]
    ) -> list[tuple[_DestRun, str]]:
        """Route and check every address a recipient became, before any target sees one (a
        refused alias member refuses the recipient, not half of it): each destination
        with each address its modifiers make of them.

        Raises:
            SMTPError: a destination, its checks or modifiers refuse an address.
        """
        plan: list[tuple[_DestRun, str]] = []
        static = source.static_route
        for addr in addrs:
            if static is not None:
                dest = static
            elif source.tables:
                addr_key = key if addr == rcpt_to else _build.route_key(addr)
                dest = await source.route(addr, key=addr_key)
            else:
                dest = source.route_by_rules(key if addr == rcpt_to else _build.route_key(addr))
            if dest.reject is not None:
                raise fresh(dest.reject)
            drun = self._dests.get(id(dest)) or await self._dest_run(dest)
            if dest.checks:
                await self._runner.stage(dest.checks, "check_rcpt", (addr,))
            if drun.mods:
                finals = await ModifierRunner.rewrite_rcpt(drun.mods, addr)
                plan.extend((drun, final) for final in finals)
            else:
                plan.append((drun, addr))
        return plan

    def _refuse(self, rcpt: _Rcpt, err: SMTPError) -> None:
        rcpt.status = _REFUSED
        rcpt.error = err
        for run, addr in rcpt.pairs():
            run.release(addr, rcpt)

    async def body(self, header: Header, body: Buffer) -> None:
        self._expect_body()
        try:
            await self._deliver_body(header, body, partial=False)
        except BaseException:
            self._body_failed()
            raise
        self._state = _AFTER_BODY_OK.get(self._state) or advance(self._state, _BODY_OK)

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        self._expect_body()
        try:
            await self._deliver_body(header, body, partial=True)
        except SMTPError as err:  # checks or modifiers refused the whole message
            for rcpt in self._rcpts.values():
                rcpt.fail(err)
        except BaseException:
            self._body_failed()
            raise
        accepted = False
        for rcpt in self._rcpts.values():
            if rcpt.status is _ACCEPTED:
                accepted = True
                c.set_status(rcpt.given, None)
            elif rcpt.status is _FAILED:
                c.set_status(rcpt.given, rcpt.error)
        self._state = advance(self._state, _BODY_OK if accepted else _BODY_FAILED)

    def _expect_body(self) -> None:
        state = _AFTER_BODY.get(self._state) or advance(self._state, _BODY)
        for r in self._rcpts.values():
            if r.status is _ACCEPTED:
                self._state = state
                return
        raise DeliveryStateError(
            self._state.value, _BODY.value, "a body without accepted recipients"
        )

    def _body_failed(self) -> None:
        if self._state is _IN_BODY:
            self._state = advance(self._state, _BODY_FAILED)

    async def _deliver_body(self, header: Header, body: Buffer, *, partial: bool) -> None:
        try:
            await self._prepare(header.copy(), body)  # (each header to give)
            # Nested pipelines with our authserv-id keep the field we added (by identity).
            own = self._own_fields
            token = _OWN_FIELDS.set(_OWN_FIELDS.get() + own) if own else None
            try:
                runs = [run for run in self._runs.values() if run.holders]
                prepared = self._header
                assert prepared is not None
                while runs:
                    for run in runs:
                        if partial or run.dirty or run.dest is not None:
                            await self._give_body(run, body, partial)
                            continue
                        delivery = run.delivery  # the common case, without a layer of calls
                        assert delivery is not None
                        try:
                            await delivery.body(prepared, body)
                        except Exception as exc:
                            raise self._body_refused(run, exc) from exc
                        run.body = _OK
                    if not partial:
                        break
                    runs = self._spread_failures()
            finally:
                if token is not None:
                    _OWN_FIELDS.reset(token)
        except asyncio.CancelledError:
            await to_completion(self._abort_quietly())
            raise
        if self._debug:
            _log.debug("msg %s: body given to %d target(s)", self._meta.id, len(self._runs))

    async def _prepare(self, header: Header, body: Buffer) -> None:
        """Body checks, their fields and ours, then the modifiers: each header to give."""
        specs = self._p.checks
        source = self._source
        if source.checks or source.late_checks:
            extra = [*source.checks]
            for drun in self._dests.values():
                if drun.dest.checks:
                    extra.extend(drun.dest.checks)
            specs += tuple(s for s in dict.fromkeys(extra) if s not in specs)
        if specs and (rest := self._runner.begin_stage(specs, "check_body", (header, body))):
            await rest
        if self._p.result_checks:
            await self._runner.judge(self._p.result_checks, header)
        hostname = self._p.hostname
        if _AUTH_RESULTS in header:  # (what the function tests first, without the call)
            remove_forged_authentication_results(header, hostname, keep=_OWN_FIELDS.get())
        for field in reversed(self._runner.header_fields):
            header.add_field(field)
        if self._runner.auth_results:
            value = format_authentication_results(hostname, self._runner.auth_results)
            self._own_fields = (header.add("Authentication-Results", value),)
        await ModifierRunner.rewrite_body(self._source_mods, header, body)
        self._header = header
        for drun in self._dests.values():
            if drun.mods and drun.runs:
                drun.header = header.copy()
                await ModifierRunner.rewrite_body(drun.mods, drun.header, body)

    async def _give_body(self, run: _TargetRun, body: Buffer, partial: bool) -> None:
        if run.dirty:
            await self._restart(run, partial)
            if run.body == _BAD or not run.holders:
                return
        header = self._header if run.dest is None else run.dest.header
        assert header is not None
        assert run.delivery is not None
        delivery = run.delivery
        try:
            if partial and isinstance(delivery, PartialDelivery):
                await delivery.body_non_atomic(_Collector(run), header, body)
            else:
                await delivery.body(header, body)
            run.body = _OK
        except Exception as exc:
            err = self._body_refused(run, exc)
            if not partial:
                raise err from exc
            for addr in run.holders:
                run.errors.setdefault(addr, err)
        for addr, err in run.errors.items():
            for rcpt in run.holders.get(addr, ()):
                rcpt.fail(err)

    def _body_refused(self, run: _TargetRun, exc: Exception) -> SMTPError:
        run.body = _BAD
        err = as_smtp(exc, target=run.name)
        _log.warning("msg %s: target %s refused the body: %s", self._meta.id, run.name, err)
        return err

    def _spread_failures(self) -> list[_TargetRun]:
        """The runs that took the body for an address only failed recipients need: started
        again without it, since a failed recipient must not be delivered by any target."""
        again: list[_TargetRun] = []
        for run in self._runs.values():
            if run.body == _OK and any(
                addr not in run.errors and not _needed(holders)
                for addr, holders in run.holders.items()
            ):
                run.dirty = True
                again.append(run)
        return again

    async def _restart(self, run: _TargetRun, partial: bool) -> None:
        """Start `run`'s delivery again with only the addresses accepted recipients need.

        Raises:
            SMTPError: (not `partial`) the target refused it; with `partial`, the recipients
                concerned fail instead.
        """
        old, run.delivery = run.delivery, None
        run.dirty = False
        run.body = _NONE
        run.errors.clear()
        run.holders = {a: hs for a, hs in run.holders.items() if _needed(hs)}
        if old is not None:
            await self._abort_one(run.name, old)
        if not run.holders:
            return
        _log.debug(
            "msg %s: delivering to %s again, without refused recipients", self._meta.id, run.name
        )
        sender = self._sender if run.dest is None else run.dest.sender
        try:
            run.delivery = delivery = await run.target.start(self._meta, sender)
            for addr in list(run.holders):
                await delivery.add_rcpt(addr)
        except Exception as exc:
            err = as_smtp(exc, target=run.name)
            if not partial:
                raise err from exc
            for holders in run.holders.values():
                for rcpt in holders:
                    rcpt.fail(err)
            run.body = _BAD

    # Commit and abort

    async def commit(self) -> None:
        self._state = _AFTER_COMMIT.get(self._state) or advance(self._state, _COMMIT)
        if rest := begin_to_completion(self._commit_all()):
            await rest

    async def _commit_all(self) -> None:
        failures: list[SMTPError] = []
        try:
            for run in self._runs.values():
                delivery = run.delivery
                if delivery is None:
                    continue
                if not (
                    run.body == _OK
                    and (not run.errors or any(a not in run.errors for a in run.holders))
                ):
                    # Nothing of it to deliver: a failure to abort is logged, not the client's.
                    await self._abort_one(run.name, delivery)
                    continue
                try:
                    await delivery.commit()
                except (Exception, asyncio.CancelledError) as exc:
                    # Shielded by to_completion: a cancellation here is the target's own.
                    err = as_smtp(own_failure(exc), target=run.name)
                    _log.error(
                        "msg %s: target %s failed to commit: %s", self._meta.id, run.name, err
                    )
                    failures.append(err)
                    for holders in run.holders.values():
                        for rcpt in holders:
                            rcpt.fail(err)  # not delivered everywhere its route names
                    await self._abort_one(run.name, delivery)
        finally:
            self._close_states()
        delivered = 0
        for rcpt in self._rcpts.values():
            if rcpt.status is _ACCEPTED:
                rcpt.status = _DELIVERED
                delivered += 1
        if failures:
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also failed: target {other.target_name!r}: {other}")
            raise first
        if self._debug:
            _log.debug("msg %s: delivered to %d recipient(s)", self._meta.id, delivered)

    async def abort(self) -> None:
        if self._state in (_COMMITTED, _ABORTED):
            return
        self._state = advance(self._state, _ABORT)
        failures = await to_completion(self._abort_all())
        if failures:
            raise failures[0]

    async def aclose(self) -> None:
        """Abort the message unless it was committed; idempotent. Target failures to abort
        are logged, not raised."""
        await to_completion(self._abort_quietly())

    async def _abort_quietly(self) -> None:
        if self._state not in (_COMMITTED, _ABORTED):
            self._state = advance(self._state, _ABORT)
            await self._abort_all()

    async def _abort_all(self) -> list[SMTPError]:
        failures: list[SMTPError] = []
        try:
            for run in self._runs.values():
                if run.delivery is not None:
                    err = await self._abort_one(run.name, run.delivery)
                    if err is not None:
                        failures.append(err)
        finally:
            self._close_states()
        for rcpt in self._rcpts.values():
            if rcpt.status in (_ACCEPTED, _FAILED):
                rcpt.status = _ABORTED_RCPT
        if self._debug:
            _log.debug("msg %s: aborted", self._meta.id)
        return failures

    async def _abort_one(self, name: str, delivery: Delivery) -> SMTPError | None:
        try:
            aborting = delivery.abort()
            if type(aborting) is _CoroutineType:  # run eagerly: a timer only if it waits
                try:
                    yielded = aborting.send(None)
                except StopIteration:
                    return None
                await asyncio.wait_for(drive(aborting, yielded), ABORT_TIMEOUT)
            else:
                await asyncio.wait_for(aborting, ABORT_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:
            err = as_smtp(own_failure(exc), target=name)
            _log.error("msg %s: target %s failed to abort: %s", self._meta.id, name, err)
            return err
        return None

    # Helpers

    def _close_states(self) -> None:
        self._runner.close()
        self._mods.close()
        # Unlink the records' graph (recipients <-> runs <-> destinations): the message is
        # then freed by reference counting, not by the cycle collector.
        for run in self._runs.values():
            run.holders = {}
            run.dest = None
        self._dests.clear()

    async def _dest_run(self, dest: Destination) -> _DestRun:
        drun = self._dests.get(id(dest))
        if drun is not None:
            return drun
        mods: list[ModifierState] = []
        sender = self._sender
        if dest.modifiers:
            mods, sender = await self._mods.open(dest.modifiers, sender)
        return self._add_dest_run(dest, mods, sender)

    def _add_dest_run(self, dest: Destination, mods: list[ModifierState], sender: str) -> _DestRun:
        drun = _DestRun(dest, mods, sender)
        for target in dest.targets:
            # A destination with modifiers makes its own message: its own deliveries.
            key = (id(target), id(dest) if mods else 0)
            run = self._runs.get(key)
            if run is None:
                run = self._runs[key] = _TargetRun(target, drun if mods else None)
            drun.runs.append(run)
        self._dests[id(dest)] = drun
        return drun
