"""Fault injection, counted per recipient: whatever module call fails or is cancelled, a
recipient the client was refused is delivered by no target, and a recipient the client was
told OK is delivered by every target its route names, exactly once.

The pipelines are built from a generated shape: destinations (by domain and by address)
whose targets come from a small shared pool, optional modifiers that fan a recipient out
to two addresses (into another destination, for the pipeline's own), optional checks. An
unfaulted dry run of each shape lists the module calls it makes; the faults are drawn from
that list, so each one fires (unless an earlier fault changes the path).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mailmodule import (
    Buffer,
    CheckResult,
    Delivery,
    Header,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
    StatusCollector,
)
from mailmodule.errors import DeliveryStateError
from mailmodule.pipeline import Destination, Pipeline, PipelineDelivery, RecipientStatus
from tests.pipeline_kit import MemoryTarget, Named

SENDER = "s@example.org"
# The recipients a client may give, and what modifiers may add: e@three.example has no
# route in any shape; l@... exist only as aliases.
CLIENT_ADDRS = (
    "a@one.example",
    "b@one.example",
    "vip@one.example",
    "c@two.example",
    "d@two.example",
    "e@three.example",
)
ALL_ADDRS = (*CLIENT_ADDRS, "l@one.example", "l@two.example")
DEST_KEYS = ("one.example", "two.example", "vip@one.example")
N_TARGETS = 4

# Every kind of fault point; a point is its kind, the module's name and, for calls about
# one address, the address.
POINT_KINDS = frozenset(
    {
        "check_state",
        "conn",
        "sender",
        "rcpt",
        "check_body",
        "mod_state",
        "rewrite_sender",
        "rewrite_rcpt",
        "rewrite_body",
        "start",
        "add_rcpt",
        "body",
        "body_non_atomic",
        "status",
        "commit",
        "abort",
    }
)
FAULT_KINDS = ("error", "smtp4", "smtp5", "cancel")
# The points whose faults fail one recipient (the one being added, or one a target fails
# in the body), or clean up.
RECIPIENT_POINTS = frozenset({"rcpt", "rewrite_rcpt", "start", "add_rcpt", "status", "abort"})
STATUS_KINDS = ("error", "smtp4", "smtp5")  # a status is an Exception, never a cancellation

Point = tuple[str, ...]


# The shape of a pipeline


@attrs.frozen
class TargetSpec:
    name: str
    partial: bool  # its deliveries implement PartialDelivery
    refuse: frozenset[str]  # add_rcpt refuses these with 550


@attrs.frozen
class ModSpec:
    name: str
    aliases: tuple[tuple[str, str], ...]  # address -> the second address it becomes

    def rewrite(self, addr: str) -> list[str]:
        return [addr, *(alias for key, alias in self.aliases if key == addr)]

    def tag(self, sender: str) -> str:
        local, _, domain = sender.rpartition("@")
        return f"{local}+{self.name.rpartition('.')[2]}@{domain}"


@attrs.frozen
class DestSpec:
    key: str
    targets: tuple[int, ...]
    mod: ModSpec | None
    check: str | None


@attrs.frozen
class Shape:
    targets: tuple[TargetSpec, ...]
    dests: tuple[DestSpec, ...]
    checks: tuple[str, ...]
    mods: tuple[ModSpec, ...]
    rcpts: tuple[str, ...]
    non_atomic: bool  # the client uses body_non_atomic
    client_aborts: bool  # the client aborts instead of committing
    suspend: bool  # every module call really waits (else it answers at once)


def mod_specs(name: str) -> st.SearchStrategy[ModSpec]:
    aliases = st.dictionaries(st.sampled_from(ALL_ADDRS), st.sampled_from(ALL_ADDRS), max_size=2)
    return st.builds(ModSpec, st.just(name), aliases.map(lambda d: tuple(sorted(d.items()))))


# A target refuses no address, or (one time in three) one.
REFUSALS = st.sampled_from([None] * 2 * len(ALL_ADDRS) + list(ALL_ADDRS)).map(
    lambda a: frozenset() if a is None else frozenset({a})
)


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    targets = tuple(
        TargetSpec(
            f"target.{i}",
            draw(st.booleans()),
            draw(REFUSALS),
        )
        for i in range(N_TARGETS)
    )
    keys = draw(st.lists(st.sampled_from(DEST_KEYS), min_size=1, max_size=3, unique=True))
    dests = tuple(
        DestSpec(
            key,
            tuple(
                draw(st.lists(st.integers(0, N_TARGETS - 1), min_size=1, max_size=3, unique=True))
            ),
            draw(st.none() | mod_specs(f"modify.d{i}")),
            draw(st.sampled_from([None, f"check.d{i}"])),
        )
        for i, key in enumerate(keys)
    )
    checks = tuple(f"check.p{i}" for i in range(draw(st.integers(0, 2))))
    mods = tuple(draw(mod_specs(f"modify.p{i}")) for i in range(draw(st.integers(0, 2))))
    rcpts = tuple(
        draw(st.lists(st.sampled_from(CLIENT_ADDRS), min_size=2, max_size=5, unique=True))
    )
    return Shape(
        targets,
        dests,
        checks,
        mods,
        rcpts,
        non_atomic=draw(st.booleans()),
        client_aborts=draw(st.sampled_from([False, False, False, True])),
        suspend=draw(st.booleans()),
    )


# Where each recipient should go, from the shape alone


def rewrite(mods: Sequence[ModSpec], addr: str) -> list[str]:
    """As ModifierRunner.rewrite_rcpt: each modifier over every address so far, each once."""
    out = [addr]
    for mod in mods:
        after: list[str] = []
        for a in out:
            after.extend(n for n in mod.rewrite(a) if n not in after)
        out = after
    return out


def route(shape: Shape, addr: str) -> DestSpec | None:
    by_key = {d.key: d for d in shape.dests}
    return by_key.get(addr) or by_key.get(addr.rpartition("@")[2])


def group(dest: DestSpec) -> str:
    """Which delivery of a target a destination's recipients go into: its own when it has
    modifiers, else the one all such destinations share ("")."""
    return dest.key if dest.mod is not None else ""


Entry = tuple[str, str, str]  # (target name, group, address the target is given)


def entries(shape: Shape, rcpt: str) -> list[Entry] | None:
    """Every (target, group, address) the recipient's route names; None: no route."""
    out: list[Entry] = []
    for addr in rewrite(shape.mods, rcpt):
        dest = route(shape, addr)
        if dest is None:
            return None
        for final in rewrite([dest.mod] if dest.mod else [], addr):
            out.extend((shape.targets[i].name, group(dest), final) for i in dest.targets)
    return out


