from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    ConfigError,
    DataError,
    ModuleInitError,
    MultiTable,
    MutableTable,
    StorageError,
    Table,
)
from mailmodule.modules import FileTable, SQLTable, StaticTable
from mailmodule.modules.tables import parse_table_file
from tests.modules_kit import build, new_registry


async def test_static_table_serves_entries_from_its_settings() -> None:
    table = build(
        new_registry(),
        "table.static",
        "aliases",
        {"entries": {"postmaster": "admin@example.org", "team": ["a@x", "b@x"]}},
    )
    assert isinstance(table, StaticTable)
    assert isinstance(table, MultiTable)
    assert await table.lookup("postmaster") == "admin@example.org"
    assert await table.lookup_multi("team") == ["a@x", "b@x"]
    assert await table.lookup("nobody") is None
    assert await table.lookup_multi("nobody") == []


def test_static_table_refuses_malformed_entries() -> None:
    with pytest.raises(ModuleInitError) as info:
        build(new_registry(), "table.static", "t", {"entries": {"k": 5}})
    assert isinstance(info.value.__cause__, ConfigError)
    assert info.value.__cause__.key == "entries"


def test_table_files_parse_repeated_keys_commas_comments_and_bare_keys() -> None:
    text = "# aliases\npostmaster: admin@x\nteam: a@x, b@x\nteam: c@x\n\nbare\n"
    assert parse_table_file(text) == {
        "postmaster": ["admin@x"],
        "team": ["a@x", "b@x", "c@x"],
        "bare": [""],
    }


def test_a_malformed_table_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("good: x\n: no key\n")
    with pytest.raises(ModuleInitError, match=r"aliases:2") as info:
        build(new_registry(), "table.file", "t", {"file": str(path)})
    assert isinstance(info.value.__cause__, ConfigError)


