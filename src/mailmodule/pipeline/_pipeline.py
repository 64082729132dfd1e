"""The message pipeline: checks, modifiers and routing to delivery targets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping, MutableMapping, Sequence
from typing import TypeVar, cast, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.errors import AddressError, ConfigError, InterfaceMismatchError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import (
    Check,
    Delivery,
    DeliveryTarget,
    EarlyCheck,
    Modifier,
    ModifierState,
    PartialDelivery,
    StatusCollector,
    Table,
)
from mailmodule.metadata import ConnState, MsgMetadata
from mailmodule.pipeline import _eager
from mailmodule.pipeline._authresults import format_authentication_results
from mailmodule.pipeline._checks import CheckRunner, CheckSpec, as_spec, name_of
from mailmodule.registry import missing_methods

__all__ = ["Destination", "Pipeline", "PipelineDelivery"]

_log = logging.getLogger("mailmodule.pipeline")
_T = TypeVar("_T")

#: The longest a target may take to abort before the pipeline gives up on it.
ABORT_TIMEOUT = 30.0


# Building checks what it is given, so that a wrong module or value is refused when the
# pipeline is built, not at every message.


def _listed(items: Iterable[_T], what: str, key: str) -> tuple[_T, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ConfigError(f"expected a list of {what}, got {type(items).__name__}", key=key)
    return tuple(items)


def _require(item: object, interface: type, where: str) -> None:
    missing = missing_methods(item, interface)
    if missing:
        raise InterfaceMismatchError(f"{name_of(item)} ({where})", interface.__name__, missing)


def _implementing(items: Iterable[_T], interface: type, key: str) -> tuple[_T, ...]:
    out = _listed(items, f"{interface.__name__} modules", key)
    for i, item in enumerate(out):
        _require(item, interface, f"{key}[{i}]")
    return out


def _specs(checks: Iterable[Check | CheckSpec]) -> tuple[CheckSpec, ...]:
    out = _listed(checks, "Check modules or CheckSpecs", "checks")
    for i, check in enumerate(out):
        if not isinstance(check, CheckSpec):
            _require(check, Check, f"checks[{i}]")
    return tuple(as_spec(c) for c in out)


def _targets(targets: Iterable[DeliveryTarget]) -> tuple[DeliveryTarget, ...]:
    return _implementing(targets, DeliveryTarget, "targets")


def _modifiers(modifiers: Iterable[Modifier]) -> tuple[Modifier, ...]:
    return _implementing(modifiers, Modifier, "modifiers")


def _table_routes(
    tables: Sequence[tuple[Table, Destination]],
) -> tuple[tuple[Table, Destination], ...]:
    out = _listed(tables, "(table, Destination) pairs", "tables")
    for i, entry in enumerate(out):
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ConfigError(f"expected a (table, Destination) pair, got {entry!r}", key="tables")
        _require(entry[0], Table, f"tables[{i}]")
        _destination(entry[1], f"tables[{i}]")
    return out


def _destination(value: object, key: str) -> Destination:
    if not isinstance(value, Destination):
        raise ConfigError(f"expected a Destination, got {type(value).__name__}", key=key)
    return value


@final
@attrs.frozen(kw_only=True, eq=False)
class Destination:
    """Where the recipients routed to it go: delivery targets, or a rejection.

    `checks` and `modifiers` apply only to the recipients routed here; they join the message
    when the first such recipient arrives (and see earlier stages replayed).

    Raises:
        InterfaceMismatchError: a target, check or modifier lacks its interface.
        ConfigError: both or neither of targets and reject, or a reject not an SMTPError.
    """

    targets: tuple[DeliveryTarget, ...] = attrs.field(default=(), converter=_targets)
    checks: tuple[CheckSpec, ...] = attrs.field(default=(), converter=_specs)
    modifiers: tuple[Modifier, ...] = attrs.field(default=(), converter=_modifiers)
    reject: SMTPError | None = None

    def __attrs_post_init__(self) -> None:
        if self.reject is not None and not isinstance(self.reject, SMTPError):
            raise ConfigError(f"expected an SMTPError, got {self.reject!r}", key="reject")
        if bool(self.targets) == (self.reject is not None):
            raise ConfigError(
                "a Destination needs either targets or a reject reply, not both",
                key="reject" if self.targets else "targets",
            )


def _as_smtp(exc: Exception, *, target: str | None = None, what: str = "delivery") -> SMTPError:
    """An error for the SMTP client: SMTPErrors keep their reply, the rest become 451."""
    if isinstance(exc, SMTPError):
        if target is None or exc.target_name is not None:
            return exc
        err = SMTPError(
            exc.code,
            exc.enhanced_code,
            exc.message,
            check_name=exc.check_name,
            target_name=target,
            misc=exc.misc,
        )
    else:
        err = SMTPError(451, (4, 0, 0), f"Temporary failure in {what}", target_name=target)
    err.__cause__ = exc
    return err


def _own_failure(exc: BaseException) -> Exception:
    if isinstance(exc, Exception):
        return exc
    failure = RuntimeError(f"the target's own {type(exc).__name__}")
    failure.__cause__ = exc
    return failure


def _bad_rewrite(rcpt: str, new: object) -> SMTPError:
    return _as_smtp(
        TypeError(f"rewrite_rcpt({rcpt!r}) returned {new!r}"), what="a recipient modifier"
    )


def _bad_sequence(what: str) -> SMTPError:
    return SMTPError(503, (5, 5, 1), f"Bad sequence of commands: {what}")


def _destination_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"expected an address or domain, got {key!r}", key="destinations")
    return key


def _route_key(key: str) -> str:
    try:
        if "@" in key:
            return address.for_lookup(key)
        return address.domain_for_lookup(key)
    except AddressError:
        return key.lower()


async def _to_completion(coro: Coroutine[object, None, _T]) -> _T:
    """Run `coro` to its end even if the caller is cancelled meanwhile, then let the
    cancellation through: a half-committed or half-aborted message is worse than a late
    cancellation. Callers bound the work (ABORT_TIMEOUT).

    The coroutine runs eagerly: if it never waits, it costs no task.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        return cast("_T", done.value)
    task = asyncio.ensure_future(_eager.drive(coro, yielded))
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    result = task.result()
    if cancelled:
        raise asyncio.CancelledError
    return result