def senders(shape: Shape) -> dict[str, str]:
    """The sender each group's deliveries start with -> the group."""
    shared = SENDER
    for mod in shape.mods:
        shared = mod.tag(shared)
    out = {shared: ""}
    for dest in shape.dests:
        if dest.mod is not None:
            out[dest.mod.tag(shared)] = dest.key
    return out


# Faults


@attrs.frozen
class Fault:
    point: Point
    nth: int  # fires at the nth call at that point (0: the first)
    kind: str

    def exception(self) -> Exception:
        if self.kind == "smtp4":
            return SMTPError(451, (4, 3, 0), f"injected at {self.point}")
        if self.kind == "smtp5":
            return SMTPError(550, (5, 7, 1), f"injected at {self.point}")
        return Injected(f"injected at {self.point}")


class Injected(RuntimeError):
    pass


class Plan:
    """The faults of one run; records every call at a fault point."""

    def __init__(self, faults: Sequence[Fault] = (), *, suspend: bool = False) -> None:
        self.faults = {(f.point, f.nth): f for f in faults}
        self.suspend = suspend
        self.calls: Counter[Point] = Counter()
        self.hits: list[tuple[Point, int]] = []
        self.fired: list[Fault] = []

    def take(self, point: Point) -> Fault | None:
        nth = self.calls[point]
        self.calls[point] += 1
        self.hits.append((point, nth))
        fault = self.faults.get((point, nth))
        if fault is not None:
            self.fired.append(fault)
        return fault

    async def hit(self, *point: str) -> None:
        fault = self.take(point)
        if self.suspend:
            await asyncio.sleep(0)
        if fault is None:
            return
        if fault.kind == "cancel":
            raise asyncio.CancelledError
        raise fault.exception()


