"""The module registry: factories, endpoints, instances and aliases; plugins by entry point.

The twin of the registry functions of maddy's `framework/module`, made safe: a `Registry`
is thread-safe, initializes each instance lazily and at most once, names init cycles
instead of deadlocking, and checks that a module registered under a prefix such as
"check." implements that prefix's interface.

Apps and tests may hold their own `Registry`. The module-level functions (`register`,
`get_instance`, ...) work on `default_registry`, where `Dummy` is always registered as
"dummy", both as a factory and as an instance.

Plugins are distributions that declare entry points in the group `mailmodule.modules`
(module factories) or `mailmodule.endpoints` (endpoint factories), named by the module
name:

    [project.entry-points."mailmodule.modules"]
    "check.shout" = "shout:ShoutCheck"

They are registered on the first lookup of a name that is not registered, or by
`load_plugins()`.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.metadata
import inspect
import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, TypeVar, final

import attrs
from typing_extensions import get_protocol_members

from mailmodule.config import ConfigMap
from mailmodule.dummy import Dummy
from mailmodule.errors import (
    DuplicateModuleError,
    InitCycleError,
    InterfaceMismatchError,
    ModuleInitError,
    PluginError,
    RegistryError,
    ShutdownError,
    UnknownModuleError,
)
from mailmodule.interfaces import (
    BlobStore,
    Check,
    Closer,
    DeliveryTarget,
    EndpointFactory,
    IMAPFilter,
    Modifier,
    Module,
    ModuleFactory,
    MXAuthPolicy,
    PlainAuth,
    Storage,
    Table,
    TLSLoader,
)

__all__ = [
    "ENDPOINT_GROUP",
    "MODULE_GROUP",
    "PREFIXES",
    "Registry",
    "check_prefix",
    "close_all",
    "default_registry",
    "get",
    "get_endpoint",
    "get_instance",
    "has_instance",
    "initialized",
    "load_plugins",
    "missing_methods",
    "no_run",
    "register",
    "register_alias",
    "register_deprecated",
    "register_endpoint",
    "register_instance",
    "set_no_run",
]

_log = logging.getLogger("mailmodule.registry")
_T = TypeVar("_T")

#: Entry-point groups that plugins declare their factories in.
MODULE_GROUP: Final = "mailmodule.modules"
ENDPOINT_GROUP: Final = "mailmodule.endpoints"

#: The seed's name prefixes and the interfaces they promise (storage: either one).
PREFIXES: Final[tuple[tuple[str, tuple[type, ...]], ...]] = (
    ("check.", (Check,)),
    ("modify.", (Modifier,)),
    ("target.", (DeliveryTarget,)),
    ("auth.", (PlainAuth,)),
    ("table.", (Table,)),
    ("storage.", (BlobStore, Storage)),
    ("mx_auth.", (MXAuthPolicy,)),
    ("tls.loader.", (TLSLoader,)),
    ("imap.filter.", (IMAPFilter,)),
)

_NEW, _INITIALIZING, _READY, _FAILED, _CLOSED = "new", "initializing", "ready", "failed", "closed"


@attrs.define(eq=False)
class _Instance:
    module: Module
    cfg: ConfigMap
    state: str = _NEW
    owner: int | None = None  # the thread running init
    failure: BaseException | None = None  # why init failed


def missing_methods(obj: object, interface: type) -> tuple[str, ...]:
    """What `obj` lacks to implement the Protocol `interface`: absent methods, and methods
    that are not async where the Protocol's are."""
    problems = []
    for member in sorted(get_protocol_members(interface)):
        want = getattr(interface, member, None)
        have = getattr(obj, member, None)
        if have is None or (callable(want) and not callable(have)):
            problems.append(f"{member}() is missing")
        elif inspect.iscoroutinefunction(want) and not inspect.iscoroutinefunction(have):
            problems.append(f"{member}() must be async")
    return tuple(problems)


def check_prefix(module: object, name: str) -> None:
    """Check that a module registered as `name` implements what its prefix promises.

    Raises:
        InterfaceMismatchError: naming the methods that are missing or not async.
    """
    for prefix, interfaces in PREFIXES:
        if not name.startswith(prefix):
            continue
        reports = [(i, missing_methods(module, i)) for i in interfaces]
        if any(not problems for _, problems in reports):
            return
        closest, problems = min(reports, key=lambda r: len(r[1]))
        others = [i.__name__ for i in interfaces if i is not closest]
        label = closest.__name__ + (f" (or {', '.join(others)})" if others else "")
        raise InterfaceMismatchError(name, label, problems)