@final
class Pipeline:
    """Runs messages through checks and modifiers, and delivers them by their recipients.

    A Pipeline is a `DeliveryTarget` (and a `Module`), so pipelines nest. Each message gets
    its own copy of the `MsgMetadata` it started with; nothing a module does to its copy
    leaks into another message.

    Args:
        checks: checks for every message (`Check`s, or `CheckSpec`s with a fail action).
        modifiers: modifiers for every message, applied in order.
        destinations: recipient address or domain -> where it goes; addresses win over
            domains. Keys are compared in `address.for_lookup` form.
        tables: (table, destination) pairs tried in order when no key matched: a recipient
            whose address or domain the table knows goes there.
        default: where the remaining recipients go; without it they are refused.
        hostname: the authserv-id of the Authentication-Results field.
        name, instance_name: how the pipeline names itself as a module.

    Raises:
        InterfaceMismatchError: a check, modifier, target or table lacks its interface.
        ConfigError: an argument has the wrong shape; `key` names it.
    """

    def __init__(
        self,
        *,
        checks: Iterable[Check | CheckSpec] = (),
        modifiers: Iterable[Modifier] = (),
        destinations: Mapping[str, Destination] | None = None,
        tables: Sequence[tuple[Table, Destination]] = (),
        default: Destination | None = None,
        hostname: str = "localhost",
        name: str = "pipeline",
        instance_name: str = "",
    ) -> None:
        self.checks = _specs(checks)
        self.modifiers = _modifiers(modifiers)
        routes = {} if destinations is None else destinations
        if not isinstance(routes, Mapping):
            raise ConfigError("expected a mapping of addresses and domains", key="destinations")
        self._routes = {
            _route_key(_destination_key(k)): _destination(d, f"destinations[{k!r}]")
            for k, d in routes.items()
        }
        self._tables = _table_routes(tables)
        self._default = None if default is None else _destination(default, "default")
        self.hostname = hostname
        self._name = name
        self._instance_name = instance_name

    # Module

    def init(self, cfg: ConfigMap) -> None:
        """Nothing to read: a Pipeline is configured when it is built."""

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._instance_name

    # Routing

    async def route(self, rcpt_to: str, *, key: str | None = None) -> Destination:
        """The destination of a recipient (after the pipeline's modifiers); a rejecting
        one (550 5.1.2) when none takes it.

        `key`, the recipient's lookup form when the caller has it already, saves
        normalizing it again.

        Raises:
            SMTPError: a table's error, as 451.
        """
        if key is None:
            key = _route_key(rcpt_to)
        found = self._routes.get(key)
        domain = key.rpartition("@")[2] if "@" in key else ""
        if found is None and domain:
            found = self._routes.get(domain)
        if found is not None:
            return found
        for table, dest in self._tables:
            try:
                if await table.lookup(key) is not None or (
                    domain and await table.lookup(domain) is not None
                ):
                    return dest
            except Exception as exc:
                raise _as_smtp(exc, what="recipient routing") from exc
        if self._default is not None:
            return self._default
        return Destination(reject=SMTPError(550, (5, 1, 2), "No route to this recipient"))

    # Checks before any message

    async def early_check(self, conn: ConnState) -> None:
        """Run every check that implements `EarlyCheck`, concurrently.

        Raises:
            SMTPError: the first refusing check in configured order refuses the connection.
        """
        early = [s for s in self.checks if isinstance(s.check, EarlyCheck)]
        if not early:
            return

        async def run(spec: CheckSpec) -> SMTPError | None:
            check = spec.check
            assert isinstance(check, EarlyCheck)
            try:
                await check.check_connection(conn)
            except Exception as exc:
                err = _as_smtp(exc, what="a connection check")
                return err if err.check_name else _named_check(err, spec.name)
            return None

        for err in await _eager.gather([run(s) for s in early]):
            if err is not None:
                raise err

    # DeliveryTarget

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> PipelineDelivery:
        """Begin a message: run connection and sender checks, rewrite the sender.

        Raises:
            SMTPError: a check refused the connection or sender, or a modifier failed.
                Nothing is left open.
        """
        delivery = PipelineDelivery(self, msg_meta.deep_copy(), mail_from)
        try:
            await delivery.begin()
        except BaseException:
            await _to_completion(delivery.abort_quietly())
            raise
        return delivery


