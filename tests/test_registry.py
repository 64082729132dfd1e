from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import mailmodule
from mailmodule import (
    ConfigError,
    ConfigMap,
    DuplicateModuleError,
    InitCycleError,
    InterfaceMismatchError,
    ModuleInitError,
    Registry,
    RegistryError,
    ShutdownError,
    Table,
    UnknownModuleError,
)
from mailmodule.dummy import Dummy


class Recorder:
    """A module that counts its inits and can be told to fail or to ask for others."""

    def __init__(
        self,
        inst: str,
        *,
        needs: str | None = None,
        registry: Registry | None = None,
        fail: bool = False,
        delay: float = 0.0,
        barrier: threading.Barrier | None = None,
        close_error: bool = False,
        closed: list[str] | None = None,
    ) -> None:
        self.inst, self.needs, self.registry = inst, needs, registry
        self.fail, self.delay, self.barrier = fail, delay, barrier
        self.close_error, self.closed = close_error, closed
        self.inits = 0
        self.ready = False
        self.cfg: ConfigMap | None = None

    def init(self, cfg: ConfigMap) -> None:
        self.inits += 1
        self.cfg = cfg
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        if self.delay:
            time.sleep(self.delay)
        if self.needs is not None and self.registry is not None:
            self.registry.get_instance(self.needs)
        if self.fail:
            raise OSError("disk on fire")
        for key in cfg:
            cfg[key]
        self.ready = True

    def name(self) -> str:
        return "recorder"

    def instance_name(self) -> str:
        return self.inst

    def close(self) -> None:
        if self.closed is not None:
            self.closed.append(self.inst)
        if self.close_error:
            raise RuntimeError(f"{self.inst} would not close")


def factory(mod_name: str, inst_name: str, aliases: list[str], args: list[str]) -> Dummy:
    return Dummy(mod_name, inst_name)


def endpoint(mod_name: str, addrs: list[str]) -> Dummy:
    return Dummy(mod_name, mod_name)


@pytest.fixture
def registry() -> Registry:
    return Registry(discover_plugins=False)


def test_register_then_get_returns_the_factory(registry: Registry) -> None:
    registry.register("target.x", factory)
    assert registry.get("target.x") is factory
    assert "target.x" in registry.modules()


def test_register_rejects_a_duplicate_name_and_keeps_the_first(registry: Registry) -> None:
    registry.register("target.x", factory)
    with pytest.raises(DuplicateModuleError, match=r"'target\.x' is already registered"):
        registry.register("target.x", Dummy)
    assert registry.get("target.x") is factory


def test_unknown_module_suggests_close_matches(registry: Registry) -> None:
    registry.register("target.maildir", factory)
    with pytest.raises(UnknownModuleError) as info:
        registry.get("target.maildri")
    assert info.value.suggestions == ("target.maildir",)
    assert "did you mean 'target.maildir'" in str(info.value)


def test_endpoints_live_in_their_own_namespace(registry: Registry) -> None:
    registry.register("smtp", factory)
    registry.register_endpoint("smtp", endpoint)
    assert registry.get_endpoint("smtp") is endpoint
    with pytest.raises(DuplicateModuleError, match="endpoint"):
        registry.register_endpoint("smtp", endpoint)
    with pytest.raises(UnknownModuleError, match="endpoint"):
        registry.get_endpoint("lmtp")