@final
class Registry:
    """A registry of module factories, endpoint factories, instances and aliases.

    Every method is safe to call from any thread. Lookups return snapshots, never live views.

    Args:
        discover_plugins: look up entry points of installed plugins when a name is not
            registered (the default); False for a registry that knows only what it is told.
    """

    def __init__(self, *, discover_plugins: bool = True) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._factories: dict[str, ModuleFactory] = {}
        self._endpoints: dict[str, EndpointFactory] = {}
        self._instances: dict[str, _Instance] = {}
        self._aliases: dict[str, str] = {}
        self._init_order: list[tuple[str, _Instance]] = []
        self._waiting: dict[int, str] = {}  # thread -> instance it waits for
        self._initializing = threading.local()  # each thread's stack of names in init
        self._no_run = False
        self._discover = discover_plugins
        self._plugins_loaded = False

    # Factories

    def register(self, name: str, factory: ModuleFactory) -> None:
        """Add a module factory under `name`.

        Raises:
            DuplicateModuleError: `name` is taken (Go's Register panics).
        """
        _check_name(name)
        if not callable(factory):
            raise TypeError(f"factory for {name!r} must be callable, got {factory!r}")
        with self._lock:
            if name in self._factories:
                raise DuplicateModuleError(name)
            self._factories[name] = factory

    def register_deprecated(self, name: str, new_name: str, factory: ModuleFactory) -> None:
        """Add a factory under an old name; using it warns, naming `new_name`.

        Each module built through the old name emits a `DeprecationWarning` and a log line.

        Raises:
            DuplicateModuleError: `name` is taken.
        """

        def deprecated(
            mod_name: str, inst_name: str, aliases: list[str], inline_args: list[str]
        ) -> Module:
            text = f"module {name!r} is deprecated and may be removed; use {new_name!r} instead"
            warnings.warn(text, DeprecationWarning, stacklevel=2)
            _log.warning("%s (instance %r)", text, inst_name)
            return factory(mod_name, inst_name, aliases, inline_args)

        deprecated.__name__ = getattr(factory, "__name__", "factory")
        self.register(name, deprecated)

    def register_endpoint(self, name: str, factory: EndpointFactory) -> None:
        """Add an endpoint factory under `name`.

        Raises:
            DuplicateModuleError: `name` is taken by another endpoint.
        """
        _check_name(name)
        if not callable(factory):
            raise TypeError(f"endpoint factory for {name!r} must be callable, got {factory!r}")
        with self._lock:
            if name in self._endpoints:
                raise DuplicateModuleError(name, kind="endpoint")
            self._endpoints[name] = factory

    def get(self, name: str) -> ModuleFactory:
        """The module factory registered as `name`.

        Raises:
            UnknownModuleError: nothing is registered as `name` (also after looking for
                plugins), with the closest names as suggestions.
        """
        return self._lookup(self._factories, name, "module")

    def get_endpoint(self, name: str) -> EndpointFactory:
        """The endpoint factory registered as `name`.

        Raises:
            UnknownModuleError: no endpoint is registered as `name`.
        """
        return self._lookup(self._endpoints, name, "endpoint")

    def modules(self) -> tuple[str, ...]:
        """The names of every registered module factory, sorted."""
        with self._lock:
            return tuple(sorted(self._factories))

    def endpoints(self) -> tuple[str, ...]:
        """The names of every registered endpoint factory, sorted."""
        with self._lock:
            return tuple(sorted(self._endpoints))

    def _lookup(self, table: dict[str, _T], name: str, kind: str) -> _T:
        with self._lock:
            found = table.get(name)
            must_load = found is None and self._discover and not self._plugins_loaded
        if found is not None:
            return found
        if must_load:
            self.load_plugins()
        with self._lock:
            found = table.get(name)
            if found is not None:
                return found
            raise UnknownModuleError(name, kind=kind, suggestions=_close(name, table))

    # Instances

    def register_instance(
        self, inst: Module, cfg: ConfigMap | Mapping[str, object] | None = None
    ) -> None:
        """Add a module instance under its `instance_name()`, to be initialized with `cfg`
        on first use. An instance of the same name is replaced.

        Raises:
            InterfaceMismatchError: `inst` is not a `Module`, or its `name()` has a prefix
                whose interface it does not implement; names what is missing.
            RegistryError: the instance has no name.
            DuplicateModuleError: its name is taken by an alias.
        """
        if not isinstance(inst, Module):
            raise InterfaceMismatchError(repr(inst), "Module", missing_methods(inst, Module))
        check_prefix(inst, inst.name())
        name = inst.instance_name()
        if not name:
            raise RegistryError(f"an instance of {inst.name()!r} needs an instance name")
        config = cfg if isinstance(cfg, ConfigMap) else ConfigMap(cfg, module=name)
        with self._changed:
            if name in self._aliases:
                raise DuplicateModuleError(name, kind="alias")
            self._instances[name] = _Instance(inst, config)
            self._changed.notify_all()

    def register_alias(self, alias: str, inst_name: str) -> None:
        """Make `get_instance(alias)` return the very instance `get_instance(inst_name)`
        does. Registering an alias again points it elsewhere.

        Raises:
            DuplicateModuleError: `alias` is the name of an instance.
        """
        _check_name(alias)
        _check_name(inst_name)
        with self._lock:
            if alias in self._instances:
                raise DuplicateModuleError(alias, kind="instance")
            if alias == inst_name:
                raise RegistryError(f"alias {alias!r} cannot name itself")
            self._aliases[alias] = inst_name

    def has_instance(self, name: str) -> bool:
        """Whether an instance (or alias of one) is registered as `name`."""
        with self._lock:
            return self._aliases.get(name, name) in self._instances

    def instances(self) -> tuple[str, ...]:
        """The names of every registered instance, sorted."""
        with self._lock:
            return tuple(sorted(self._instances))

    def initialized(self) -> Mapping[str, bool]:
        """A snapshot: each registered instance name, and whether it is initialized."""
        with self._lock:
            return MappingProxyType(
                {name: rec.state == _READY for name, rec in self._instances.items()}
            )

    def get_instance(self, name: str) -> Module:
        """The instance registered as `name` (or aliased to it), initialized.

        The first call runs `init` with the instance's recorded configuration; every other
        call, in any thread, waits for that one and gets the same instance. Narrow the
        result with `isinstance(module, Table)` and the like.

        Raises:
            UnknownModuleError: no instance or alias is `name`; suggests close matches.
            ModuleInitError: `init` failed (now, or on an earlier call); the cause is
                chained. No half-initialized instance is ever handed out.
            InitCycleError: initializing it needs itself (A's init asks for B, B's for A).
        """
        with self._lock:
            rec = self._instances.get(self._aliases.get(name, name))
            if rec is not None and rec.state is _READY:
                return rec.module
        return self._initialize(name)

    def _stack(self) -> list[str]:
        stack: list[str] | None = getattr(self._initializing, "names", None)
        if stack is None:
            stack = self._initializing.names = []
        return stack

    def _initialize(self, name: str) -> Module:
        me = threading.get_ident()
        stack = self._stack()
        with self._changed:
            while True:
                real = self._aliases.get(name, name)
                rec = self._instances.get(real)
                if rec is None:
                    raise UnknownModuleError(
                        name,
                        kind="instance",
                        suggestions=_close(name, [*self._instances, *self._aliases]),
                    )
                if rec.state is _READY:
                    return rec.module
                if rec.state in (_FAILED, _CLOSED):
                    raise _failure(real, rec)
                if rec.state is _NEW:
                    rec.state, rec.owner = _INITIALIZING, me
                    break
                if rec.owner == me:  # this thread is initializing it further up
                    raise InitCycleError((*stack[stack.index(real) :], real))
                cycle = self._cycle_through(me, real)
                if cycle:
                    raise InitCycleError((*stack[-1:], *cycle))
                self._waiting[me] = real
                try:
                    self._changed.wait()
                finally:
                    del self._waiting[me]

        stack.append(real)
        failure: BaseException | None = None
        try:
            cfg = rec.cfg.with_context(module=real, resolver=self.get_instance)
            rec.module.init(cfg)
            cfg.check_unknown()
        except InitCycleError as exc:
            failure = exc
            raise
        except Exception as exc:
            failure = ModuleInitError(real, str(exc))
            failure.__cause__ = exc
            raise failure from exc
        except BaseException as exc:  # interrupted: do not hand out what init left behind
            failure = ModuleInitError(real, f"initialization interrupted ({type(exc).__name__})")
            raise
        finally:
            stack.pop()
            with self._changed:
                rec.owner = None
                if failure is None:
                    rec.state = _READY
                    self._init_order.append((real, rec))
                else:
                    rec.state, rec.failure = _FAILED, failure
                self._changed.notify_all()
        return rec.module

    def _cycle_through(self, me: int, name: str) -> tuple[str, ...]:
        # Follow "instance is initialized by a thread that waits for instance ..." from
        # `name`; reaching this thread means waiting would deadlock.
        path = [name]
        seen: set[str] = set()
        while name not in seen:
            seen.add(name)
            rec = self._instances.get(name)
            if rec is None or rec.state is not _INITIALIZING or rec.owner is None:
                return ()
            if rec.owner == me:
                return tuple(path)
            waits_for = self._waiting.get(rec.owner)
            if waits_for is None:
                return ()
            name = self._aliases.get(waits_for, waits_for)
            path.append(name)
        return ()

    # Flags, plugins, shutdown

    @property
    def no_run(self) -> bool:
        """When set, modules must not start real work: configuration is only checked."""
        return self._no_run

    @no_run.setter
    def no_run(self, value: bool) -> None:
        self._no_run = bool(value)

    def load_plugins(self) -> tuple[PluginError, ...]:
        """Register the factories of installed plugins (entry points in `MODULE_GROUP` and
        `ENDPOINT_GROUP`).

        A broken plugin is logged and returned, and does not stop the others. Entry points
        already registered with the same factory are skipped.

        Returns:
            A `PluginError` for each plugin that could not be loaded or registered.
        """
        errors: list[PluginError] = []
        for group, register, table in (
            (MODULE_GROUP, self.register, self._factories),
            (ENDPOINT_GROUP, self.register_endpoint, self._endpoints),
        ):
            for ep in importlib.metadata.entry_points(group=group):
                dist = ep.dist.name if ep.dist is not None else "?"
                try:
                    factory = ep.load()
                    if not callable(factory):
                        raise TypeError(f"{ep.value} is not callable")
                    with self._lock:
                        already = table.get(ep.name)
                    if already is not factory:
                        register(ep.name, factory)
                except Exception as exc:
                    err = PluginError(ep.name, dist, f"{type(exc).__name__}: {exc}")
                    err.__cause__ = exc
                    _log.error("%s", err)
                    errors.append(err)
        with self._lock:
            self._plugins_loaded = True
        return tuple(errors)

    def _take_for_closing(self) -> list[tuple[str, _Instance]]:
        with self._changed:
            order = self._init_order[::-1]
            self._init_order.clear()
            for _, rec in order:
                rec.state = _CLOSED
            self._changed.notify_all()
        return order

    def close_all(self) -> None:
        """Close every initialized instance that has `close()`, newest first.

        Closed instances are not handed out again.

        Raises:
            ShutdownError: some `close()` failed; it lists every failure, and every other
                instance was still closed.
        """
        errors: list[tuple[str, BaseException]] = []
        for name, rec in self._take_for_closing():
            if isinstance(rec.module, Closer):
                try:
                    rec.module.close()
                except Exception as exc:
                    _log.error("closing %r failed: %s", name, exc)
                    errors.append((name, exc))
        if errors:
            raise ShutdownError(tuple(errors))

    async def aclose_all(self) -> None:
        """`close_all` for code on an event loop: an instance with an `async def aclose()`
        is awaited (connections bound to the loop close in it), any other `close()` runs
        in a thread, newest first.

        Raises:
            ShutdownError: as `close_all`.
        """
        errors: list[tuple[str, BaseException]] = []
        for name, rec in self._take_for_closing():
            aclose = getattr(rec.module, "aclose", None)
            try:
                if aclose is not None and inspect.iscoroutinefunction(aclose):
                    await aclose()
                elif isinstance(rec.module, Closer):
                    await asyncio.to_thread(rec.module.close)
            except Exception as exc:
                _log.error("closing %r failed: %s", name, exc)
                errors.append((name, exc))
        if errors:
            raise ShutdownError(tuple(errors))