def _named_check(err: SMTPError, check: str) -> SMTPError:
    named = SMTPError(err.code, err.enhanced_code, err.message, check_name=check, misc=err.misc)
    named.__cause__ = err.__cause__
    return named


class _MsgLog(logging.LoggerAdapter[logging.Logger]):
    """Puts the message id in front of every line."""

    def process(
        self, msg: object, kwargs: MutableMapping[str, object]
    ) -> tuple[object, MutableMapping[str, object]]:
        msg_id = self.extra["msg_id"] if self.extra else "?"
        return f"msg {msg_id}: {msg}", kwargs


@final
class _TargetRun:
    """One target's delivery of one message."""

    __slots__ = ("body_failed", "body_given", "delivery", "name", "origins", "target")

    def __init__(self, target: DeliveryTarget, delivery: Delivery) -> None:
        self.target = target
        self.name = name_of(target)
        self.delivery = delivery
        self.origins: dict[str, list[str]] = {}  # target recipient -> client recipients
        self.body_given = False
        self.body_failed = False

    async def add(self, rcpt: str, origin: str) -> None:
        known = self.origins.get(rcpt)
        if known is None:
            try:
                await self.delivery.add_rcpt(rcpt)
            except Exception as exc:
                raise _as_smtp(exc, target=self.name) from exc
            self.origins[rcpt] = [origin]
        elif origin not in known:
            known.append(origin)

    def all_origins(self) -> list[str]:
        out: list[str] = []
        for origins in self.origins.values():
            out.extend(o for o in origins if o not in out)
        return out


