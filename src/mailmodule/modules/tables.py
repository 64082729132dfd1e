"""Tables: `table.static` (entries from the configuration), `table.file` (a `key: value`
file, reloaded when it changes) and `table.sql` (SQL queries, SQLite by default)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Final, final

from mailmodule.config import ConfigMap, Setting, describe_value, redact_dsn
from mailmodule.errors import ConfigError, DataError, StorageError
from mailmodule.modules._base import ModuleBase

if TYPE_CHECKING:
    from mailmodule.modules._postgres import PostgresQueries

__all__ = ["FileTable", "SQLTable", "StaticTable", "parse_table_file"]

_log = logging.getLogger("mailmodule.modules.tables")

_ENTRIES: Final = Setting.raw(
    "entries", "the table's contents", "table of key = value or [values]", {}
)
_FILE: Final = Setting.string(
    "file",
    "the key: value file (missing: an empty table)",
    None,
    default_doc="required (in code: the first inline argument)",
)
_RELOAD_INTERVAL: Final = Setting.duration(
    "reload_interval", "how often the file is checked for changes", datetime.timedelta(seconds=5)
)
_DRIVER: Final = Setting.string(
    "driver",
    "the database driver (postgres needs the postgres extra)",
    "sqlite3",
    type_doc='"sqlite3", "postgres"',
)
_DSN: Final = Setting.string(
    "dsn", "the database: for sqlite3 its file, for postgres a libpq connection string or URI"
)
_MAX_CONNECTIONS: Final = Setting.integer(
    "max_connections", "postgres: how many connections lookups may hold open", 10, minimum=1
)
_LOOKUP: Final = Setting.string("lookup", "the query of a key (:key), giving the value first")
_LIST: Final = Setting.string("list", "the query of all keys (for MutableTable)", None)
_SET: Final = Setting.string("set", "the statement storing :value at :key (MutableTable)", None)
_DEL: Final = Setting.string("del", "the statement deleting :key (MutableTable)", None)
_INIT: Final = Setting.raw(
    "init", "statements run once at start", "SQL statement or list of statements", []
)


@final
class StaticTable(ModuleBase):
    """`table.static`: a table whose entries are in its configuration.

    Settings: `entries`, a mapping of key to a value or a list of values. Lookups are
    exact: callers normalize keys (`address.for_lookup`).
    """

    def __init__(
        self,
        mod_name: str = "table.static",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._entries: dict[str, list[str]] = {}

    SETTINGS: ClassVar = (_ENTRIES,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        entries = cfg.value(_ENTRIES)
        if not isinstance(entries, Mapping):
            raise ConfigError(
                "expected a mapping of key to value", module=cfg.module, key="entries"
            )
        parsed: dict[str, list[str]] = {}
        for key, raw in entries.items():
            if isinstance(raw, str):
                parsed[str(key)] = [raw]
            elif isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw):
                parsed[str(key)] = list(raw)
            else:
                raise ConfigError(
                    f"entry {key!r}: expected a string or a list of strings, "
                    f"got {describe_value('entries', raw)}",
                    module=cfg.module,
                    key="entries",
                )
        self._entries = parsed

    async def lookup(self, key: str) -> str | None:
        values = self._entries.get(key)
        return values[0] if values else None

    async def lookup_multi(self, key: str) -> list[str]:
        return list(self._entries.get(key, ()))


def parse_table_file(text: str, source: str = "<table>") -> dict[str, list[str]]:
    """Parse `key: value` lines; several values per key by repeating the key or by
    separating values with commas. Blank lines and lines starting with "#" are skipped; a
    key alone (`key` or `key:`) has the empty value. Only "\\n" (or "\\r\\n") ends a line:
    other Unicode line separators are part of a key or value.

    Raises:
        DataError: a line has an empty key; names the source and the line.
    """
    entries: dict[str, list[str]] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.removesuffix("\r").strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, rest = stripped.partition(":")
        key = key.strip()
        if not key:
            # The line itself is not quoted: in a users file it holds a password hash.
            raise DataError(f"{source}:{number}: a line needs a key before the colon")
        values = [v.strip() for v in rest.split(",")] if rest.strip() else [""]
        known = entries.setdefault(key, [])
        known.extend(v for v in values if v not in known)
    return entries


def _decode_table_file(data: bytes, source: str) -> str:
    """The file's text.

    Raises:
        DataError: the bytes are not UTF-8; names the source and the line.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{source}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x})") from exc


