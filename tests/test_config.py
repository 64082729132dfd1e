from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import ConfigError, ConfigMap, Dummy, Table, UnknownModuleError
from mailmodule.config import parse_duration, parse_size


def test_config_map_builds_from_a_plain_mapping_and_reads_like_one() -> None:
    cfg = ConfigMap({"a": 1, "b": "x"})
    assert dict(cfg) == {"a": 1, "b": "x"}
    assert len(cfg) == 2
    assert cfg["a"] == 1


def test_accessors_give_typed_values() -> None:
    cfg = ConfigMap(
        {
            "s": "text",
            "i": 42,
            "i2": "17",
            "b": True,
            "b2": "no",
            "d": "1m30s",
            "d2": 5,
            "z": "32M",
            "z2": 1024,
            "l": "a b  c",
            "l2": ["x", "y"],
        },
        module="m",
    )
    assert cfg.string("s") == "text"
    assert (cfg.integer("i"), cfg.integer("i2")) == (42, 17)
    assert (cfg.boolean("b"), cfg.boolean("b2")) == (True, False)
    assert cfg.duration("d") == dt.timedelta(seconds=90)
    assert cfg.duration("d2") == dt.timedelta(seconds=5)
    assert (cfg.size("z"), cfg.size("z2")) == (32 << 20, 1024)
    assert cfg.string_list("l") == ["a", "b", "c"]
    assert cfg.string_list("l2") == ["x", "y"]
    assert cfg.unknown_keys() == ()


def test_defaults_apply_to_missing_keys() -> None:
    cfg = ConfigMap()
    assert cfg.string("s", "d") == "d"
    assert cfg.integer("i", 3) == 3
    assert cfg.boolean("b", False) is False
    assert cfg.duration("t", None) is None
    assert cfg.string_list("l", []) == []


def test_a_missing_required_key_names_module_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        ConfigMap(module="target.maildir").string("path")
    assert (info.value.module, info.value.key) == ("target.maildir", "path")
    assert str(info.value) == "module 'target.maildir', key 'path': required key is missing"


@pytest.mark.parametrize(
    ("accessor", "value"),
    [
        ("string", 5),
        ("integer", "five"),
        ("integer", True),
        ("boolean", "maybe"),
        ("duration", "soon"),
        ("duration", "5"),
        ("size", "big"),
        ("size", -1),
        ("string_list", [1, 2]),
    ],
)
def test_a_mistyped_value_names_module_and_key(accessor: str, value: object) -> None:
    cfg = ConfigMap({"k": value}, module="m")
    with pytest.raises(ConfigError) as info:
        getattr(cfg, accessor)("k")
    assert (info.value.module, info.value.key) == ("m", "k")


def test_keys_nobody_read_are_reported_as_unknown() -> None:
    cfg = ConfigMap({"path": "/x", "pth": "/y", "extra": 1}, module="m")
    cfg.string("path")
    assert cfg.unknown_keys() == ("extra", "pth")
    with pytest.raises(ConfigError, match="unknown key") as info:
        cfg.check_unknown()
    assert info.value.key == "extra"


def test_module_references_resolve_through_the_resolver() -> None:
    table = Dummy("dummy", "aliases")
    names = {"aliases": table}

    def resolve(name: str) -> object:
        if name not in names:
            raise UnknownModuleError(name, kind="instance")
        return names[name]

    cfg = ConfigMap({"t": "&aliases", "u": "aliases", "bad": "&nope"}, resolver=resolve)
    assert cfg.module_ref("t", Table) is table
    assert cfg.module_ref("u", Table) is table
    assert cfg.module_ref("missing", Table, None) is None
    with pytest.raises(ConfigError, match="nope") as info:
        cfg.module_ref("bad", Table)
    assert isinstance(info.value.__cause__, UnknownModuleError)


def test_a_reference_to_the_wrong_kind_of_module_is_refused() -> None:
    cfg = ConfigMap({"t": "&x"}, module="m", resolver=lambda name: object())
    with pytest.raises(ConfigError, match="is not a Table"):
        cfg.module_ref("t", Table)


def test_a_reference_without_a_registry_is_refused() -> None:
    with pytest.raises(ConfigError, match="no registry"):
        ConfigMap({"t": "&x"}).module_ref("t", Table)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("1h30m", 5400), ("-2.5s", -2.5), ("0", 0), ("1.5m", 90), ("10us", 1e-5)],
)
def test_parse_duration_reads_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "1x", "1h 30m", "h1"])
def test_parse_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"), [("512", 512), ("64K", 65536), ("32m", 32 << 20), ("1GiB", 1 << 30)]
)
def test_parse_size_uses_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@given(st.text(max_size=20))
def test_accessors_raise_only_config_error_for_any_text(text: str) -> None:
    cfg = ConfigMap({"k": text})
    for accessor in ("string", "integer", "boolean", "duration", "size", "string_list"):
        try:
            getattr(cfg, accessor)("k")
        except ConfigError:
            pass


def test_integer_and_size_with_a_minimum_refuse_smaller_values_but_not_the_default() -> None:
    cfg = ConfigMap({"n": 0, "z": "0K", "ok": "2"}, module="m")
    with pytest.raises(ConfigError) as info:
        cfg.integer("n", 5, minimum=1)
    assert (info.value.module, info.value.key) == ("m", "n")
    assert "at least 1, got 0" in str(info.value)
    with pytest.raises(ConfigError, match="at least 1"):
        cfg.size("z", minimum=1)
    assert cfg.integer("ok", minimum=1) == 2
    assert cfg.integer("missing", -1, minimum=1) == -1


def test_durations_are_never_negative_and_positive_ones_are_never_zero() -> None:
    cfg = ConfigMap({"neg": "-1s", "zero": 0, "delta": dt.timedelta(seconds=-2)}, module="m")
    for key in ("neg", "delta"):
        with pytest.raises(ConfigError, match="0s or more") as info:
            cfg.duration(key)
        assert info.value.key == key
    assert cfg.duration("zero") == dt.timedelta(0)
    with pytest.raises(ConfigError, match="positive duration"):
        cfg.duration("zero", positive=True)
    assert cfg.duration("missing", None, positive=True) is None