def _failure(name: str, rec: _Instance) -> RegistryError:
    if rec.state is _CLOSED:
        return RegistryError(f"instance {name!r} was closed")
    failure = rec.failure
    if isinstance(failure, InitCycleError):
        return InitCycleError(failure.cycle)
    reason = failure.reason if isinstance(failure, ModuleInitError) else str(failure)
    err = ModuleInitError(name, reason)
    err.__cause__ = failure.__cause__ if failure is not None else None
    return err


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a module name must be a non-empty string, got {name!r}")


def _close(name: str, candidates: Iterable[str]) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6))


#: The registry the module-level functions work on.
default_registry: Final = Registry()
default_registry.register("dummy", Dummy)
default_registry.register_instance(Dummy(), ConfigMap(module="dummy"))

register: Final = default_registry.register
register_alias: Final = default_registry.register_alias
register_deprecated: Final = default_registry.register_deprecated
register_endpoint: Final = default_registry.register_endpoint
register_instance: Final = default_registry.register_instance
get: Final = default_registry.get
get_endpoint: Final = default_registry.get_endpoint
get_instance: Final = default_registry.get_instance
has_instance: Final = default_registry.has_instance
initialized: Final = default_registry.initialized
load_plugins: Final = default_registry.load_plugins
close_all: Final = default_registry.close_all


def no_run() -> bool:
    """The default registry's `no_run` flag (the seed's NoRun)."""
    return default_registry.no_run


def set_no_run(value: bool) -> None:
    """Set the default registry's `no_run` flag."""
    default_registry.no_run = value