def _check_text(text: str) -> None:
    """Refuse text that has no UTF-8 form (a lone surrogate) without quoting it.

    Raises:
        DataError: `text` holds a lone surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"a table key or value is not valid UTF-8 (at {exc.start})") from exc


def _check_writable(key: str, values: Sequence[str]) -> None:
    """Refuse what `parse_table_file` would not read back as written.

    Raises:
        DataError: an empty key, one with a colon or starting with "#", a comma in a value,
            a line break or a lone surrogate anywhere, or surrounding white space.
    """
    for text in (key, *values):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"table entry {key!r} is not valid UTF-8") from exc
        if text != text.strip() or any(c in text for c in "\r\n"):
            raise DataError(
                f"table entry {key!r} cannot hold a line break or surrounding white space"
            )
    if not key or ":" in key or key.startswith("#"):
        raise DataError(f"table key {key!r} cannot be written to a table file")
    if any("," in v for v in values):
        raise DataError(f"table value for {key!r} cannot hold a comma")


def _format_table_file(entries: Mapping[str, Sequence[str]]) -> str:
    lines = []
    for key in sorted(entries):
        for value in entries[key]:
            lines.append(f"{key}: {value}" if value else key)
    return "\n".join(lines) + ("\n" if lines else "")


@final
class FileTable(ModuleBase):
    """`table.file`: a table read from a `key: value` file, reloaded when the file changes.

    Settings: `file` (or the first inline argument), the path; `reload_interval`, how often
    the file is checked for changes (default 5s). The file is UTF-8; one that is not, or
    has a line without a key, is refused at `init` with a `ConfigError` naming the file and
    the line. A reload reads the whole file before it replaces what the table holds, so a
    lookup never sees a half-read file; a malformed file is logged (file and line) and the
    previous contents stay. Changes through `MutableTable` write a temporary file (0600)
    and rename it into place; keys and values that would not read back as written are
    refused with `DataError`.
    """

    def __init__(
        self,
        mod_name: str = "table.file",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.path = ""
        self._entries: dict[str, list[str]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._interval = 5.0
        self._checked = 0.0
        self._lock = threading.Lock()

    SETTINGS: ClassVar = (_FILE, _RELOAD_INTERVAL)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        path = cfg.value(_FILE, self.inline_default())
        if not path:
            raise ConfigError("required key is missing", module=cfg.module, key="file")
        # A missing file is an empty table, but one in a missing directory can never be
        # written: every lookup (every login) would fail without a word.
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ConfigError(
                f"directory {folder!r} does not exist", module=cfg.module, key="file", file=path
            )
        self.path = path
        self._interval = cfg.value(_RELOAD_INTERVAL).total_seconds()
        try:
            self._reload(force=True)
        except (OSError, DataError) as exc:
            raise ConfigError(str(exc), module=cfg.module, key="file", file=path) from exc

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload(self, *, force: bool = False) -> None:
        stamp = self._file_stamp()
        if not force and stamp == self._stamp:
            return
        if stamp is None:
            entries: dict[str, list[str]] = {}
        else:
            with open(self.path, "rb") as f:
                data = f.read()
            entries = parse_table_file(_decode_table_file(data, self.path), self.path)
        with self._lock:
            self._entries, self._stamp = entries, stamp

    async def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return
        self._checked = now
        try:
            await asyncio.to_thread(self._reload)
        except (OSError, DataError) as exc:
            _log.error("table %s: keeping the old contents, reload failed: %s", self.path, exc)

    async def lookup(self, key: str) -> str | None:
        await self._fresh()
        values = self._entries.get(key)
        return values[0] if values else None

    async def lookup_multi(self, key: str) -> list[str]:
        await self._fresh()
        return list(self._entries.get(key, ()))

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def set_key(self, k: str, v: str) -> None:
        self._change(k, [v])

    def remove_key(self, k: str) -> None:
        self._change(k, None)

    def _change(self, key: str, values: list[str] | None) -> None:
        _check_writable(key, values or ())
        with self._lock:
            entries = dict(self._entries)
            if values is None:
                entries.pop(key, None)
            else:
                entries[key] = values
            directory = os.path.dirname(os.path.abspath(self.path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=".table-", dir=directory)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(_format_table_file(entries))
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            except OSError as exc:
                raise StorageError(f"cannot write table file {self.path!r}: {exc}") from exc
            self._entries = entries
            self._stamp = self._file_stamp()


def _private_database_file(dsn: str) -> None:
    """Create the SQLite file `dsn` 0600 if it is missing; warn if an existing one is not.

    Raises:
        OSError: the file cannot be created or inspected.
    """
    if dsn in ("", ":memory:"):  # connect() takes no URI: anything else is a file name
        return
    try:
        fd = os.open(dsn, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        mode = os.stat(dsn).st_mode
        if mode & 0o077:
            _log.warning("database %s is open to others (mode %o)", dsn, mode & 0o777)
        return
    try:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask took away
    finally:
        os.close(fd)


#: `table.sql` drivers; "postgres" is maddy's name for PostgreSQL, "postgresql" libpq's.
_SQL_DRIVERS = ("sqlite3", "postgres", "postgresql")


@final
class SQLTable(ModuleBase):
    """`table.sql`: a table backed by SQL queries, on SQLite (stdlib `sqlite3`, the
    default) or PostgreSQL (psycopg 3, the `postgres` extra).

    Settings: `driver` ("sqlite3", or "postgres" as maddy spells it), `dsn` (the database
    file, or a libpq connection string or URI), `lookup` (a query with the named parameter
    `:key`, returning the value in its first column), and for `MutableTable`: `list` (all
    keys), `set` (`:key`, `:value`), `del` (`:key`); `init`, statements run once at start;
    `max_connections` (PostgreSQL's pool, 10). The queries are the same for both drivers:
    SQLite's `:name` parameters become psycopg's. SQLite queries run off the event loop;
    PostgreSQL lookups on an asyncio pool.

    A database file that does not exist is created 0600 whatever the umask, before SQLite
    opens it; SQLite gives its -journal, -wal and -shm files the database's mode. An
    existing database keeps its mode, with a warning when others may read it.
    """

    def __init__(
        self,
        mod_name: str = "table.sql",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._db: sqlite3.Connection | None = None
        self._pg: PostgresQueries | None = None
        self._lock = threading.Lock()
        self._queries: dict[str, str] = {}

    SETTINGS: ClassVar = (_DRIVER, _DSN, _LOOKUP, _LIST, _SET, _DEL, _INIT, _MAX_CONNECTIONS)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        driver = cfg.value(_DRIVER)
        if driver not in _SQL_DRIVERS:
            raise ConfigError(
                f"unsupported driver {driver!r} (choose one of {', '.join(_SQL_DRIVERS)})",
                module=cfg.module,
                key="driver",
            )
        dsn = cfg.value(_DSN)
        self._queries = {"lookup": cfg.value(_LOOKUP)}
        for setting in (_LIST, _SET, _DEL):
            query = cfg.value(setting)
            if query is not None:
                self._queries[setting.name] = query
        raw_init = cfg.value(_INIT)
        statements = [raw_init] if isinstance(raw_init, str) else raw_init
        if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
            raise ConfigError("expected SQL statements", module=cfg.module, key="init")
        if driver != "sqlite3":
            try:
                from mailmodule.modules._postgres import PostgresQueries
            except ImportError as exc:
                raise ConfigError(
                    "the postgres driver needs psycopg: pip install 'mailmodule[postgres]'",
                    module=cfg.module,
                    key="driver",
                ) from exc
            try:
                pg = PostgresQueries(
                    dsn,
                    self._queries,
                    module=self.instance_name() or cfg.module,
                    max_connections=cfg.value(_MAX_CONNECTIONS),
                )
            except ConfigError as exc:
                raise ConfigError(exc.message, module=cfg.module, key="lookup") from exc
            pg.connect(statements)
            self._pg = pg
            return
        try:
            _private_database_file(dsn)
        except OSError as exc:
            raise ConfigError(
                f"cannot create database {redact_dsn(dsn)!r}: {exc.strerror}",
                module=cfg.module,
                key="dsn",
            ) from exc
        try:
            self._db = sqlite3.connect(dsn, check_same_thread=False, isolation_level=None)
            for statement in statements:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"database {redact_dsn(dsn)!r}: {exc}", module=cfg.module, key="dsn"
            ) from exc

    def _run(self, name: str, params: dict[str, str]) -> list[tuple[object, ...]]:
        query = self._queries.get(name)
        if query is None:
            raise ConfigError(
                f"this table has no {name!r} query: it cannot do that",
                module=self.instance_name(),
                key=name,
            )
        for value in params.values():
            _check_text(value)
        if self._pg is not None:
            return self._pg.run(name, params)
        if self._db is None:
            raise StorageError(f"table {self.instance_name()!r} is not initialized")
        try:
            with self._lock:
                return self._db.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(
                f"table {self.instance_name()!r}: {name} query failed: {exc}"
            ) from exc

    async def _arun(self, name: str, params: dict[str, str]) -> list[tuple[object, ...]]:
        if self._pg is not None:
            return await self._pg.arun(name, params)
        return await asyncio.to_thread(self._run, name, params)

    async def lookup(self, key: str) -> str | None:
        rows = await self._lookup(key)
        return None if not rows else str(rows[0][0])

    async def lookup_multi(self, key: str) -> list[str]:
        return [str(r[0]) for r in await self._lookup(key)]

    async def _lookup(self, key: str) -> list[tuple[object, ...]]:
        try:
            _check_text(key)
        except DataError:
            return []  # no key of the database can be it
        return await self._arun("lookup", {"key": key})

    def keys(self) -> list[str]:
        return [str(r[0]) for r in self._run("list", {})]

    def set_key(self, k: str, v: str) -> None:
        self._run("set", {"key": k, "value": v})

    def remove_key(self, k: str) -> None:
        self._run("del", {"key": k})

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._db is not None:
            self._db.close()
            self._db = None