def test_register_deprecated_warns_and_logs_naming_the_new_name(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register_deprecated("queue", "target.queue", factory)
    built = registry.get("queue")
    with pytest.warns(DeprecationWarning, match="use 'target.queue' instead"):
        module = built("queue", "q", [], [])
    assert module.instance_name() == "q"
    assert any("target.queue" in r.getMessage() for r in caplog.records)


def test_get_instance_initializes_lazily_and_once_with_its_config(registry: Registry) -> None:
    rec = Recorder("a")
    registry.register_instance(rec, {"path": "/var/mail"})
    assert registry.initialized() == {"a": False}
    assert rec.inits == 0
    assert registry.get_instance("a") is rec
    assert registry.get_instance("a") is rec
    assert rec.inits == 1
    assert rec.cfg is not None
    assert rec.cfg.string("path") == "/var/mail"
    assert registry.initialized() == {"a": True}


def test_initialized_is_a_snapshot_that_cannot_be_changed(registry: Registry) -> None:
    registry.register_instance(Recorder("a"))
    view = registry.initialized()
    registry.get_instance("a")
    assert view == {"a": False}
    with pytest.raises(TypeError):
        view["a"] = True  # type: ignore[index]  # proving it is read-only


def test_register_instance_replaces_an_instance_of_the_same_name(registry: Registry) -> None:
    first, second = Recorder("a"), Recorder("a")
    registry.register_instance(first)
    registry.get_instance("a")
    registry.register_instance(second)
    assert registry.get_instance("a") is second


def test_a_failing_init_is_reported_naming_the_instance_and_never_handed_out(
    registry: Registry,
) -> None:
    rec = Recorder("broken", fail=True)
    registry.register_instance(rec)
    for _ in range(2):
        with pytest.raises(ModuleInitError, match="'broken' failed to initialize") as info:
            registry.get_instance("broken")
        assert isinstance(info.value.__cause__, OSError)
    assert rec.inits == 1
    assert registry.initialized() == {"broken": False}


def test_unread_config_keys_fail_init_as_unknown(registry: Registry) -> None:
    class Ignores(Recorder):
        def init(self, cfg: ConfigMap) -> None:
            cfg.string("known")

    registry.register_instance(Ignores("a"), {"known": "x", "typo_key": 1})
    with pytest.raises(ModuleInitError, match="typo_key") as info:
        registry.get_instance("a")
    assert isinstance(info.value.__cause__, ConfigError)
    assert info.value.__cause__.key == "typo_key"


def test_config_references_resolve_through_the_registry(registry: Registry) -> None:
    class Uses(Recorder):
        table: Table | None = None

        def init(self, cfg: ConfigMap) -> None:
            table = cfg.module_ref("table", Table)
            assert isinstance(table, Table)
            self.table = table

    registry.register_instance(Dummy("dummy", "aliases"))
    user = Uses("user")
    registry.register_instance(user, {"table": "&aliases"})
    registry.get_instance("user")
    assert user.table is not None
    assert id(user.table) == id(registry.get_instance("aliases"))


def test_aliases_resolve_to_the_very_same_instance(registry: Registry) -> None:
    rec = Recorder("local_mailboxes")
    registry.register_instance(rec)
    registry.register_alias("local", "local_mailboxes")
    assert registry.get_instance("local") is registry.get_instance("local_mailboxes")
    assert registry.get_instance("local") is rec
    assert registry.has_instance("local")
    assert rec.inits == 1


def test_an_alias_cannot_shadow_an_instance(registry: Registry) -> None:
    registry.register_instance(Recorder("a"))
    with pytest.raises(DuplicateModuleError):
        registry.register_alias("a", "b")
    registry.register_alias("c", "a")
    with pytest.raises(DuplicateModuleError):
        registry.register_instance(Recorder("c"))


def test_unknown_instance_suggests_close_matches(registry: Registry) -> None:
    registry.register_instance(Recorder("local_mailboxes"))
    with pytest.raises(UnknownModuleError, match="local_mailboxes") as info:
        registry.get_instance("local_mailbox")
    assert info.value.kind == "instance"


def test_prefixed_instances_must_implement_their_interface(registry: Registry) -> None:
    class NotATable(Recorder):
        def name(self) -> str:
            return "table.broken"

        def lookup(self, key: str) -> str | None:
            return None

    with pytest.raises(InterfaceMismatchError) as info:
        registry.register_instance(NotATable("t"))
    assert info.value.interface == "Table"
    assert info.value.missing == ("lookup() must be async",)
    assert not registry.has_instance("t")


def test_storage_prefix_accepts_either_storage_interface(registry: Registry) -> None:
    class Half(Recorder):
        def name(self) -> str:
            return "storage.half"

        async def create(self, key: str, blob_size: int) -> None:
            pass

    with pytest.raises(InterfaceMismatchError, match=r"BlobStore \(or Storage\)") as info:
        registry.register_instance(Half("s"))
    assert "open() is missing" in info.value.missing


def test_a_non_module_is_refused_naming_its_missing_methods(registry: Registry) -> None:
    with pytest.raises(InterfaceMismatchError, match=r"init\(\) is missing"):
        registry.register_instance(object())  # type: ignore[arg-type]  # wrong on purpose


def test_an_unnamed_instance_is_refused(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="needs an instance name"):
        registry.register_instance(Recorder(""))


def test_thirty_two_threads_asking_at_once_see_exactly_one_init(registry: Registry) -> None:
    rec = Recorder("slow", delay=0.05)
    registry.register_instance(rec)
    registry.register_alias("alias", "slow")
    start = threading.Barrier(32)
    got: list[object] = []

    def ask(n: int) -> None:
        start.wait()
        got.append(registry.get_instance("alias" if n % 2 else "slow"))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert rec.inits == 1
    assert len(got) == 32
    assert all(m is rec for m in got)
    assert rec.ready


async def test_many_tasks_and_threads_asking_at_once_see_one_init(registry: Registry) -> None:
    rec = Recorder("slow", delay=0.02)
    registry.register_instance(rec)

    async def direct() -> object:
        await asyncio.sleep(0)
        return registry.get_instance("slow")

    results = await asyncio.gather(
        *(asyncio.to_thread(registry.get_instance, "slow") for _ in range(16)),
        *(direct() for _ in range(100)),
    )
    assert rec.inits == 1
    assert all(r is rec for r in results)


def test_an_init_cycle_in_one_thread_names_the_cycle(registry: Registry) -> None:
    registry.register_instance(Recorder("a", needs="b", registry=registry))
    registry.register_instance(Recorder("b", needs="a", registry=registry))
    with pytest.raises(InitCycleError) as info:
        registry.get_instance("a")
    assert info.value.cycle == ("a", "b", "a")
    assert "'a' -> 'b' -> 'a'" in str(info.value)
    with pytest.raises(InitCycleError):
        registry.get_instance("b")


def test_an_init_cycle_across_threads_is_named_instead_of_deadlocking(registry: Registry) -> None:
    both = threading.Barrier(2)
    registry.register_instance(Recorder("a", needs="b", registry=registry, barrier=both))
    registry.register_instance(Recorder("b", needs="a", registry=registry, barrier=both))
    errors: dict[str, BaseException] = {}

    def ask(name: str) -> None:
        try:
            registry.get_instance(name)
        except BaseException as exc:
            errors[name] = exc

    threads = [threading.Thread(target=ask, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "deadlocked"
    assert set(errors) == {"a", "b"}
    for err in errors.values():
        assert isinstance(err, InitCycleError)
        assert set(err.cycle) == {"a", "b"}


def test_close_all_closes_in_reverse_init_order_and_reports_every_error(
    registry: Registry,
) -> None:
    closed: list[str] = []
    for name, bad in (("a", True), ("b", False), ("c", True)):
        registry.register_instance(Recorder(name, close_error=bad, closed=closed))
    registry.register_instance(Recorder("never-used", closed=closed))
    for name in "abc":
        registry.get_instance(name)
    with pytest.raises(ShutdownError) as info:
        registry.close_all()
    assert closed == ["c", "b", "a"]
    assert [name for name, _ in info.value.errors] == ["c", "a"]
    with pytest.raises(RegistryError, match="was closed"):
        registry.get_instance("a")


class AsyncCloser(Recorder):
    """A Recorder whose connections must close on the loop: it has `aclose`."""

    async def aclose(self) -> None:
        asyncio.get_running_loop()  # raises off a loop
        assert self.closed is not None
        self.closed.append(f"{self.inst} on the loop")


class ThreadNoter(Recorder):
    """A Recorder that notes which thread closed it."""

    def close(self) -> None:
        assert self.closed is not None
        self.closed.append(threading.current_thread().name)


def test_aclose_all_awaits_aclose_and_runs_close_in_a_thread(registry: Registry) -> None:
    closed: list[str] = []
    registry.register_instance(ThreadNoter("a", closed=closed))
    registry.register_instance(AsyncCloser("b", closed=closed))
    registry.register_instance(Recorder("c", close_error=True, closed=closed))
    for name in "abc":
        registry.get_instance(name)

    with pytest.raises(ShutdownError) as info:
        asyncio.run(registry.aclose_all())
    assert closed[:2] == ["c", "b on the loop"]
    assert closed[2] != threading.main_thread().name
    assert [name for name, _ in info.value.errors] == ["c"]


def test_no_run_is_a_flag_modules_can_read(registry: Registry) -> None:
    assert not registry.no_run
    registry.no_run = True
    assert registry.no_run


def test_the_default_registry_always_has_dummy() -> None:
    assert mailmodule.get("dummy") is Dummy
    assert isinstance(mailmodule.get_instance("dummy"), Dummy)
    assert mailmodule.has_instance("dummy")
    assert mailmodule.initialized()["dummy"] is True


@pytest.fixture
def plugin_path(tmp_path: Path) -> Iterator[Path]:
    """A real installed distribution: a .dist-info with entry_points.txt, on sys.path."""
    (tmp_path / "shout_plugin.py").write_text(
        textwrap.dedent(
            """
            from mailmodule.dummy import Dummy

            def new_check(mod_name, inst_name, aliases, args):
                return Dummy(mod_name, inst_name)
            """
        )
    )
    info = tmp_path / "shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mailmodule.modules]\n"
        "check.shout = shout_plugin:new_check\n"
        "check.broken = no_such_module:factory\n"
        "[mailmodule.endpoints]\n"
        "shout-endpoint = shout_plugin:new_check\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shout_plugin", None)


def test_plugins_are_registered_on_first_lookup(plugin_path: Path) -> None:
    registry = Registry()
    shout = registry.get("check.shout")
    assert shout("check.shout", "s", [], []).instance_name() == "s"
    assert registry.get_endpoint("shout-endpoint") is sys.modules["shout_plugin"].new_check


def test_a_broken_plugin_is_reported_by_name_and_spares_the_others(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    with caplog.at_level(logging.ERROR, logger="mailmodule.registry"):
        errors = registry.load_plugins()
    assert [(e.plugin, e.distribution) for e in errors] == [("check.broken", "shout-plugin")]
    assert isinstance(errors[0].__cause__, ModuleNotFoundError)
    assert "check.shout" in registry.modules()
    assert any("check.broken" in r.getMessage() for r in caplog.records)
    again = registry.load_plugins()  # loading again registers nothing twice
    assert [(e.plugin, e.reason) for e in again] == [(e.plugin, e.reason) for e in errors]


class RegistryMachine(RuleBasedStateMachine):
    """Register, alias and look up in any order; the registry agrees with a plain model."""

    names = st.sampled_from(["a", "b", "c", "d"])

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry(discover_plugins=False)
        self.factories: dict[str, object] = {}
        self.instances: dict[str, Recorder] = {}
        self.aliases: dict[str, str] = {}

    @rule(name=names)
    def register(self, name: str) -> None:
        if name in self.factories:
            with pytest.raises(DuplicateModuleError):
                self.registry.register(name, factory)
        else:
            self.registry.register(name, factory)
            self.factories[name] = factory

    @rule(name=names)
    def register_instance(self, name: str) -> None:
        rec = Recorder(name)
        if name in self.aliases:
            with pytest.raises(DuplicateModuleError):
                self.registry.register_instance(rec)
        else:
            self.registry.register_instance(rec)
            self.instances[name] = rec

    @rule(alias=names, to=names)
    def register_alias(self, alias: str, to: str) -> None:
        if alias in self.instances:
            with pytest.raises(DuplicateModuleError):
                self.registry.register_alias(alias, to)
        elif alias == to:
            with pytest.raises(RegistryError):
                self.registry.register_alias(alias, to)
        else:
            self.registry.register_alias(alias, to)
            self.aliases[alias] = to

    @rule(name=names)
    def get_instance(self, name: str) -> None:
        real = self.aliases.get(name, name)
        if real in self.instances:
            assert self.registry.get_instance(name) is self.instances[real]
            assert self.instances[real].inits == 1
        else:
            with pytest.raises(UnknownModuleError):
                self.registry.get_instance(name)

    @precondition(lambda self: bool(self.factories))
    @rule(name=names)
    def get(self, name: str) -> None:
        if name in self.factories:
            assert self.registry.get(name) is factory
        else:
            with pytest.raises(UnknownModuleError):
                self.registry.get(name)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.registry.modules() == tuple(sorted(self.factories))
        assert self.registry.instances() == tuple(sorted(self.instances))
        for name in ("a", "b", "c", "d"):
            real = self.aliases.get(name, name)
            assert self.registry.has_instance(name) == (real in self.instances)
        assert dict(self.registry.initialized()) == {
            n: r.inits == 1 for n, r in self.instances.items()
        }


TestRegistryMachine = RegistryMachine.TestCase
