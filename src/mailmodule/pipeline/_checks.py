"""Running checks by their contract: states per message, stages in order, results merged."""

from __future__ import annotations

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


# What a check's stepper yields when a step is over without a CheckResult: the outcome is
# in its box (a state just made, an exception raised, a value that is not a CheckResult).
_MADE: Final = object()
_RAISED: Final = object()
_ODD: Final = object()
# A stage's call on a state, `methodcaller(stage, *args)`; a coroutine, from a good state.
_Request = Callable[[object], "_Steps"]
_CoroutineType: Final[type] = types.CoroutineType


_Steps = Generator[object, None, object]  # a coroutine, as `yield from` delegates to it


def _awaitable(value: object) -> _Steps:
    """`value` as `yield from` can await it, as `await value` would.

    Raises:
        TypeError: `value` is not awaitable.
    """
    if type(value) is not _CoroutineType:
        if not isinstance(value, Awaitable):
            raise TypeError(f"{type(value).__name__} is not awaitable")
        value = _await(value)
    return cast("_Steps", value)


async def _await(value: Awaitable[object]) -> object:
    return await value


@types.coroutine
def _stepper(
    check: Check, meta: MsgMetadata, box: list[object]
) -> Generator[object, _Request, None]:
    """One check's life for one message as one generator: makes its state (on `next`),
    then runs each stage it is sent as a call on the state, `methodcaller(stage, *args)`.

    Each step ends at a yield of its outcome: a CheckResult as it is; `_MADE`, `_RAISED` or
    `_ODD` with the state, the exception or the value in `box[0]`. Anything else it yields
    comes from the check awaiting: the step goes on when the stepper is resumed. Resuming
    one generator per step, rather than driving a coroutine per step to its StopIteration,
    spares an exception per step.
    """
    call: _Steps
    try:
        state = yield from _awaitable(check.check_state_for_msg(meta))
    except Exception as exc:
        box[0] = exc
        yield _RAISED
        return
    box[0] = state
    request: _Request = yield _MADE
    while True:
        try:
            call = request(state)
            if type(call) is not _CoroutineType:
                call = _awaitable(call)
            result = yield from call
        except Exception as exc:
            box[0] = exc
            request = yield _RAISED
            continue
        if type(result) is CheckResult:
            request = yield result
        else:
            box[0] = result
            request = yield _ODD


def _is_outcome(yielded: object) -> bool:
    return type(yielded) is CheckResult or yielded is _ODD or yielded is _RAISED or yielded is _MADE


@final
class _Run:
    """One check's state for one message, its stepper, and the context its steps run in."""

    __slots__ = ("box", "ctx", "send", "spec", "state", "steps")

    state: CheckState  # set once the stepper made it

    def __init__(self, spec: CheckSpec, meta: MsgMetadata) -> None:
        self.spec = spec
        self.ctx = contextvars.copy_context()
        self.box: list[object] = [None]
        self.steps = _stepper(spec.check, meta, self.box)
        self.send = self.steps.send

    def made(self) -> CheckState:
        """The state the stepper made (it yielded `_MADE`)."""
        state, self.box[0] = self.box[0], None
        return cast("CheckState", state)

    def outcome(self, yielded: object, stage: _Stage, msg_id: str) -> CheckResult:
        """The result of a step that ended on `yielded` (not a CheckResult)."""
        value, self.box[0] = self.box[0], None
        if yielded is _RAISED:
            assert isinstance(value, Exception)
            return _raised(self.state, stage, value, msg_id)
        return _checked(self.state, stage, value, msg_id)


_Said = list[tuple[int, CheckSpec, CheckResult]]  # (position in the stage, spec, result)
_Waiting = list[tuple[int, _Run, object]]  # (position, run, what its step waits on)


async def _finish(run: _Run, yielded: object) -> object:
    """Go on with a step of `run` that waits on `yielded`, in a task in `run.ctx`: what
    the stepper yields when the step is over."""
    return await _eager.resume(run.steps, yielded, _is_outcome)


def _interrupted(run: _Run) -> object:
    run.box[0] = RuntimeError("an earlier step of this check state was interrupted")
    return _RAISED


