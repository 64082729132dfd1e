"""Running checks by their contract: states per message, stages in order, results merged."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from operator import itemgetter, methodcaller
from typing import Final, Literal, cast, final

import attrs

from mailmodule.errors import ConfigError, InterfaceMismatchError, SMTPError
from mailmodule.header import Header, HeaderField
from mailmodule.interfaces import AuthResult, Check, CheckResult, CheckState, ResultsCheck
from mailmodule.metadata import MsgMetadata
from mailmodule.pipeline import _eager
from mailmodule.pipeline._errors import fresh
from mailmodule.registry import missing_methods

__all__ = ["CheckRunner", "CheckSpec", "FailAction", "as_spec", "name_of"]

_log = logging.getLogger("mailmodule.pipeline")


@final
@attrs.frozen(kw_only=True)
class FailAction:
    """What to do when a check fails, as maddy's `fail_action`: reject, quarantine or ignore.

    A check fails when its result sets `reject` or carries a `reason`. "reject" refuses the
    message, with `code`, `enhanced_code` and `message` replacing the check's own reply
    where given; "quarantine" accepts it into the Junk folder; "ignore" accepts it as if
    nothing was wrong (header fields and auth results are kept).
    """

    action: Literal["reject", "quarantine", "ignore"] = "reject"
    code: int | None = None
    enhanced_code: tuple[int, int, int] | None = None
    message: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.action not in ("reject", "quarantine", "ignore"):
            raise ValueError(
                f"FailAction.action must be reject, quarantine or ignore, got {self.action!r}"
            )
        if self.code is not None and (type(self.code) is not int or not 400 <= self.code <= 599):
            raise ValueError(
                f"FailAction.code must be a 4xx or 5xx reply code, got {self.code!r}: "
                "a rejection answered with 2xx would drop the message silently"
            )
        if self.enhanced_code is not None and self.enhanced_code[:1] not in ((4,), (5,)):
            raise ValueError(
                f"FailAction.enhanced_code must be of class 4 or 5, got {self.enhanced_code!r}"
            )
        if self.code is not None or self.enhanced_code is not None:
            # Build the reply once to check code and enhanced code as SMTPError does.
            code = self.code or 550
            SMTPError(code, self.enhanced_code or (code // 100, 7, 1), self.message or "")

    def apply(self, result: CheckResult, check_name: str) -> CheckResult:
        """The result with this action applied; unchanged when the check did not fail."""
        if not result.reject and result.reason is None:
            return result
        if self.action == "ignore":
            return attrs.evolve(result, reject=False, reason=None)
        if self.action == "quarantine":
            return attrs.evolve(result, reject=False, quarantine=True)
        reason = _reason(result.reason, check_name)
        if self.code is not None or self.message is not None:
            code = self.code or reason.code
            default_enhanced = (code // 100, 7, 1) if self.code else reason.enhanced_code
            reason = SMTPError(
                code,
                self.enhanced_code or default_enhanced,
                self.message or reason.message,
                misc=reason.misc,
            )
        if reason.check_name is None:
            named = SMTPError(
                reason.code,
                reason.enhanced_code,
                reason.message,
                check_name=check_name,
                target_name=reason.target_name,
                misc=reason.misc,
            )
            named.__cause__ = reason.__cause__
            reason = named
        return attrs.evolve(result, reject=True, reason=reason)


def _reason(reason: object, check_name: str) -> SMTPError:
    """A check's reason as a reply: a generic 5.7.1 when it gave none, a 451 naming the
    check when it gave something that is not an SMTPError (a bug of the check's)."""
    if reason is None:
        return SMTPError(550, (5, 7, 1), "Message rejected by policy")
    if isinstance(reason, SMTPError):
        return reason
    _log.error("check %r gave a reason that is not an SMTPError: %r", check_name, reason)
    err = SMTPError(451, (4, 7, 0), "Temporary failure in a policy check", check_name=check_name)
    if isinstance(reason, BaseException):
        err.__cause__ = reason
    return err


@final
@attrs.frozen(eq=False)
class CheckSpec:
    """A check as a pipeline runs it: the module, its failure action, its name for replies.

    `name` defaults to the check's instance name, or its module name.
    """

    check: Check
    fail_action: FailAction = attrs.field(factory=FailAction, kw_only=True)
    name: str = attrs.field(default="", kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", name_of(self.check))
        missing = missing_methods(self.check, Check)
        if missing:
            raise InterfaceMismatchError(self.name, "Check", missing)
        if not isinstance(self.fail_action, FailAction):
            raise ConfigError(f"expected a FailAction, got {self.fail_action!r}", key="fail_action")


def name_of(module: object) -> str:
    """How a module names itself: its instance name, else its name, else its type's."""
    for attr in ("instance_name", "name"):
        get = getattr(module, attr, None)
        if callable(get):
            value = get()
            if isinstance(value, str) and value:
                return value
    return type(module).__name__


def as_spec(check: Check | CheckSpec) -> CheckSpec:
    return check if isinstance(check, CheckSpec) else CheckSpec(check)


_Stage = Literal["check_connection", "check_sender", "check_rcpt", "check_body"]


def _failed(exc: Exception, what: str) -> CheckResult:
    if isinstance(exc, SMTPError):
        return CheckResult(reject=True, reason=exc)
    reason = SMTPError(451, (4, 7, 0), f"Temporary failure in {what}")
    reason.__cause__ = exc
    return CheckResult(reject=True, reason=reason)


def _checked(state: CheckState, stage: _Stage, value: object, msg_id: str) -> CheckResult:
    if isinstance(value, CheckResult):
        return value
    _log.error("message %s: check state %r returned %r from %s", msg_id, state, value, stage)
    return _failed(TypeError(f"{stage} returned {type(value).__name__}"), "a policy check")


def _raised(state: CheckState, stage: _Stage, exc: Exception, msg_id: str) -> CheckResult:
    _log.warning("message %s: check state %r raised in %s: %r", msg_id, state, stage, exc)
    return _failed(exc, "a policy check")


_CoroutineType: Final[type] = types.CoroutineType
_MAKE: Final = "check_state_for_msg"
_close: Final = methodcaller("close")


_Resumable = _eager.Resumable[object]


@final
class _Raised:
    """A step that raised."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


@final
class _Waits:
    """A step that suspended: its coroutine and what it waits on; and the driver it was
    awaited by, kept from being closed (which would close the coroutine) until it ends."""

    __slots__ = ("anchor", "coro", "yielded")

    def __init__(self, coro: _Resumable, yielded: object, anchor: object = None) -> None:
        self.coro = coro
        self.yielded = yielded
        self.anchor = anchor


async def _await(value: Awaitable[object]) -> object:
    return await value


def _step(subject: object, method: str, args: tuple[object, ...]) -> object:
    """`subject.method(*args)` run in the current context until it ends or first waits:
    its value, `_Raised` or `_Waits`. A coroutine ending at once costs no task."""
    try:
        aw = getattr(subject, method)(*args)
        if type(aw) is not _CoroutineType:
            aw = _await(aw)  # raises TypeError at the send when `aw` is not awaitable
        yielded = aw.send(None)
    except StopIteration as done:
        return done.value
    except Exception as exc:
        return _Raised(exc)
    return _Waits(aw, yielded)


async def _finish(waits: _Waits) -> object:
    """The rest of a step that suspended, in a task: its value, or `_Raised`."""
    try:
        return await _eager.drive(waits.coro, waits.yielded)
    except Exception as exc:
        return _Raised(exc)


# What a driver yields besides what a step waits on.
_DONE: Final = object()  # the pass is over
_PRIVATE: Final = object()  # step the run at hand in its own context
_SPLIT: Final = object()  # the run at hand set a variable: send a fresh shared context

_Driver = Generator[object, "_PassTask", object]


def _odd_step(exc: Exception, aw: object) -> Generator[object, None, object] | None:
    """What to await instead when `yield from aw` failed only because `aw` is an awaitable
    that is not iterable (it has `__await__` alone, so `yield from` never started it); None
    when `exc` is a real failure, such as a TypeError the coroutine itself raised."""
    kind = type(aw)
    if (
        type(exc) is TypeError
        and kind is not _CoroutineType
        and not hasattr(kind, "__iter__")
        and hasattr(kind, "__await__")
    ):
        return _await(cast("Awaitable[object]", aw)).__await__()
    return None


@types.coroutine
def _driver() -> _Driver:
    """Steps, inside the shared context, the runs of each pass it is sent that share it.

    A pass is (runs, method, args, noted, shared, base): each step is
    `run.subject.method(*args)` awaited by `yield from`, so a coroutine that ends at once
    costs no exception and no task. What a step gives that is not a quiet CheckResult goes
    to `noted` with its run. When it yields, its local `run` is the run at hand (see
    `_at_hand`). A step that waits is left to itself: the caller goes on with the awaited
    coroutine (`gi_yieldfrom`) alone, and with a new driver for the rest; this one is
    never resumed.
    """
    task = yield _DONE
    r: object  # what a step gave (an annotation: no cost per step)
    while True:
        runs, method, args, noted, shared, base = task
        for run in runs:
            if run.ctx is None:
                try:
                    aw = getattr(run.subject, method)(*args)
                except Exception as exc:
                    r = _Raised(exc)
                else:
                    try:
                        r = yield from aw
                    except Exception as exc:
                        rest = _odd_step(exc, aw)
                        try:
                            r = _Raised(exc) if rest is None else (yield from rest)
                        except Exception as again:
                            r = _Raised(again)
                if r.__class__ is not CheckResult or not r.quiet:
                    noted.append((run, r))
                if shared != base:
                    run.ctx = shared
                    shared = (yield _SPLIT)[4]  # the fresh shared context
            else:
                yield _PRIVATE
        task = yield _DONE


def _no_driver(task: _PassTask) -> object:
    raise RuntimeError("a pass before any state was made")


def _at_hand(driver: _Driver) -> _Run:
    """The run a driver stopped at: its local `run` (read only when it stops short of the
    end of a pass, so that each step costs no store of it)."""
    frame = cast("types.GeneratorType[object, object, object]", driver).gi_frame
    assert frame is not None
    return cast("_Run", frame.f_locals["run"])


@final
class _Run:
    """One check's state for one message and the context its steps run in: None while it
    shares the runner's (see `CheckRunner`)."""

    __slots__ = ("ctx", "spec", "subject")

    def __init__(self, spec: CheckSpec, ctx: contextvars.Context | None) -> None:
        self.spec = spec
        self.ctx = ctx
        #: What its steps call: the check until its state is made (`_record`), then the state.
        self.subject: object = spec.check

    @property
    def state(self) -> CheckState:
        return cast("CheckState", self.subject)


_Said = list[tuple[int, CheckSpec, CheckResult]]  # (position in the stage, spec, result)
_Noted = list[tuple[_Run, object]]  # (run, what its step gave)
_PassTask = tuple[
    Sequence[_Run], str, tuple[object, ...], _Noted, contextvars.Context, contextvars.Context
]


def _failed_start(spec: CheckSpec, exc: Exception, msg_id: str) -> CheckResult:
    _log.warning("check %r failed to start for message %s: %r", spec.name, msg_id, exc)
    return _failed(exc, "a policy check")


@final
class CheckRunner:
    """The checks of one message: creates states lazily, runs stages, merges results.

    Each state's steps, its creation included, run in a `contextvars.Context` of its own
    as they would in a task of their own: what one check sets is seen by its own later
    steps, never by its siblings or the caller. The contexts are copied on write: states
    start out sharing one copy of the caller's context as the message started, and a step
    of a state that sets a variable, or waits, leaves the shared copy to that state while
    the others go on in a fresh one. So a stage of quiet checks that answer at once enters
    one context, not one per check.

    Stages run concurrently across states; results merge in configured order, so the first
    rejecting check (in that order) decides the reply. States that join late (a
    destination's checks, first reached by a later recipient) see the earlier stages
    replayed: connection, sender, and each recipient that passed so far.
    """

    __slots__ = (
        "_base",
        "_closed",
        "_conn_done",
        "_driver",
        "_made",
        "_meta",
        "_noted",
        "_rcpts",
        "_runs",
        "_send",
        "_sender",
        "_shared",
        "_stages",
        "auth_results",
        "header_fields",
        "quarantine",
    )

    def __init__(self, meta: MsgMetadata) -> None:
        self._meta = meta
        self._runs: dict[CheckSpec, _Run] = {}  # spec (hashed by identity) -> its state
        # specs -> their runs, each state once (specs hash by identity: a tuple of the same
        # specs is the same stage)
        self._stages: dict[tuple[CheckSpec, ...], list[_Run]] = {}
        self._made: dict[int, _Run] = {}  # id(state) -> its run: each state once
        # The caller's context when the message started, and the shared copy of it:
        # `shared != base` is an identity test while no step changed the shared one.
        self._base = contextvars.copy_context()
        self._shared = self._base.copy()
        self._noted: _Noted = []  # what the steps of a pass said, see `_pass`
        # The driver of the shared context, made with the first states.
        self._driver: _Driver | None = None
        self._send: Callable[[_PassTask], object] = _no_driver
        self._conn_done = False
        self._sender: str | None = None
        self._rcpts: list[str] = []
        self._closed = False
        self.quarantine = False
        self.header_fields: list[HeaderField] = []
        self.auth_results: list[AuthResult] = []

    # Stepping

    def _pass(self, runs: Sequence[_Run], method: str, args: tuple[object, ...]) -> _Noted | None:
        """One step of every run (`method` on its subject), each in its run's context: what
        they said that is not a quiet CheckResult, or None.

        The driver steps the runs sharing the context, inside it; it stops at each run of a
        context of its own, stepped here, at a step that set a variable (the run takes the
        shared context, a fresh one is entered) and at one that waits (the step goes on
        alone, later, in a task; a new driver takes the rest).
        """
        noted = self._noted
        shared = self._shared
        try:
            yielded = shared.run(self._send, (runs, method, args, noted, shared, self._base))
            if yielded is not _DONE:
                self._rest_of_pass(runs, method, args, yielded)
        except BaseException:
            self._pass_broken(method)
            raise
        if not noted:
            return None
        self._noted = []
        return noted

    def _pass_broken(self, method: str) -> None:
        """After a step raised a cancellation: nothing of the pass goes on."""
        self._new_driver()
        noted, self._noted = self._noted, []
        if method == _MAKE:
            self._record(noted)  # the states made before it, to be closed
        self._close_waiting(noted)

    def _rest_of_pass(
        self,
        runs: Sequence[_Run],
        method: str,
        args: tuple[object, ...],
        yielded: object,
    ) -> None:
        """`_pass` after the driver stopped short of its end, on `yielded`."""
        base, noted = self._base, self._noted
        driver = self._driver
        assert driver is not None
        # What the driver is sent at a stop: at a split, the fresh shared context in [4].
        task: _PassTask = (runs, method, args, noted, self._shared, base)
        while yielded is not _DONE:
            run = _at_hand(driver)
            if yielded is _PRIVATE:
                assert run.ctx is not None
                r = run.ctx.run(_step, run.subject, method, args)
                if type(r) is not CheckResult or not r.quiet:
                    noted.append((run, r))
            elif yielded is _SPLIT:  # the run took the shared context as its own
                self._shared = base.copy()
                task = (runs, method, args, noted, self._shared, base)
            else:  # the run's step waits: it goes on alone, a new driver takes the rest
                if self._shared != base:
                    run.ctx, self._shared = self._shared, base.copy()
                else:
                    run.ctx = base.copy()
                step = cast("types.GeneratorType[object, object, object]", driver).gi_yieldfrom
                noted.append((run, _Waits(cast("_Resumable", step), yielded, anchor=driver)))
                driver = self._new_driver()
                rest = runs[list(runs).index(run) + 1 :]
                task = (rest, method, args, noted, self._shared, base)
            yielded = self._shared.run(driver.send, task)

    def _new_driver(self) -> _Driver:
        driver: _Driver = _driver()
        next(driver)
        self._driver, self._send = driver, driver.send
        return driver

    async def _finish(self, noted: _Noted) -> None:
        """Run the steps in `noted` that wait to their end, concurrently, each in a task in
        its run's context; their outcomes replace the `_Waits`."""
        waiting = [(k, w) for k, (_, w) in enumerate(noted) if type(w) is _Waits]
        if not waiting:
            return
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(_finish(w), context=noted[k][0].ctx) for k, w in waiting]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:  # what ended, also when the rest is cancelled (a state made is closed)
            for (k, _), task in zip(waiting, tasks, strict=True):
                if task.done() and not task.cancelled() and task.exception() is None:
                    noted[k] = (noted[k][0], task.result())

    @staticmethod
    def _close_waiting(noted: _Noted | None) -> None:
        for _, w in noted or ():
            if type(w) is _Waits:
                w.coro.close()

    # States

    async def _make_states(self, specs: tuple[CheckSpec, ...], stage: _Stage) -> list[_Run]:
        """The runs of `specs`, each state once, the missing states made (see `_start`)."""
        runs = self._runs
        first = not runs
        new = specs if first else tuple(s for s in specs if s not in runs)
        if new:
            ctx = None
            if not first:  # late: in the caller's context now, shared while it is the same
                current = contextvars.copy_context()
                ctx = None if current == self._base else current
            if rest := self._start(new, ctx):
                await rest
            if stage != "check_connection" and (self._conn_done or self._sender is not None):
                await self._replay(tuple(s for s in new if s in runs), stage)
        return self._runs_of(specs, first=first)

    def _runs_of(self, specs: tuple[CheckSpec, ...], *, first: bool) -> list[_Run]:
        """The runs of the states of `specs` made so far, each state once: a state shared
        by several specs (the same check twice) is called once. `first`: `specs` were the
        first made."""
        runs, made = self._runs, self._made
        if first and len(made) == len(runs) == len(specs):  # each once, all made
            return [runs[spec] for spec in specs]
        out: list[_Run] = []
        for spec in specs:
            run = runs.get(spec)
            if run is not None and made[id(run.subject)] is run and run not in out:
                out.append(run)
        return out

    def _start(
        self, specs: tuple[CheckSpec, ...], ctx: contextvars.Context | None
    ) -> Coroutine[object, None, None] | None:
        """Make a state for each spec, concurrently, in `ctx` or else the shared context
        (see the class); a check that fails to start fails by its action. A state is
        recorded the moment it exists, so that it is closed even when its siblings fail or
        the stage is cancelled.

        As `begin_stage`: None when every state was made at once, else what to await for
        the rest.
        """
        if self._driver is None:
            self._new_driver()
        new = [_Run(spec, ctx) for spec in specs]
        before = len(self._runs)
        noted = self._pass(new, _MAKE, (self._meta,)) or []
        failures = self._record(noted)
        if len(self._runs) - before < len(noted) - len(failures):  # some are being made
            return self._finish_start(noted)
        if failures:
            self._merge(failures)  # a check that could not start fails by its action
        return None

    async def _finish_start(self, noted: _Noted) -> None:
        try:
            await self._finish(noted)
        except BaseException:
            self._record(noted)
            self._close_waiting(noted)
            raise
        failures = self._record(noted)
        if failures:
            self._merge(failures)

    def _record(self, noted: _Noted) -> _Said:
        """Record the states made in `noted` (idempotent); the failures to start."""
        failures: _Said = []
        runs, made = self._runs, self._made
        for i, (run, value) in enumerate(noted):
            if type(value) is _Raised:
                failures.append((i, run.spec, _failed_start(run.spec, value.exc, self._meta.id)))
            elif type(value) is not _Waits and run.spec not in runs:
                run.subject = value
                runs[run.spec] = run
                made.setdefault(id(value), run)
        return failures

    async def _replay(self, specs: tuple[CheckSpec, ...], stage: _Stage) -> None:
        """Run for states joining at `stage` the stages the message passed before it."""
        if not specs:
            return
        if self._conn_done:
            await self.stage(specs, "check_connection", ())
        if stage == "check_sender":
            return
        if self._sender is not None:
            await self.stage(specs, "check_sender", (self._sender,))
        for rcpt in self._rcpts:
            await self.stage(specs, "check_rcpt", (rcpt,))

    # Stages

    async def stage(
        self, specs: tuple[CheckSpec, ...], stage: _Stage, args: tuple[object, ...]
    ) -> None:
        """Run one stage of `specs`' states (made on first use), merge what they say.

        Raises:
            SMTPError: the first rejection in configured order, after fail actions.
        """
        if not specs:
            return
        if specs not in self._stages:
            if self._runs or stage != "check_connection":
                self._stages[specs] = await self._make_states(specs, stage)
            else:  # the message's first states: no layer of awaits when made at once
                if rest := self._start(specs, None):
                    await rest
                self._stages[specs] = self._runs_of(specs, first=True)
        if rest := self.begin_stage(specs, stage, args):
            await rest

    def begin_stage(
        self, specs: tuple[CheckSpec, ...], stage: _Stage, args: tuple[object, ...]
    ) -> Coroutine[object, None, None] | None:
        """`stage` without an await where it can end at once: None when it ended (what the
        states said merged), else what to await for the rest.

        Steps every state until it first waits. A stage whose states exist and answer at
        once saying nothing costs no task, no await and no list; a check that raises gives
        a failure result.

        Raises:
            SMTPError: the first rejection, as `stage`, when the stage ended at once.
        """
        runs = self._stages.get(specs)
        if runs is None:
            return self.stage(specs, stage, args)
        noted = self._noted  # `_pass`, written out: the hot path
        shared = self._shared
        try:
            yielded = shared.run(self._send, (runs, stage, args, noted, shared, self._base))
            if yielded is not _DONE:
                self._rest_of_pass(runs, stage, args, yielded)
        except BaseException:
            self._pass_broken(stage)
            raise
        if not noted:
            return None
        self._noted = []
        if any(type(w) is _Waits for _, w in noted):
            return self._finish_stage(runs, noted, stage)
        self._merge(self._results(runs, noted, stage))
        return None

    async def _finish_stage(self, runs: list[_Run], noted: _Noted, stage: _Stage) -> None:
        try:
            await self._finish(noted)
        except BaseException:
            self._close_waiting(noted)
            raise
        self._merge(self._results(runs, noted, stage))

    def _results(self, runs: list[_Run], noted: _Noted, stage: _Stage) -> _Said:
        """What the steps in `noted` said, as results in stage order; failures for those
        that raised or gave something else than a CheckResult."""
        said: _Said = []
        msg_id = self._meta.id
        for run, value in noted:
            i = runs.index(run)
            if type(value) is CheckResult:
                if not value.quiet:
                    said.append((i, run.spec, value))
            elif type(value) is _Raised:
                said.append((i, run.spec, _raised(run.state, stage, value.exc, msg_id)))
            else:
                said.append((i, run.spec, _checked(run.state, stage, value, msg_id)))
        said.sort(key=itemgetter(0))
        return said

    def _merge(self, said: _Said) -> None:
        """Apply results in stage order; the first rejection (after fail actions) is raised."""
        reject: SMTPError | None = None
        for _, spec, raw in said:
            result = spec.fail_action.apply(raw, spec.name)
            if result.quarantine and not self.quarantine:
                _log.debug("message %s quarantined by %s", self._meta.id, spec.name)
                self.quarantine = True
            if result.auth_result:
                self.auth_results.extend(result.auth_result)
            if result.header:
                self.header_fields[:0] = result.header
            if result.reject and reject is None:
                reject = result.reason
                assert reject is not None  # FailAction.apply always sets a reason
        if self.quarantine:
            self._meta.quarantine = True
        if reject is not None:
            _log.debug("message %s rejected by %s: %s", self._meta.id, reject.check_name, reject)
            raise fresh(reject)

    async def judge(self, checks: Sequence[ResultsCheck], header: Header) -> None:
        """Run `checks` in order on the results so far, merging each verdict as it comes.

        Raises:
            SMTPError: the first refusal; a check that raises refuses with 451 4.7.0.
        """
        for check in checks:
            try:
                result = await check.check_results(self._meta, header, tuple(self.auth_results))
                if not isinstance(result, CheckResult):
                    raise TypeError(f"check_results returned {type(result).__name__}")
            except Exception as exc:
                _log.warning("message %s: %s raised: %r", self._meta.id, name_of(check), exc)
                result = _failed(exc, name_of(check))
            self.auth_results.extend(result.auth_result)
            self.header_fields[:0] = result.header
            if result.quarantine:
                self.quarantine = self._meta.quarantine = True
            if result.reject:
                raise fresh(_reason(result.reason, name_of(check)))

    async def open(self, specs: tuple[CheckSpec, ...], mail_from: str) -> None:
        """The connection stage of `specs`, then their sender stage, then `opened`.

        Raises:
            SMTPError: the first rejection, as `stage`.
        """
        await self.stage(specs, "check_connection", ())
        self._conn_done = True
        if rest := self.begin_stage(specs, "check_sender", (mail_from,)):
            await rest
        self._sender = mail_from

    def begin_open(
        self, specs: tuple[CheckSpec, ...], mail_from: str
    ) -> Coroutine[object, None, None] | None:
        """`open` of the message's first states (before any other stage), without an
        await where it can end at once, as `begin_stage`: None when the states were made
        and passed their connection and sender stages at once, else what to await for
        the rest.

        Raises:
            SMTPError: the first rejection, as `stage`, when it came at once.
        """
        assert not self._stages, "begin_open opens the first states only"
        if rest := self._start(specs, None):
            return self._open_rest(rest, specs, mail_from, waited=_MAKE)
        self._stages[specs] = self._runs_of(specs, first=True)
        if rest := self.begin_stage(specs, "check_connection", ()):
            return self._open_rest(rest, specs, mail_from, waited="check_connection")
        self._conn_done = True
        if rest := self.begin_stage(specs, "check_sender", (mail_from,)):
            return self._open_rest(rest, specs, mail_from, waited="check_sender")
        self._sender = mail_from
        return None

    async def _open_rest(
        self,
        rest: Awaitable[None],
        specs: tuple[CheckSpec, ...],
        mail_from: str,
        *,
        waited: Literal["check_state_for_msg", "check_connection", "check_sender"],
    ) -> None:
        """`begin_open` from the step that had to wait: making the states (`_MAKE`), their
        connection stage or their sender stage."""
        await rest
        if waited == _MAKE:
            await self.open(specs, mail_from)
            return
        if waited == "check_connection":
            self._conn_done = True
            if sender_rest := self.begin_stage(specs, "check_sender", (mail_from,)):
                await sender_rest
        self._sender = mail_from

    def opened(self, mail_from: str) -> None:
        """The message passed its connection and sender stages (`open`, or no checks):
        states joining later see them replayed."""
        self._conn_done = True
        self._sender = mail_from

    def passed(self, rcpt_to: str) -> None:
        """`rcpt_to` passed its checks (`stage(..., "check_rcpt", ...)`): states joining
        later see it replayed."""
        self._rcpts.append(rcpt_to)

    def close(self) -> None:
        """Close every state exactly once; errors are logged, not raised."""
        if self._closed:
            return
        self._closed = True
        for run in self._made.values():
            try:
                _close(run.subject)  # (the state: `run.state` costs a call of cast)
            except Exception as exc:
                _log.error(
                    "closing the state of %s for message %s failed: %r",
                    run.spec.name,
                    self._meta.id,
                    exc,
                )
