"""Declared settings: `Setting` values drive reading, checking and describing a module's keys."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailmodule import ConfigError, ConfigMap, Dummy, Table
from mailmodule.config import (
    REQUIRED,
    Setting,
    declared_settings,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

ROOT = Setting.string("root", "the directory")
LABEL = Setting.string("label", "a name", None)
LIMIT = Setting.integer("limit", "how many", 10, minimum=1)
FAST = Setting.boolean("fast", "hurry", False)
WAIT = Setting.duration("wait", "how long", dt.timedelta(minutes=5), positive=True)
CAP = Setting.size("cap", "how big", 32 << 20, minimum=1)
TAGS = Setting.string_list("tags", "labels", [])
TABLE = Setting.module("table", "the lookups", Table, None)
ENTRIES = Setting.raw("entries", "the contents", "table of key = value", {})
ALL = (ROOT, LABEL, LIMIT, FAST, WAIT, CAP, TAGS, TABLE, ENTRIES)


def test_value_reads_each_type_as_its_accessor_does() -> None:
    cfg = ConfigMap(
        {
            "root": "/srv",
            "limit": "7",
            "fast": "yes",
            "wait": "1m30s",
            "cap": "1K",
            "tags": "a b",
            "entries": {"k": "v"},
        }
    )
    cfg.declare(ALL)
    assert cfg.value(ROOT) == "/srv"
    assert cfg.value(LIMIT) == 7
    assert cfg.value(FAST) is True
    assert cfg.value(WAIT) == dt.timedelta(seconds=90)
    assert cfg.value(CAP) == 1024
    assert cfg.value(TAGS) == ["a", "b"]
    assert cfg.value(ENTRIES) == {"k": "v"}


def test_missing_keys_take_the_declared_default_or_the_one_given() -> None:
    cfg = ConfigMap({"root": "/srv"})
    assert cfg.value(LABEL) is None
    assert cfg.value(LIMIT) == 10
    assert cfg.value(WAIT) == dt.timedelta(minutes=5)
    assert cfg.value(TABLE) is None
    assert cfg.value(LIMIT, 3) == 3
    assert cfg.value(ROOT, "/else") == "/srv"


def test_a_missing_required_setting_names_module_and_key() -> None:
    with pytest.raises(ConfigError, match="required key is missing") as info:
        ConfigMap(module="m").value(ROOT)
    assert (info.value.module, info.value.key) == ("m", "root")


def test_declare_refuses_an_unknown_key_suggesting_the_closest_declared_one() -> None:
    cfg = ConfigMap({"root": "/srv", "limt": 3}, module="m")
    with pytest.raises(ConfigError, match="did you mean 'limit'") as info:
        cfg.declare(ALL)
    assert info.value.key == "limt"


def test_declare_checks_every_given_type_before_the_module_reads_it() -> None:
    cfg = ConfigMap({"root": "/srv", "cap": "huge"}, module="m")
    with pytest.raises(ConfigError, match="not a size") as info:
        cfg.declare(ALL)
    assert info.value.key == "cap"


def test_declared_limits_are_enforced() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        ConfigMap({"limit": 0}).value(LIMIT)
    with pytest.raises(ConfigError, match="positive"):
        ConfigMap({"wait": "0s"}).value(WAIT)


def test_a_module_reference_setting_resolves_and_checks_its_interface() -> None:
    table = Dummy("dummy", "t")
    cfg = ConfigMap({"table": "&t"}, resolver={"t": table}.__getitem__)
    assert cfg.value(TABLE) is table
    wrong = ConfigMap({"table": "&t"}, module="m", resolver={"t": object()}.__getitem__)
    with pytest.raises(ConfigError, match="is not a Table"):
        wrong.value(TABLE)


def test_check_unknown_suggests_a_key_the_module_read() -> None:
    cfg = ConfigMap({"path": "/x", "pth": "/y"}, module="m")
    cfg.string("path")
    with pytest.raises(ConfigError, match="unknown key; did you mean 'path'"):
        cfg.check_unknown()


def test_describe_gives_name_type_default_and_meaning_on_one_line() -> None:
    assert WAIT.describe() == "wait (duration, more than 0s, default 5m): how long"
    assert CAP.describe() == "cap (size, at least 1, default 32M): how big"
    assert ROOT.describe() == "root (string, required): the directory"
    assert FAST.describe() == "fast (yes/no, default no): hurry"
    assert TABLE.describe() == "table (module reference to a Table, default none): the lookups"
    assert ENTRIES.describe() == "entries (table of key = value, default {}): the contents"


def test_a_default_in_words_replaces_the_value_and_makes_it_optional() -> None:
    root = Setting.string("root", "the directory", default_doc="the first inline argument")
    assert not root.required
    assert ROOT.required
    assert root.describe() == "root (string, default the first inline argument): the directory"
    given = Setting.string("root", "the directory", default_doc="required (in code: ...)")
    assert given.describe() == "root (string, required (in code: ...)): the directory"


def test_a_setting_name_must_be_a_lowercase_key() -> None:
    with pytest.raises(ValueError, match="name"):
        Setting.string("Bad Name", "x")


def test_a_setting_kind_must_be_one_config_map_reads() -> None:
    with pytest.raises(ValueError, match="kind"):
        Setting(name="x", kind="colour", doc="x")  # type: ignore[arg-type]  # the point


def test_declared_settings_reads_a_factory_and_gives_none_for_undeclared_plugins() -> None:
    class Declared:
        SETTINGS = (ROOT,)

    assert declared_settings(Declared) == (ROOT,)
    assert declared_settings(lambda *a: None) is None
    assert REQUIRED is ROOT.default


@given(st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=400)))
def test_format_duration_reads_back_as_the_same_duration(value: dt.timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=1 << 50))
def test_format_size_reads_back_as_the_same_size(value: int) -> None:
    assert parse_size(format_size(value)) == value


TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.sampled_from([ROOT, LABEL, LIMIT, FAST, WAIT, CAP, TAGS]), TOML_VALUES)
@example(WAIT, float("nan"))
@example(WAIT, float("inf"))
@example(WAIT, 10**30)
@example(WAIT, "99999999999999999h")
def test_any_value_of_a_declared_setting_is_read_or_refused_with_a_config_error(
    setting: Setting[object], value: object
) -> None:
    cfg = ConfigMap({setting.name: value}, module="m")
    refused: str | None = setting.name
    try:
        cfg.declare(ALL)
        cfg.value(setting)
    except ConfigError as exc:
        refused = exc.key
    assert refused == setting.name
