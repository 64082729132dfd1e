"""PostgreSQL for `table.sql`: the same query settings as SQLite, through psycopg 3.

Queries are written once, with SQLite's named parameters (`:key`, `:value`);
`pg_placeholders` turns them into psycopg's (`%(key)s`). Lookups on the main thread's loop
share a pool of asyncio connections, opened on demand (so a forked worker opens its own)
up to `max_connections`; the synchronous `MutableTable` methods, which the CLI calls, and
loops of other threads (`auth.pass_table` runs its lookups on one) share one blocking
connection. Closing never needs a loop: libpq's `finish` is synchronous.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping, Sequence

import psycopg

from mailmodule.config import redact_dsn
from mailmodule.errors import ConfigError, StorageError

__all__ = ["PostgresQueries", "pg_placeholders"]

# A quoted literal or identifier, a `::` cast, a `:name` parameter, or a lone `%`.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:([A-Za-z_][A-Za-z0-9_]*)|%")


def pg_placeholders(query: str) -> str:
    """`query` with `:name` parameters as psycopg's `%(name)s`, and `%` escaped.

    Quoted literals, quoted identifiers and `::` casts are left as they are.

    Raises:
        ConfigError: a quote is not closed, so parameters cannot be told from text.
    """
    if (query.count("'") % 2) or (query.count('"') % 2):
        raise ConfigError(f"unbalanced quotes in query {query!r}")

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group(1) is not None:
            return f"%({match.group(1)})s"
        if text == "%":
            return "%%"
        if text[0] in "'\"":
            return text.replace("%", "%%")
        return text

    return _TOKEN.sub(replace, query)


class PostgresQueries:
    """Named queries against one PostgreSQL database, pooled.

    Args:
        dsn: a libpq connection string or URI (never logged or echoed unredacted).
        queries: query name -> SQL with `:name` parameters.
        module: the configuring module, for error messages.
        max_connections: how many asyncio connections may be open at once.
    """

    def __init__(
        self,
        dsn: str,
        queries: Mapping[str, str],
        *,
        module: str,
        max_connections: int = 10,
    ) -> None:
        self._dsn = dsn
        self._module = module
        self._queries = {name: pg_placeholders(sql) for name, sql in queries.items()}
        self._max = max_connections
        self._lock = threading.Lock()
        self._sync: psycopg.Connection[tuple[object, ...]] | None = None
        self._idle: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def connect(self, init: Sequence[str]) -> None:
        """Check that the database answers, running the `init` statements once.

        Raises:
            ConfigError: the database refuses or fails.
        """
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
                for statement in init:
                    conn.execute(statement.encode())
        except psycopg.Error as exc:
            raise ConfigError(
                f"database {redact_dsn(self._dsn)!r}: {_first_line(exc)}",
                module=self._module,
                key="dsn",
            ) from exc

    def _query(self, name: str) -> bytes:
        query = self._queries.get(name)
        if query is None:
            raise StorageError(f"table {self._module!r} has no {name!r} query")
        return query.encode()

    def _failed(self, name: str, exc: BaseException) -> StorageError:
        return StorageError(f"table {self._module!r}: {name} query failed: {_first_line(exc)}")

    def run(self, name: str, params: Mapping[str, str]) -> list[tuple[object, ...]]:
        """Run query `name` on the blocking connection; its rows (none for a statement).

        Raises:
            StorageError: the query is not configured or the database fails.
        """
        query = self._query(name)
        with self._lock:
            try:
                if self._sync is None or self._sync.closed:
                    self._sync = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
                cur = self._sync.execute(query, dict(params))
                return cur.fetchall() if cur.description is not None else []
            except (psycopg.Error, UnicodeError) as exc:
                raise self._failed(name, exc) from exc

    async def arun(self, name: str, params: Mapping[str, str]) -> list[tuple[object, ...]]:
        """Run query `name` on a pooled asyncio connection.

        Raises:
            StorageError: the query is not configured or the database fails.
        """
        query = self._query(name)
        if threading.current_thread() is not threading.main_thread():
            # A loop of a worker thread (auth_plain's asyncio.run, off the main loop) lives
            # for one call: the blocking connection serves it, and blocking here blocks no one.
            return await asyncio.to_thread(self.run, name, params)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections wait on the loop that opened them
            self._finish_idle()
            self._loop, self._slots = loop, asyncio.Semaphore(self._max)
        assert self._slots is not None
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(
                        self._dsn, autocommit=True, connect_timeout=10
                    )
                cur = await conn.execute(query, dict(params))
                rows = await cur.fetchall() if cur.description is not None else []
            except (psycopg.Error, UnicodeError) as exc:
                if conn is not None:
                    conn.pgconn.finish()
                raise self._failed(name, exc) from exc
            except BaseException:
                if conn is not None:  # cancelled mid-query: its state is unknown
                    conn.pgconn.finish()
                raise
            self._idle.append(conn)
            return rows

    def _finish_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.pgconn.finish()

    def close(self) -> None:
        """Close every connection; callable from anywhere, a loop or none."""
        self._finish_idle()
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