@final
class _DestRun:
    __slots__ = ("dest", "mods", "runs", "sender")

    def __init__(self, dest: Destination, mods: list[ModifierState], sender: str) -> None:
        self.dest = dest
        self.mods = mods
        self.sender = sender
        self.runs: list[_TargetRun] = []


@final
class _Collector:
    """Maps a target's per-recipient statuses back to the recipients the client gave."""

    __slots__ = ("errors", "run")

    def __init__(self, run: _TargetRun, errors: dict[str, Exception]) -> None:
        self.run = run
        self.errors = errors

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        if err is None:
            return
        for origin in self.run.origins.get(rcpt_to, ()):
            self.errors.setdefault(origin, _as_smtp(err, target=self.run.name))


_OPEN, _BODY_OK, _FAILED, _DONE = "open", "body ok", "failed", "done"


@final
class PipelineDelivery:
    """One message in a Pipeline. Implements Delivery and PartialDelivery.

    `meta` is this message's own MsgMetadata copy, which the targets see: a message source
    may record per-recipient options in `meta.rcpt_opts` before `add_rcpt`.
    """

    def __init__(self, pipeline: Pipeline, meta: MsgMetadata, mail_from: str) -> None:
        self._p = pipeline
        self._meta = meta
        self._mail_from = mail_from
        self._sender = mail_from
        self._log = _MsgLog(_log, {"msg_id": meta.id})
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self._runner = CheckRunner(meta)
        self._mod_states: list[ModifierState] = []  # every state made, to close them all
        self._mods: list[ModifierState] = []  # the pipeline's own, in order
        self._dests: dict[int, _DestRun] = {}
        self._runs: dict[int, _TargetRun] = {}
        self._accepted: dict[str, str] = {}  # lookup key -> recipient as the client gave it
        self._state = _OPEN

    @property
    def meta(self) -> MsgMetadata:
        return self._meta

    # Stages

    async def begin(self) -> None:
        checks = self._p.checks
        await self._runner.connection(checks)
        await self._runner.sender(checks, self._mail_from)
        self._mods = await self._new_mod_states(self._p.modifiers)
        self._sender = await self._rewrite_sender(self._mods, self._mail_from)
        if self._debug:
            self._log.debug("started, sender %r", self._sender)

    async def add_rcpt(self, rcpt_to: str) -> None:
        if self._state != _OPEN:
            raise _bad_sequence("recipient after the body")
        key = _route_key(rcpt_to)
        if key in self._accepted:
            return
        try:
            await self._runner.rcpt(self._p.checks, rcpt_to)
            # Route and check every address the recipient becomes before any target sees
            # one: a refused alias member refuses the recipient, not half of it.
            plan: list[tuple[_DestRun, list[str]]] = []
            for final in await self._rewrite_rcpt(self._mods, rcpt_to):
                dest = await self._p.route(final, key=key if final == rcpt_to else None)
                if dest.reject is not None:
                    raise _as_smtp(dest.reject)
                drun = await self._dest_run(dest)
                if dest.checks:
                    await self._runner.rcpt(dest.checks, final)
                finals = await self._rewrite_rcpt(drun.mods, final) if drun.mods else [final]
                plan.append((drun, finals))
            for drun, finals in plan:
                for target_rcpt in finals:
                    for run in drun.runs:
                        await run.add(target_rcpt, rcpt_to)
                    if self._meta.original_rcpts is None:
                        self._meta.original_rcpts = {}
                    self._meta.original_rcpts[target_rcpt] = rcpt_to
        except asyncio.CancelledError:
            await _to_completion(self.abort_quietly())
            raise
        except SMTPError as err:
            self._log.info("recipient %r refused: %s", rcpt_to, err)
            raise
        self._runner.passed(rcpt_to)
        self._accepted[key] = rcpt_to
        if self._debug:
            self._log.debug("recipient %r accepted", rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        errors: dict[str, Exception] = {}
        await self._deliver_body(header, body, errors, partial=False)

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        errors: dict[str, Exception] = {}
        try:
            await self._deliver_body(header, body, errors, partial=True)
        except SMTPError as err:  # checks or modifiers refused the whole message
            for origin in self._accepted.values():
                errors.setdefault(origin, err)
        for origin in self._accepted.values():
            c.set_status(origin, errors.get(origin))

    async def _deliver_body(
        self, header: Header, body: Buffer, errors: dict[str, Exception], *, partial: bool
    ) -> None:
        if self._state != _OPEN:
            raise _bad_sequence("a second body, or a body after abort")
        if not self._accepted:
            raise _bad_sequence("a body without accepted recipients")
        self._state = _FAILED  # until every target has the body
        header = header.copy()
        try:
            specs: Sequence[CheckSpec] = self._p.checks  # the same tuple: its states are cached
            if any(drun.dest.checks for drun in self._dests.values()):
                specs = [*specs]
                for drun in self._dests.values():
                    specs.extend(s for s in drun.dest.checks if s not in specs)
            await self._runner.body(specs, header, body)
            self._add_check_fields(header)
            for state in self._mods:
                await self._rewrite_body(state, header, body)
            for drun in self._dests.values():
                dest_header = header.copy() if drun.mods else header
                for state in drun.mods:
                    await self._rewrite_body(state, dest_header, body)
                for run in drun.runs:
                    if not run.body_given and run.origins:
                        run.body_given = True
                        await self._target_body(run, dest_header, body, errors, partial)
        except asyncio.CancelledError:
            await _to_completion(self.abort_quietly())
            raise
        if not errors:
            self._state = _BODY_OK
        elif partial and len(errors) < len(self._accepted):
            self._state = _BODY_OK  # some recipients made it: commit delivers to them
        if self._debug:
            self._log.debug("body given to %d target(s)", len(self._runs))

    async def _target_body(
        self,
        run: _TargetRun,
        header: Header,
        body: Buffer,
        errors: dict[str, Exception],
        partial: bool,
    ) -> None:
        delivery = run.delivery
        if partial and isinstance(delivery, PartialDelivery):
            await delivery.body_non_atomic(_Collector(run, errors), header, body)
            return
        try:
            await delivery.body(header, body)
        except Exception as exc:
            run.body_failed = True
            err = _as_smtp(exc, target=run.name)
            self._log.warning("target %s refused the body: %s", run.name, err)
            if not partial:
                raise err from exc
            for origin in run.all_origins():
                errors.setdefault(origin, err)

    async def commit(self) -> None:
        if self._state != _BODY_OK:
            raise _bad_sequence("commit without a delivered body")
        self._state = _DONE
        await _to_completion(self._commit_all())

    async def _commit_all(self) -> None:
        failures: list[SMTPError] = []
        try:
            for run in self._runs.values():
                try:
                    if run.origins and run.body_given and not run.body_failed:
                        await run.delivery.commit()
                    else:
                        await asyncio.wait_for(run.delivery.abort(), ABORT_TIMEOUT)
                except (Exception, asyncio.CancelledError) as exc:
                    # Shielded by _to_completion: a cancellation here is the target's own.
                    err = _as_smtp(_own_failure(exc), target=run.name)
                    self._log.error("target %s failed to commit: %s", run.name, err)
                    failures.append(err)
                    await self._abort_one(run)  # undo what the failed commit left behind
        finally:
            self._close_states()
        if failures:
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also failed: target {other.target_name!r}: {other}")
            raise first
        self._log.info("delivered to %d recipient(s)", len(self._accepted))

    async def abort(self) -> None:
        if self._state == _DONE:
            return
        self._state = _DONE
        failures = await _to_completion(self._abort_all())
        if failures:
            raise failures[0]

    async def abort_quietly(self) -> None:
        """Abort everything; errors are logged only (the caller has its own to raise)."""
        if self._state != _DONE:
            self._state = _DONE
            await self._abort_all()

    async def _abort_all(self) -> list[SMTPError]:
        failures: list[SMTPError] = []
        try:
            for run in self._runs.values():
                err = await self._abort_one(run)
                if err is not None:
                    failures.append(err)
        finally:
            self._close_states()
        self._log.info("aborted")
        return failures

    async def _abort_one(self, run: _TargetRun) -> SMTPError | None:
        try:
            await asyncio.wait_for(run.delivery.abort(), ABORT_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:
            err = _as_smtp(_own_failure(exc), target=run.name)
            self._log.error("target %s failed to abort: %s", run.name, err)
            return err
        return None

    # Helpers

    def _close_states(self) -> None:
        self._runner.close()
        states, self._mod_states = self._mod_states, []
        for state in states:
            try:
                state.close()
            except Exception as exc:
                self._log.error("closing modifier state %r failed: %r", state, exc)

    def _add_check_fields(self, header: Header) -> None:
        for field in reversed(self._runner.header_fields):
            header.add_field(field)
        if self._runner.auth_results:
            value = format_authentication_results(self._p.hostname, self._runner.auth_results)
            header.add("Authentication-Results", value)

    async def _dest_run(self, dest: Destination) -> _DestRun:
        drun = self._dests.get(id(dest))
        if drun is not None:
            return drun
        mods = await self._new_mod_states(dest.modifiers) if dest.modifiers else []
        sender = await self._rewrite_sender(mods, self._sender) if mods else self._sender
        drun = _DestRun(dest, mods, sender)
        for target in dest.targets:
            run = self._runs.get(id(target))
            if run is None:
                try:
                    delivery = await target.start(self._meta, sender)
                except Exception as exc:
                    raise _as_smtp(exc, target=name_of(target)) from exc
                run = self._runs[id(target)] = _TargetRun(target, delivery)
            drun.runs.append(run)
        self._dests[id(dest)] = drun  # only once every target started
        return drun

    async def _new_mod_states(self, modifiers: Sequence[Modifier]) -> list[ModifierState]:
        states: list[ModifierState] = []
        for mod in modifiers:
            try:
                state = await mod.mod_state_for_msg(self._meta)
            except Exception as exc:
                raise _as_smtp(exc, what=f"modifier {name_of(mod)}") from exc
            self._mod_states.append(state)
            states.append(state)
        return states

    async def _rewrite_sender(self, states: Sequence[ModifierState], sender: str) -> str:
        for state in states:
            try:
                sender = await state.rewrite_sender(sender)
            except Exception as exc:
                raise _as_smtp(exc, what="a sender modifier") from exc
        return sender

    async def _rewrite_rcpt(self, states: Sequence[ModifierState], rcpt: str) -> list[str]:
        rcpts = [rcpt]
        for state in states:
            out: list[str] = []
            for r in rcpts:
                try:
                    new = await state.rewrite_rcpt(r)
                except Exception as exc:
                    raise _as_smtp(exc, what="a recipient modifier") from exc
                if not new or not isinstance(new, (list, tuple)):
                    raise _bad_rewrite(r, new)
                for n in new:
                    if not isinstance(n, str) or not n:
                        raise _bad_rewrite(r, new)
                    if n not in out:
                        out.append(n)
            rcpts = out
        return rcpts

    async def _rewrite_body(self, state: ModifierState, header: Header, body: Buffer) -> None:
        try:
            await state.rewrite_body(header, body)
        except Exception as exc:
            raise _as_smtp(exc, what="a header modifier") from exc