async def test_file_table_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("a: 1\n")
    table = build(new_registry(), "table.file", "t", {"file": str(path), "reload_interval": 0})
    assert isinstance(table, Table)
    assert await table.lookup("a") == "1"
    path.write_text("a: 2\nb: 3\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within one clock tick
    assert await table.lookup("a") == "2"
    assert await table.lookup("b") == "3"


async def test_a_broken_reload_keeps_the_old_contents(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("a: 1\n")
    table = build(new_registry(), "table.file", "t", {"file": str(path), "reload_interval": 0})
    assert isinstance(table, Table)
    path.write_bytes(b"\xff\xfe not utf-8 : \n")
    assert await table.lookup("a") == "1"


async def test_file_table_writes_by_temp_file_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("")
    table = build(new_registry(), "table.file", "t", {"file": str(path)})
    assert isinstance(table, MutableTable)
    inode = path.stat().st_ino
    table.set_key("joe", "secret-hash")
    assert path.stat().st_ino != inode  # replaced, never rewritten in place
    assert await table.lookup("joe") == "secret-hash"
    assert table.keys() == ["joe"]
    table.remove_key("joe")
    table.remove_key("joe")
    assert path.read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]
    with pytest.raises(DataError):
        table.set_key("evil\nkey", "x")


async def test_concurrent_readers_never_see_a_half_read_file(tmp_path: Path) -> None:
    path = tmp_path / "big"
    full = "".join(f"k{i}: v{i}\n" for i in range(2000))
    path.write_text(full)
    table = build(new_registry(), "table.file", "t", {"file": str(path), "reload_interval": 0})
    assert isinstance(table, FileTable)

    async def writer() -> None:
        for n in range(20):
            table.set_key(f"extra{n}", "x")
            await asyncio.sleep(0)

    async def reader() -> None:
        for _ in range(50):
            assert await table.lookup("k1999") == "v1999"

    await asyncio.gather(writer(), reader(), reader())


def sql_settings(tmp_path: Path) -> dict[str, object]:
    return {
        "dsn": str(tmp_path / "tables.db"),
        "init": "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)",
        "lookup": "SELECT v FROM t WHERE k = :key",
        "list": "SELECT k FROM t ORDER BY k",
        "set": "INSERT OR REPLACE INTO t (k, v) VALUES (:key, :value)",
        "del": "DELETE FROM t WHERE k = :key",
    }


async def test_sql_table_reads_and_writes_a_real_sqlite_database(tmp_path: Path) -> None:
    table = build(new_registry(), "table.sql", "t", sql_settings(tmp_path))
    assert isinstance(table, SQLTable)
    assert isinstance(table, MutableTable)
    assert await table.lookup("joe") is None
    table.set_key("joe", "joe@example.org")
    table.set_key("ann", "ann@example.org")
    assert await table.lookup("joe") == "joe@example.org"
    assert await table.lookup_multi("ann") == ["ann@example.org"]
    assert table.keys() == ["ann", "joe"]
    table.remove_key("joe")
    assert await table.lookup("joe") is None
    table.close()


async def test_sql_table_reports_a_broken_query_as_storage_error(tmp_path: Path) -> None:
    settings = {**sql_settings(tmp_path), "lookup": "SELECT v FROM missing WHERE k = :key"}
    table = build(new_registry(), "table.sql", "t", settings)
    assert isinstance(table, Table)
    with pytest.raises(StorageError, match="lookup query failed"):
        await table.lookup("x")


def test_sql_table_without_a_set_query_names_the_missing_setting(tmp_path: Path) -> None:
    settings = {k: v for k, v in sql_settings(tmp_path).items() if k != "set"}
    table = build(new_registry(), "table.sql", "t", settings)
    assert isinstance(table, SQLTable)
    with pytest.raises(ConfigError) as info:
        table.set_key("joe", "x")
    assert (info.value.module, info.value.key) == ("t", "set")


async def test_sql_table_refuses_to_store_a_lone_surrogate_and_finds_no_such_key(
    tmp_path: Path,
) -> None:
    table = build(new_registry(), "table.sql", "t", sql_settings(tmp_path))
    assert isinstance(table, SQLTable)
    with pytest.raises(DataError, match="not valid UTF-8"):
        table.set_key("jo\udcffe", "x")
    with pytest.raises(DataError, match="not valid UTF-8"):
        table.set_key("joe", "\ud800")
    assert await table.lookup("jo\udcffe") is None
    assert await table.lookup_multi("jo\udcffe") == []
    table.close()


def test_sql_table_refuses_an_unknown_driver(tmp_path: Path) -> None:
    with pytest.raises(ModuleInitError, match="unsupported driver"):
        build(new_registry(), "table.sql", "t", {**sql_settings(tmp_path), "driver": "mysql"})


@given(
    st.dictionaries(
        st.from_regex(r"\A[a-z0-9@.+-]{1,12}\Z"),
        st.from_regex(r"\A[a-z0-9@.]{0,12}\Z"),
        max_size=10,
    )
)
def test_written_table_files_read_back_the_same(entries: dict[str, str]) -> None:
    from mailmodule.modules.tables import _format_table_file

    text = _format_table_file({k: [v] for k, v in entries.items()})
    assert parse_table_file(text) == {k: [v] for k, v in entries.items()}


def test_importing_the_package_registers_every_module_by_its_maddy_name() -> None:
    import mailmodule
    from mailmodule.modules import REFERENCE_MODULES

    for name, factory in REFERENCE_MODULES.items():
        assert mailmodule.get(name) is factory


def test_reference_modules_are_found_by_name_without_importing_them() -> None:
    """Our own entry points: a fresh registry finds them on the first lookup."""
    from mailmodule import Registry
    from mailmodule.modules import REFERENCE_MODULES

    registry = Registry()
    for name, factory in REFERENCE_MODULES.items():
        assert registry.get(name) is factory
    assert registry.get_endpoint("lmtp").__name__ == "SMTPEndpoint"


def test_a_table_file_that_is_not_utf8_is_refused_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aliases"
    path.write_bytes(b"good: x\nbad: \xff\xfe\n")
    with pytest.raises(ModuleInitError, match=r"aliases:2: not UTF-8") as info:
        build(new_registry(), "table.file", "t", {"file": str(path)})
    cause = info.value.__cause__
    assert isinstance(cause, ConfigError)
    assert cause.file == str(path)
    assert isinstance(cause.__cause__, DataError)


async def test_a_reload_that_is_not_utf8_logs_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "aliases"
    path.write_text("a: 1\n")
    table = build(new_registry(), "table.file", "t", {"file": str(path), "reload_interval": 0})
    assert isinstance(table, Table)
    path.write_bytes(b"a: 2\n\n# \xc3\n")
    os.utime(path, ns=(1, 1))
    assert await table.lookup("a") == "1"
    assert f"{path}:3: not UTF-8" in caplog.text


def test_only_a_newline_ends_a_table_file_line() -> None:
    """Unicode line separators are value characters, not a way to smuggle in a key."""
    assert parse_table_file("joe: hash\u2028admin: x\x0bq\r\n") == {
        "joe": ["hash\u2028admin: x\x0bq"]
    }


table_text = st.text(st.characters(exclude_categories=()), max_size=20)


@settings(max_examples=200, deadline=None)
@given(key=table_text, value=table_text)
def test_a_written_entry_is_refused_or_reads_back_the_same(key: str, value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t")
        table = build(new_registry(), "table.file", "t", {"file": path})
        assert isinstance(table, FileTable)
        try:
            table.set_key(key, value)
        except DataError:
            assert os.listdir(tmp) == []
            return
        reread = build(new_registry(), "table.file", "t", {"file": path})
        assert isinstance(reread, FileTable)
        assert reread.keys() == [key]
        assert asyncio.run(reread.lookup_multi(key)) == [value]


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_a_sql_database_and_its_journals_are_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    settings = sql_settings(tmp_path)
    settings["init"] = [
        "PRAGMA journal_mode=WAL",
        "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)",
    ]
    old = os.umask(umask)
    try:
        table = build(new_registry(), "table.sql", "t", settings)
        assert isinstance(table, SQLTable)
        table.set_key("joe", "$argon2id$hash")
    finally:
        os.umask(old)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["tables.db", "tables.db-shm", "tables.db-wal"]
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o600, p.name
    table.close()


def test_a_sql_rollback_journal_is_private_too(tmp_path: Path) -> None:
    settings = sql_settings(tmp_path)
    settings["init"] = [
        "PRAGMA journal_mode=PERSIST",
        "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)",
    ]
    old = os.umask(0)
    try:
        table = build(new_registry(), "table.sql", "t", settings)
        assert isinstance(table, SQLTable)
        table.set_key("joe", "$argon2id$hash")
    finally:
        os.umask(old)
    journal = tmp_path / "tables.db-journal"
    assert journal.exists()
    assert journal.stat().st_mode & 0o777 == 0o600
    table.close()
