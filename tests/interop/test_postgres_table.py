"""`table.sql` on a real PostgreSQL server, with the same queries as on SQLite."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule.config import ConfigMap
from mailmodule.errors import AuthError, ConfigError, DataError, StorageError
from mailmodule.modules._postgres import pg_placeholders
from mailmodule.modules.pass_table import PassTable
from mailmodule.modules.tables import SQLTable
from tests.interop.postgres_kit import Postgres, postgres

__all__ = ["postgres"]

_names = itertools.count()

QUERIES = {
    "init": ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL)"],
    "lookup": "SELECT v FROM t WHERE k = :key",
    "list": "SELECT k FROM t ORDER BY k",
    "set": "INSERT INTO t (k, v) VALUES (:key, :value) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    "del": "DELETE FROM t WHERE k = :key",
}


def pg_table(server: Postgres, **settings: object) -> SQLTable:
    dsn = server.create_database(f"t{next(_names)}")
    table = SQLTable("table.sql", "pg")
    table.init(ConfigMap({"driver": "postgres", "dsn": dsn, **QUERIES, **settings}))
    return table


def test_a_postgres_table_takes_the_same_queries_as_sqlite(postgres: Postgres) -> None:
    table = pg_table(postgres)

    async def scenario() -> tuple[str | None, str | None, list[str]]:
        await asyncio.to_thread(table.set_key, "a@example.org", "1")
        await asyncio.to_thread(table.set_key, "b@example.org", "2")
        await asyncio.to_thread(table.set_key, "a@example.org", "3")
        await asyncio.to_thread(table.remove_key, "b@example.org")
        found = await table.lookup("a@example.org"), await table.lookup("b@example.org")
        multi = await table.lookup_multi("a@example.org")
        table.close()
        return found[0], found[1], multi

    assert asyncio.run(scenario()) == ("3", None, ["3"])


def test_its_synchronous_methods_work_without_an_event_loop(postgres: Postgres) -> None:
    table = pg_table(postgres)
    table.set_key("k", "v")
    assert table.keys() == ["k"]
    table.close()


def test_lookups_run_concurrently_on_the_pool(postgres: Postgres) -> None:
    table = pg_table(postgres, max_connections=4)
    for i in range(20):
        table.set_key(f"k{i}", f"v{i}")

    async def scenario() -> list[str | None]:
        found = await asyncio.gather(*(table.lookup(f"k{i}") for i in range(20)))
        table.close()
        return list(found)

    assert asyncio.run(scenario()) == [f"v{i}" for i in range(20)]


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200)


@settings(max_examples=20)
@given(pairs=st.dictionaries(_text, _text, min_size=1, max_size=5))
def test_any_text_round_trips(postgres: Postgres, pairs: dict[str, str]) -> None:
    table = _shared_table(postgres)

    async def scenario() -> dict[str, str | None]:
        for key, value in pairs.items():
            await asyncio.to_thread(table.set_key, key, value)
        try:
            return {key: await table.lookup(key) for key in pairs}
        finally:
            table.close()

    assert asyncio.run(scenario()) == pairs


_SHARED: dict[int, SQLTable] = {}


def _shared_table(server: Postgres) -> SQLTable:
    if server.port not in _SHARED:
        _SHARED[server.port] = pg_table(server)
    return _SHARED[server.port]


def test_a_nul_in_a_key_is_a_storage_error_naming_the_table(postgres: Postgres) -> None:
    table = pg_table(postgres)
    with pytest.raises(StorageError, match="'pg'"):
        table.set_key("a\x00b", "v")
    table.close()


def test_an_unreachable_database_is_a_config_error_without_the_password() -> None:
    table = SQLTable("table.sql", "pg")
    with pytest.raises(ConfigError) as caught:
        table.init(ConfigMap({
            "driver": "postgres",
            "dsn": "postgresql://mail:s3cret@127.0.0.1:1/db?connect_timeout=2",
            "lookup": "SELECT 1",
        }, module="table.sql"))  # fmt: skip
    assert "s3cret" not in str(caught.value)
    assert caught.value.key == "dsn"


def test_a_key_with_no_utf8_form_is_found_nowhere_and_cannot_be_stored(
    postgres: Postgres,
) -> None:
    """As with SQLite: no key of the database can be it (the Table contract: None for a
    missing key, never an error), and writing it is bad data."""
    table = pg_table(postgres)

    async def scenario() -> str | None:
        try:
            return await table.lookup("\udc80@example.org")
        finally:
            table.close()

    assert asyncio.run(scenario()) is None
    with pytest.raises(DataError, match="not valid UTF-8"):
        table.set_key("\udc80@example.org", "x")


def test_a_failing_query_is_a_storage_error(postgres: Postgres) -> None:
    table = pg_table(postgres, lookup="SELECT v FROM missing WHERE k = :key")

    async def scenario() -> None:
        try:
            await table.lookup("x")
        finally:
            table.close()

    with pytest.raises(StorageError, match="lookup query failed"):
        asyncio.run(scenario())


def test_pass_table_keeps_its_users_in_postgres(postgres: Postgres) -> None:
    table = pg_table(postgres)
    auth = PassTable("auth.pass_table", "users")
    auth.init(ConfigMap({"table": "&pg"}, resolver=lambda name: table))
    auth.create_user("joe@example.org", "correct horse")
    auth.auth_plain("joe@example.org", "correct horse")
    with pytest.raises(AuthError, match="invalid credentials"):
        auth.auth_plain("joe@example.org", "wrong")
    assert auth.list_users() == ["joe@example.org"]
    table.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT v FROM t WHERE k = :key", "SELECT v FROM t WHERE k = %(key)s"),
        ("SELECT :key::text", "SELECT %(key)s::text"),
        ("SELECT ':key', v FROM t WHERE k = :key", "SELECT ':key', v FROM t WHERE k = %(key)s"),
        ("SELECT 100 % 7, 'a%b'", "SELECT 100 %% 7, 'a%%b'"),
        ('SELECT "col:key" FROM t', 'SELECT "col:key" FROM t'),
        ("SELECT 'it''s :key'", "SELECT 'it''s :key'"),
    ],
)
def test_sqlite_parameters_become_psycopg_ones(query: str, expected: str) -> None:
    assert pg_placeholders(query) == expected


def test_an_unclosed_quote_is_refused() -> None:
    with pytest.raises(ConfigError, match="unbalanced quotes"):
        pg_placeholders("SELECT 'x FROM t WHERE k = :key")