async def _finish_stage(said: _Said, waiting: _Waiting, stage: _Stage, msg_id: str) -> None:
    """Run the waiting steps of `CheckRunner.begin_stage` concurrently, each in a task in its own
    context; add what their results say to `said`, which ends in stage order."""
    finished = await _eager.gather(
        [_finish(run, y) for _, run, y in waiting], [run.ctx for _, run, _ in waiting]
    )
    for (i, run, _), r in zip(waiting, finished, strict=True):
        result = r if type(r) is CheckResult else run.outcome(r, stage, msg_id)
        if not result.quiet:
            said.append((i, run.spec, result))
    said.sort(key=itemgetter(0))


def _failed_start(spec: CheckSpec, exc: Exception, msg_id: str) -> CheckResult:
    _log.warning("check %r failed to start for message %s: %r", spec.name, msg_id, exc)
    return _failed(exc, "a policy check")


@final
class CheckRunner:
    """The checks of one message: creates states lazily, runs stages, merges results.

    Each state's steps, its creation included, run in a `contextvars.Context` of its own,
    copied from the caller's when the state is made, as they would in a task of their own:
    what one check sets is seen by its own later steps, never by its siblings or the caller.

    Stages run concurrently across states; results merge in configured order, so the first
    rejecting check (in that order) decides the reply. States that join late (a
    destination's checks, first reached by a later recipient) see the earlier stages
    replayed: connection, sender, and each recipient that passed so far.
    """

    __slots__ = (
        "_closed",
        "_conn_done",
        "_meta",
        "_rcpts",
        "_runs",
        "_sender",
        "_stages",
        "auth_results",
        "header_fields",
        "quarantine",
    )

    def __init__(self, meta: MsgMetadata) -> None:
        self._meta = meta
        self._runs: dict[int, _Run] = {}  # id(spec) -> its state
        # id(specs) -> (specs, their runs, each state once): kept with the tuple, whose
        # identity the key is.
        self._stages: dict[int, tuple[Sequence[CheckSpec], list[_Run]]] = {}
        self._conn_done = False
        self._sender: str | None = None
        self._rcpts: list[str] = []
        self._closed = False
        self.quarantine = False
        self.header_fields: list[HeaderField] = []
        self.auth_results: list[AuthResult] = []

    async def _make_states(self, specs: Sequence[CheckSpec], stage: _Stage) -> list[_Run]:
        runs = self._runs
        new = [s for s in specs if id(s) not in runs]
        if new:
            failures, waiting = self._start_states(new)
            if waiting:
                await self._finish_states(failures, waiting)
            if failures:
                self._merge(failures)  # a check that could not start fails by its action
            if stage != "check_connection" and (self._conn_done or self._sender is not None):
                await self._replay([s for s in new if id(s) in runs], stage)
        # A state shared by several specs (the same check twice) is called once.
        seen: set[int] = set()
        out: list[_Run] = []
        for spec in specs:
            run = runs.get(id(spec))
            if run is not None and id(run.state) not in seen:
                seen.add(id(run.state))
                out.append(run)
        return out

    def _start_states(self, specs: list[CheckSpec]) -> tuple[_Said, _Waiting]:
        """Make a state for each spec eagerly, as `begin_stage` steps, each in a fresh
        context: the failures, for `_merge`, and those still being made, for
        `_finish_states`. A state is recorded the moment it exists, so that it is closed
        even when its siblings fail or the stage is cancelled."""
        meta = self._meta
        runs = self._runs
        failures: _Said = []
        waiting: _Waiting = []
        try:
            for i, spec in enumerate(specs):
                run = _Run(spec, meta)
                made = run.ctx.run(next, run.steps)
                if made is _MADE:
                    run.state = run.made()
                    runs[id(spec)] = run
                elif made is _RAISED:
                    failures.append((i, spec, self._start_failure(run, made)))
                else:
                    waiting.append((i, run, made))
        except BaseException:
            for _, run, _ in waiting:
                run.steps.close()
            raise
        return failures, waiting

    async def _finish_states(self, failures: _Said, waiting: _Waiting) -> None:
        """Make the states `_start_states` left waiting, concurrently; their failures join
        `failures`, in configured order."""
        late = await _eager.gather(
            [self._finish_state(run, y) for _, run, y in waiting],
            [run.ctx for _, run, _ in waiting],
        )
        failures.extend((i, run.spec, r) for (i, run, _), r in zip(waiting, late, strict=True) if r)
        failures.sort(key=itemgetter(0))

    async def _finish_state(self, run: _Run, yielded: object) -> CheckResult | None:
        made = await _eager.resume(run.steps, yielded, _is_outcome)
        if made is _MADE:
            run.state = run.made()
            self._runs[id(run.spec)] = run
            return None
        return self._start_failure(run, made)

    def _start_failure(self, run: _Run, outcome: object) -> CheckResult:
        exc, run.box[0] = run.box[0], None
        if outcome is not _RAISED or not isinstance(exc, Exception):
            exc = RuntimeError(f"check_state_for_msg yielded {outcome!r}")
        return _failed_start(run.spec, exc, self._meta.id)

    async def _replay(self, specs: list[CheckSpec], stage: _Stage) -> None:
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

    async def stage(
        self, specs: Sequence[CheckSpec], stage: _Stage, args: tuple[object, ...]
    ) -> None:
        """Run one stage of `specs`' states (made on first use), merge what they say.

        Raises:
            SMTPError: the first rejection in configured order, after fail actions.
        """
        if not specs:
            return
        cached = self._stages.get(id(specs))
        if cached is None or cached[0] is not specs:
            self._stages[id(specs)] = (specs, await self._make_states(specs, stage))
        if rest := self.begin_stage(specs, stage, args):
            await rest

    def begin_stage(
        self, specs: Sequence[CheckSpec], stage: _Stage, args: tuple[object, ...]
    ) -> Coroutine[object, None, None] | None:
        """`stage` without an await where it can end at once: None when it ended (what the
        states said merged), else what to await for the rest.

        Steps every state, each in its own context, until it first waits. A stage whose
        states exist and answer at once saying nothing costs no task, no await and no list;
        a check that raises gives a failure result.

        Raises:
            SMTPError: the first rejection, as `stage`, when the stage ended at once.
        """
        cached = self._stages.get(id(specs))
        if cached is None or cached[0] is not specs:
            return self.stage(specs, stage, args)
        runs = cached[1]
        request = methodcaller(stage, *args)
        said: _Said | None = None
        waiting: _Waiting | None = None
        try:
            for run in runs:
                try:
                    r = run.ctx.run(run.send, request)
                except StopIteration:  # an earlier step was interrupted: the stepper is gone
                    r = _interrupted(run)
                if type(r) is CheckResult:
                    if r.quiet:
                        continue
                    said = said or []
                    said.append((runs.index(run), run.spec, r))
                elif r is _ODD or r is _RAISED:
                    said = said or []
                    said.append((runs.index(run), run.spec, run.outcome(r, stage, self._meta.id)))
                else:
                    waiting = waiting or []
                    waiting.append((runs.index(run), run, r))
        except BaseException:
            for _, run, _ in waiting or ():
                run.steps.close()
            raise
        if waiting is not None:
            return self._finish_stage(said or [], waiting, stage)
        if said:
            self._merge(said)
        return None

    async def _finish_stage(self, said: _Said, waiting: _Waiting, stage: _Stage) -> None:
        await _finish_stage(said, waiting, stage, self._meta.id)
        self._merge(said)

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

    async def open(self, specs: Sequence[CheckSpec], mail_from: str) -> None:
        """The connection stage of `specs`, then their sender stage, then `opened`.

        Raises:
            SMTPError: the first rejection, as `stage`.
        """
        await self.stage(specs, "check_connection", ())
        self._conn_done = True
        if rest := self.begin_stage(specs, "check_sender", (mail_from,)):
            await rest
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
        closed: set[int] = set()
        for run in self._runs.values():
            if id(run.state) in closed:
                continue
            closed.add(id(run.state))
            run.steps.close()
            try:
                run.state.close()
            except Exception as exc:
                _log.error(
                    "closing the state of %s for message %s failed: %r",
                    run.spec.name,
                    self._meta.id,
                    exc,
                )