# Modules that record what was done to them


class World:
    """Every state and delivery made for one message."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.states: list[RecState] = []
        self.deliveries: list[RecDelivery] = []

    def open_deliveries(self) -> list[RecDelivery]:
        return [d for d in self.deliveries if not d.committed and not d.aborts]

    def open_states(self) -> list[RecState]:
        return [s for s in self.states if not s.closes]


class RecState:
    """A check state or a modifier state."""

    def __init__(self, name: str, world: World, mod: ModSpec | None = None) -> None:
        self.name, self.world, self.mod = name, world, mod
        self.closes = 0
        world.states.append(self)

    async def check_connection(self) -> CheckResult:
        await self.world.plan.hit("conn", self.name)
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        await self.world.plan.hit("sender", self.name)
        return CheckResult()

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        await self.world.plan.hit("rcpt", self.name, rcpt_to)
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        await self.world.plan.hit("check_body", self.name)
        return CheckResult()

    async def rewrite_sender(self, mail_from: str) -> str:
        await self.world.plan.hit("rewrite_sender", self.name)
        assert self.mod is not None
        return self.mod.tag(mail_from)

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        await self.world.plan.hit("rewrite_rcpt", self.name, rcpt_to)
        assert self.mod is not None
        return self.mod.rewrite(rcpt_to)

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        await self.world.plan.hit("rewrite_body", self.name)

    def close(self) -> None:
        self.closes += 1


class RecCheck(Named):
    def __init__(self, name: str, world: World) -> None:
        super().__init__(name)
        self.world = world

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> RecState:
        await self.world.plan.hit("check_state", self._name)
        return RecState(self._name, self.world)


class RecModifier(Named):
    def __init__(self, spec: ModSpec, world: World) -> None:
        super().__init__(spec.name)
        self.spec, self.world = spec, world

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> RecState:
        await self.world.plan.hit("mod_state", self._name)
        return RecState(self._name, self.world, self.spec)


class RecDelivery:
    """One delivery into a target, without body_non_atomic."""

    def __init__(self, target: RecTarget, mail_from: str) -> None:
        self.target, self.mail_from = target, mail_from
        self.name = target.spec.name
        self.plan = target.world.plan
        self.events: list[str] = []
        self.rcpts: list[str] = []  # every address add_rcpt took, as often as it took it
        self.failed: set[str] = set()  # addresses body_non_atomic gave an error status
        self.bodies = 0  # bodies taken
        self.committed = False
        self.aborts = 0

    async def add_rcpt(self, rcpt_to: str) -> None:
        self.events.append("add_rcpt")
        await self.plan.hit("add_rcpt", self.name, rcpt_to)
        if rcpt_to in self.target.spec.refuse:
            raise SMTPError(550, (5, 1, 1), f"no mailbox {rcpt_to}")
        self.rcpts.append(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        self.events.append("body")
        await self.plan.hit("body", self.name)
        self.bodies += 1

    async def commit(self) -> None:
        self.events.append("commit")
        await self.plan.hit("commit", self.name)  # a failed commit committed nothing
        self.committed = True

    async def abort(self) -> None:
        self.events.append("abort")
        self.aborts += 1
        await self.plan.hit("abort", self.name)  # aborted, then reported an error

    def delivered(self) -> list[str]:
        """The addresses a commit delivers: taken, and not failed in the body."""
        return [a for a in self.rcpts if a not in self.failed]

    def problems(self) -> list[str]:
        """What is wrong with the calls this delivery got."""
        out: list[str] = []
        if self.committed + self.aborts != 1:
            out.append("not committed or aborted exactly once")
        if self.committed and (self.events[-1] != "commit" or self.bodies != 1):
            out.append("committed without exactly one body, or called after commit")
        if self.aborts and self.events[-1] != "abort":
            out.append("called after abort")
        first_body = next(
            (i for i, e in enumerate(self.events) if e in ("body", "body_non_atomic")), None
        )
        if first_body is not None and "add_rcpt" in self.events[first_body:]:
            out.append("add_rcpt after the body")
        return out

    def __repr__(self) -> str:
        return (
            f"<{self.name} from {self.mail_from} rcpts={self.rcpts} failed={sorted(self.failed)}"
            f" events={self.events}>"
        )


class RecPartialDelivery(RecDelivery):
    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        self.events.append("body_non_atomic")
        await self.plan.hit("body_non_atomic", self.name)
        self.bodies += 1
        for addr in self.rcpts:
            fault = self.plan.take(("status", self.name, addr))
            if fault is not None:
                self.failed.add(addr)
            c.set_status(addr, None if fault is None else fault.exception())


class RecTarget(Named):
    def __init__(self, spec: TargetSpec, world: World) -> None:
        super().__init__(spec.name)
        self.spec, self.world = spec, world

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        await self.world.plan.hit("start", self._name)
        cls = RecPartialDelivery if self.spec.partial else RecDelivery
        delivery = cls(self, mail_from)
        self.world.deliveries.append(delivery)
        return delivery


def build(shape: Shape, world: World) -> Pipeline:
    targets = [RecTarget(spec, world) for spec in shape.targets]
    return Pipeline(
        checks=[RecCheck(name, world) for name in shape.checks],
        modifiers=[RecModifier(mod, world) for mod in shape.mods],
        destinations={
            d.key: Destination(
                targets=[targets[i] for i in d.targets],
                checks=[RecCheck(d.check, world)] if d.check else [],
                modifiers=[RecModifier(d.mod, world)] if d.mod else [],
            )
            for d in shape.dests
        },
    )


# The client


class Collector:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, Exception | None]] = []

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses.append((rcpt_to, err))


@attrs.define
class Seen:
    """What the client heard."""

    errors: list[tuple[str, BaseException]] = attrs.Factory(list)  # (call, error)
    refused: dict[str, SMTPError] = attrs.Factory(dict)  # add_rcpt raised
    accepted: list[str] = attrs.Factory(list)  # add_rcpt returned
    statuses: list[tuple[str, Exception | None]] = attrs.Factory(list)
    body_ok: list[str] = attrs.Factory(list)  # accepted, and the body (or its status) OK
    commit_called: bool = False
    commit_error: SMTPError | None = None
    told_ok: list[str] = attrs.Factory(list)
    cancelled: str = ""  # the call the cancellation came out of
    open_at_cancel: list[RecDelivery] = attrs.Factory(list)
    states_open_at_cancel: list[RecState] = attrs.Factory(list)
    delivery: PipelineDelivery | None = None


async def run_client(pipeline: Pipeline, shape: Shape, world: World) -> Seen:
    """Play an SMTP client: MAIL, RCPT each, DATA (atomic or per recipient), then commit
    when allowed, else abort; after a cancellation, aclose."""
    seen = Seen()

    async def cancelled(call: str, exc: asyncio.CancelledError) -> None:
        seen.errors.append((call, exc))
        seen.cancelled = call
        seen.open_at_cancel = world.open_deliveries()
        seen.states_open_at_cancel = world.open_states()
        if seen.delivery is not None:
            await seen.delivery.aclose()

    try:
        d = seen.delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    except asyncio.CancelledError as exc:
        await cancelled("start", exc)
        return seen
    except Exception as exc:
        seen.errors.append(("start", exc))
        return seen
    for rcpt in shape.rcpts:
        try:
            await d.add_rcpt(rcpt)
        except asyncio.CancelledError as exc:
            await cancelled("add_rcpt", exc)
            return seen
        except Exception as exc:
            seen.errors.append(("add_rcpt", exc))
            if isinstance(exc, SMTPError):
                seen.refused[rcpt] = exc
        else:
            seen.accepted.append(rcpt)
    if seen.accepted and not shape.client_aborts:
        header, body = Header([("Subject", "x")]), MemoryBuffer(b"body\r\n")
        try:
            if shape.non_atomic:
                c = Collector()
                await d.body_non_atomic(c, header, body)
                seen.statuses = c.statuses
                seen.body_ok = [r for r, err in c.statuses if err is None]
            else:
                await d.body(header, body)
                seen.body_ok = list(seen.accepted)
        except asyncio.CancelledError as exc:
            await cancelled("body", exc)
            return seen
        except Exception as exc:
            seen.errors.append(("body", exc))
    if seen.body_ok:
        seen.commit_called = True
        try:
            await d.commit()
        except asyncio.CancelledError as exc:
            await cancelled("commit", exc)
            return seen
        except Exception as exc:
            seen.errors.append(("commit", exc))
            if isinstance(exc, SMTPError):
                seen.commit_error = exc
        else:
            seen.told_ok = list(seen.body_ok)
        return seen
    try:
        await d.abort()
    except asyncio.CancelledError as exc:
        await cancelled("abort", exc)
    except Exception as exc:
        seen.errors.append(("abort", exc))
    return seen


def run(shape: Shape, faults: Sequence[Fault] = ()) -> tuple[World, Seen]:
    world = World(Plan(faults, suspend=shape.suspend))
    pipeline = build(shape, world)
    return world, asyncio.run(run_client(pipeline, shape, world))


# What must hold


def check_invariants(shape: Shape, world: World, seen: Seen) -> None:
    fired = world.plan.fired
    cancels = [f for f in fired if f.kind == "cancel"]

    # The client hears SMTPErrors, or the cancellation it caused; never a protocol error.
    for call, err in seen.errors:
        if isinstance(err, asyncio.CancelledError):
            assert cancels, f"{call}: a cancellation no fault caused"
        else:
            assert isinstance(err, SMTPError), f"{call} raised a bare {err!r}"
            assert not isinstance(err, DeliveryStateError), f"{call}: {err}"

    # A fault is heard, unless it is a failure to abort, which is only logged.
    if any(f.point[0] != "abort" for f in fired):
        assert seen.errors or any(err for _, err in seen.statuses), f"{fired} went unheard"

    # Every delivery is committed or aborted exactly once, every state closed once.
    for d in world.deliveries:
        assert not d.problems(), (d.problems(), d)
    assert all(s.closes == 1 for s in world.states), [(s.name, s.closes) for s in world.states]
    if seen.cancelled:
        # A cancellation goes on only once the message is aborted and its states closed.
        assert not seen.open_at_cancel, seen.open_at_cancel
        assert not seen.states_open_at_cancel, [s.name for s in seen.states_open_at_cancel]
        assert not any(d.committed for d in world.deliveries)

    # Per recipient.
    routes = {r: entries(shape, r) for r in shape.rcpts}
    groups = senders(shape)
    committed: dict[tuple[str, str], list[RecDelivery]] = {}
    failed_commits: set[tuple[str, str]] = set()  # (target, group) whose commit raised
    for d in world.deliveries:
        assert d.mail_from in groups, (d.mail_from, groups)
        key = (d.name, groups[d.mail_from])
        if d.committed:
            committed.setdefault(key, []).append(d)
        elif "commit" in d.events:
            failed_commits.add(key)
    if not seen.commit_called:
        assert not committed, committed

    refusing = {t.name: t.refuse for t in shape.targets}
    for rcpt, route_ in routes.items():
        statically_refused = route_ is None or any(a in refusing[t] for t, _, a in route_)
        if statically_refused:
            assert rcpt not in seen.accepted, f"{rcpt} has no route or a target refuses it"
    if shape.non_atomic and seen.statuses:
        assert sorted(r for r, _ in seen.statuses) == sorted(seen.accepted), seen.statuses

    if seen.commit_error is not None:
        # The one exception to "refused to the client, delivered by no target": a target's
        # commit failed, and the other targets may have committed already (or after it, as
        # commit goes on with the rest). The error names a target whose commit failed.
        assert failed_commits, f"commit raised {seen.commit_error!r}, yet no target's commit"
        assert seen.commit_error.target_name in {t for t, _ in failed_commits}, (
            seen.commit_error,
            failed_commits,
        )
    # Whom the committed deliveries are for: those told OK, or (a commit failed) those that
    # would have been.
    wanted = seen.told_ok if seen.commit_error is None else seen.body_ok
    needed: dict[tuple[str, str], set[str]] = {}
    for rcpt in wanted:
        route_ = routes[rcpt]
        assert route_ is not None
        for target, grp, addr in route_:
            needed.setdefault((target, grp), set()).add(addr)

    refused_to_client = [r for r in shape.rcpts if r not in seen.told_ok]
    for rcpt in refused_to_client:
        for target, grp, addr in routes[rcpt] or ():
            if addr in needed.get((target, grp), set()):
                continue  # also the address of a recipient told OK
            for d in committed.get((target, grp), []):
                assert addr not in d.delivered(), f"{rcpt} refused, yet {addr} committed by {d}"
    for key, addrs in needed.items():
        if key in failed_commits:
            assert key not in committed, committed[key]
            continue
        ds = committed.get(key, [])
        assert len(ds) == 1, f"{key}: {len(ds)} committed deliveries for {addrs}: {ds}"
        (d,) = ds
        counts = Counter(d.delivered())
        assert set(counts) == addrs, f"{d} committed, wanted exactly {sorted(addrs)}"
        assert all(n == 1 for n in counts.values()), f"{d}: an address given twice"
    for key, ds in committed.items():
        assert key in needed, f"{ds} committed, for no recipient told OK"

    # delivery.recipients agrees with what the client heard.
    if seen.delivery is not None:
        records = {r.given: r for r in seen.delivery.recipients}
        for rcpt, err in seen.refused.items():
            assert records[rcpt].status is RecipientStatus.REFUSED, records[rcpt]
            assert records[rcpt].error is err, (records[rcpt], err)
        delivered = {g for g, r in records.items() if r.status is RecipientStatus.DELIVERED}
        truly_delivered = {
            r for r in wanted if not any((t, g) in failed_commits for t, g, _ in routes[r] or ())
        }
        assert delivered == truly_delivered, (
            f"DELIVERED: {sorted(delivered)}, delivered everywhere: {sorted(truly_delivered)}"
        )


# The property


@st.composite
def faults_for(draw: st.DrawFn, shape: Shape) -> list[Fault]:
    """Faults at calls an unfaulted run of `shape` makes, and at aborts of its targets."""
    world, _ = run(attrs.evolve(shape, client_aborts=False))
    points = set(world.plan.hits)
    points.update((("abort", t.name), n) for t in shape.targets for n in (0, 1))
    # A kind of point first, then a point of that kind, so that body-time faults are not
    # drowned by the many points of MAIL time. Half the examples fault only calls about
    # one recipient, and never by cancelling: the message goes on, with some recipients
    # refused, which is where deliveries are started again without them.
    by_kind: dict[str, list[tuple[Point, int]]] = {}
    for point, nth in sorted(points):
        by_kind.setdefault(point[0], []).append((point, nth))
    one_recipient = draw(st.booleans())
    kinds = sorted(k for k in by_kind if k in RECIPIENT_POINTS or not one_recipient)
    chosen: list[tuple[Point, int]] = []
    for _ in range(draw(st.integers(1, 3)) if kinds else 0):
        hit = draw(st.sampled_from(by_kind[draw(st.sampled_from(kinds))]))
        if hit not in chosen:
            chosen.append(hit)
    return [
        Fault(point, nth, draw(st.sampled_from(fault_kinds)))
        for point, nth in chosen
        for fault_kinds in [STATUS_KINDS if point[0] == "status" or one_recipient else FAULT_KINDS]
    ]


@settings(max_examples=500, deadline=None)
@given(data=st.data(), shape=shapes())
def test_any_fault_leaves_each_recipient_delivered_by_all_its_targets_or_by_none(
    data: st.DataObject, shape: Shape
) -> None:
    faults = data.draw(faults_for(shape), label="faults")
    world, seen = run(shape, faults)
    event(f"faults fired: {len(world.plan.fired)}")
    if len(world.deliveries) > len({(d.name, d.mail_from) for d in world.deliveries}):
        event("a delivery started again")
    if seen.told_ok and len(seen.told_ok) < len(shape.rcpts):
        event("some recipients told OK, some not")
    check_invariants(shape, world, seen)


# Reachability


RICH = Shape(
    targets=(
        TargetSpec("target.0", partial=True, refuse=frozenset()),
        TargetSpec("target.1", partial=False, refuse=frozenset({"d@two.example"})),
        TargetSpec("target.2", partial=True, refuse=frozenset()),
        TargetSpec("target.3", partial=False, refuse=frozenset()),
    ),
    dests=(
        DestSpec("one.example", (0, 1), None, "check.d0"),
        DestSpec(
            "two.example", (2, 1), ModSpec("modify.d1", (("c@two.example", "l@two.example"),)), None
        ),
        DestSpec("vip@one.example", (3,), None, None),
    ),
    checks=("check.p0",),
    mods=(ModSpec("modify.p0", (("a@one.example", "c@two.example"),)),),
    rcpts=("a@one.example", "d@two.example", "vip@one.example", "b@one.example"),
    non_atomic=True,
    client_aborts=False,
    suspend=True,
)


def test_every_kind_of_fault_point_is_reached() -> None:
    """A rich shape reaches every kind of fault point, with either body call."""
    kinds: set[str] = set()
    for non_atomic in (False, True):
        for client_aborts in (False, True):
            shape = attrs.evolve(RICH, non_atomic=non_atomic, client_aborts=client_aborts)
            world, seen = run(shape)
            check_invariants(shape, world, seen)
            kinds.update(point[0] for point, _ in world.plan.hits)
    assert kinds == POINT_KINDS


def test_every_fault_point_of_a_run_fires_when_injected() -> None:
    """Each call a clean run makes is a fault point the plan really fires at."""
    for non_atomic in (False, True):
        shape = attrs.evolve(RICH, non_atomic=non_atomic)
        world, _ = run(shape)
        assert world.plan.hits
        for point, nth in world.plan.hits:
            kind = "smtp4" if point[0] == "status" else "cancel"
            fault = Fault(point, nth, kind)
            faulted, _ = run(shape, [fault])
            assert faulted.plan.fired == [fault]


# Regressions


async def test_a_recipient_one_target_refused_is_committed_by_no_target() -> None:
    """Two targets behind one destination; the second refuses b: the client hears 550 for
    b, and the first target commits exactly a and c (it used to commit a, b and c)."""
    first, second = MemoryTarget("target.first"), MemoryTarget("target.second")
    second.refuse = {"b@example.org"}
    pipeline = Pipeline(destinations={"example.org": Destination(targets=[first, second])})
    delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    await delivery.add_rcpt("a@example.org")
    with pytest.raises(SMTPError) as refused:
        await delivery.add_rcpt("b@example.org")
    assert refused.value.code == 550
    assert refused.value.target_name == "target.second"
    await delivery.add_rcpt("c@example.org")
    await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"body\r\n"))
    await delivery.commit()
    assert [m.rcpts for m in first.messages] == [["a@example.org", "c@example.org"]]
    assert [m.rcpts for m in second.messages] == [["a@example.org", "c@example.org"]]
    assert all(d.outcome in ("committed", "aborted") for d in first.deliveries + second.deliveries)


class FlakyTarget(MemoryTarget):
    """A MemoryTarget whose commit raises (committing nothing), or whose abort raises
    (after aborting)."""

    def __init__(self, name: str, *, commit_fails: bool = False, abort_fails: bool = False) -> None:
        super().__init__(name)
        self.commit_fails, self.abort_fails = commit_fails, abort_fails

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _FlakyDelivery(self, await super().start(msg_meta, mail_from))


class _FlakyDelivery:
    def __init__(self, target: FlakyTarget, inner: Delivery) -> None:
        self.target, self.inner = target, inner

    async def add_rcpt(self, rcpt_to: str) -> None:
        await self.inner.add_rcpt(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        await self.inner.body(header, body)

    async def commit(self) -> None:
        if self.target.commit_fails:
            raise RuntimeError("disk full")
        await self.inner.commit()

    async def abort(self) -> None:
        await self.inner.abort()
        if self.target.abort_fails:
            raise RuntimeError("cannot remove the temporary file")


async def refuse_b_at_a_target_that_fails_to_abort() -> tuple[
    PipelineDelivery, MemoryTarget, MemoryTarget
]:
    """a goes to `first`; b to `second`, which refuses it (so its delivery holds nothing),
    then fails to abort that delivery. The client has been told OK for a, 550 for b, and
    the body is in: only commit is left."""
    first = MemoryTarget("target.first")
    second = FlakyTarget("target.second", abort_fails=True)
    second.refuse = {"b@two.example"}
    pipeline = Pipeline(
        destinations={
            "one.example": Destination(targets=[first]),
            "two.example": Destination(targets=[second]),
        }
    )
    delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    await delivery.add_rcpt("a@one.example")
    with pytest.raises(SMTPError, match="550"):
        await delivery.add_rcpt("b@two.example")
    await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"body\r\n"))
    return delivery, first, second


async def test_a_failed_abort_of_a_delivery_holding_no_recipient_does_not_fail_commit() -> None:
    """Found by the property: a is delivered by the first target, yet commit raises the
    second target's failure to clean up, so the client is told a failed (and will send it
    again)."""
    delivery, first, _ = await refuse_b_at_a_target_that_fails_to_abort()
    await delivery.commit()
    assert [m.rcpts for m in first.messages] == [["a@one.example"]]


async def test_a_delivery_left_without_recipients_is_aborted_once_at_commit() -> None:
    """Found by the property: a failed abort at commit is taken for a failed commit, and the
    delivery is aborted a second time."""
    delivery, _, second = await refuse_b_at_a_target_that_fails_to_abort()
    with contextlib.suppress(SMTPError):  # raised too, see the test above
        await delivery.commit()
    assert second.calls.count("abort") == 1, second.calls


async def test_a_recipient_whose_only_target_failed_to_commit_is_not_reported_delivered() -> None:
    """Found by the property: commit raises the target's failure, and nothing was delivered,
    yet `recipients` reports the recipient DELIVERED ("committed everywhere")."""
    target = FlakyTarget("target.flaky", commit_fails=True)
    pipeline = Pipeline(destinations={"one.example": Destination(targets=[target])})
    delivery = await pipeline.start(MsgMetadata(id="m1"), SENDER)
    await delivery.add_rcpt("a@one.example")
    await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"body\r\n"))
    with pytest.raises(SMTPError) as failed:
        await delivery.commit()
    assert failed.value.target_name == "target.flaky"
    assert target.messages == []
    (record,) = delivery.recipients
    assert record.status is not RecipientStatus.DELIVERED
