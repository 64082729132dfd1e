"""The queue of `queue.postgres`: messages in PostgreSQL, their bodies in a blob store,
shared by every server that names the same database (imported only when one is
configured: psycopg is an extra).

A message is a row of the table (`mailmodule_queue` by default): its ID, maddy's
QueueMetadata JSON, the header as written on the wire, the key of its body in the blob
store, when it is next due, and the lease: who works on it, and until when. The schema is
created when missing.

Writing: the ID is reserved first (a row of `<table>_staged`, naming the body's key),
then the body is written to the blob store and synced, then, in one transaction, the
reservation is dropped and the message's row inserted. A row never points at a body not
yet durable; a crash in between leaves a reservation and perhaps a body, which `clean`
removes once it is older than `orphan_age`. Removing runs the other way round: the row is
replaced by a doomed reservation in one transaction, then the body is deleted, then the
reservation; a crash in between is cleaned up the same way.

Claiming takes a lease in the database's time: `UPDATE ... WHERE id IN (SELECT ... WHERE
lease_until IS NULL OR lease_until < now() FOR UPDATE SKIP LOCKED)`, so two servers never
hold one message at once, and a server that dies lets its messages go when their leases
run out. A thread renews the leases held, every third of `lease`, while attempts run; an
update or removal checks the lease is still this store's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Final, TypeVar, final

import psycopg

from mailmodule.buffer import Buffer, BufferWriter
from mailmodule.config import redact_dsn
from mailmodule.errors import DataError, MetadataError, StorageError
from mailmodule.header import Header
from mailmodule.interfaces import BlobStore
from mailmodule.metadata import QueueMetadata
from mailmodule.modules.queue._control import FlushRequest
from mailmodule.modules.queue._protocol import StoredMessage, check_id

__all__ = ["PgQueue"]

_log = logging.getLogger("mailmodule.modules.queue")
_T = TypeVar("_T")
_Row = tuple[object, ...]
#: Tries at finding a free ID before giving up (each next one has random letters added).
_ID_TRIES = 8
_CHUNK = 1 << 16
_IDLE: Final = psycopg.pq.TransactionStatus.IDLE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@final
class _BlobLoop:
    """A loop on a thread of its own, where the blob store's coroutines run: the store's
    methods are called from many threads, and an S3 client belongs to one loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[object, object, _T]) -> _T:
        with self._lock:
            if self._loop is None:  # started on first use: listing needs none
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="queue.postgres blobs", daemon=True
                )
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self, last: Callable[[], Coroutine[object, object, None]] | None = None) -> None:
        """Run `last()` on the loop (if it ever ran: what it closes lives there), then stop
        it."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            if last is not None:
                try:
                    asyncio.run_coroutine_threadsafe(last(), loop).result()
                except Exception as exc:  # closing: what fails is logged, the rest goes on
                    _log.error("queue.postgres: closing the blob store failed: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


@final
class _Staged:
    """A reserved ID whose body is durable in the blob store: `commit` inserts the row."""

    def __init__(self, store: PgQueue, message_id: str, key: str, meta: bytes,
                 header: bytes) -> None:  # fmt: skip
        self.store = store
        self.id = message_id
        self._key = key
        self._meta = meta
        self._header = header
        self._done = False

    def commit(self) -> None:
        """Drop the reservation and insert the row, in one transaction.

        Raises:
            StorageError: the database failed, or the reservation was taken for an orphan
                (older than `orphan_age`); the body is removed then.
        """
        if self._done:
            raise StorageError(f"queue message {self.id} was already committed or aborted")
        store = self.store
        try:
            with store.connection() as conn, conn.transaction():
                cur = conn.execute(store.sql("DELETE FROM {s} WHERE id = %s AND NOT doomed"
                                             " RETURNING id"), (self.id,))  # fmt: skip
                if cur.fetchone() is None:
                    raise StorageError(f"queue message {self.id}: its reservation was lost")
                conn.execute(
                    store.sql("INSERT INTO {t} (id, meta, header, body_key, due)"
                              " VALUES (%s, %s, %s, %s, now())"),
                    (self.id, self._meta, self._header, self._key),
                )  # fmt: skip
        except (psycopg.Error, StorageError) as exc:
            self.abort()
            if isinstance(exc, StorageError):
                raise
            raise store.failed(f"cannot queue message {self.id}", exc) from exc
        self._done = True

    def abort(self) -> None:
        """Remove the body, then the reservation (a failure leaves them to `clean`)."""
        if self._done:
            return
        self._done = True
        self.store.drop_reservation(self.id, self._key)


@final
class _Claim:
    """A lease on one message, renewed by the store until `release`."""

    def __init__(self, store: PgQueue, message_id: str, row: _Row) -> None:
        self.store = store
        self.id = message_id
        self._row = row
        self._body: Buffer | None = None
        self._held = True

    def read(self) -> StoredMessage:
        """The message as claimed; its body is fetched from the blob store into a buffer
        (memory, then a temporary file) that `release` removes.

        Raises:
            StorageError: the body cannot be fetched.
            MetadataError, HeaderError: the row's metadata or header is malformed.
        """
        message, body = self.store.message(self.id, self._row)
        if self._body is not None:  # read again: the earlier copy goes
            self._body.remove()
        self._body = body
        return message

    def update(self, meta: QueueMetadata, *, due: float) -> None:
        """Write the metadata and next due time, and let go of the lease.

        Raises:
            StorageError: the database failed, or the lease was lost (it ran out and another
                server claimed the message): then nothing is written.
        """
        store = self.store
        data = meta.to_json()
        try:
            with store.connection() as conn:
                cur = conn.execute(
                    store.sql("UPDATE {t} SET meta = %s, due = to_timestamp(%s),"
                              " lease_owner = NULL, lease_until = NULL"
                              " WHERE id = %s AND lease_owner = %s"),
                    (data, due, self.id, store.owner),
                )  # fmt: skip
        except psycopg.Error as exc:
            raise store.failed(f"cannot update queue message {self.id}", exc) from exc
        if cur.rowcount != 1:
            raise StorageError(f"queue message {self.id}: the lease was lost; not updated")
        self._let_go()

    def remove(self) -> None:
        """Remove the row, then the body.

        Raises:
            StorageError: the database failed, or the lease was lost (nothing removed).
        """
        store = self.store
        try:
            with store.connection() as conn, conn.transaction():
                cur = conn.execute(
                    store.sql("DELETE FROM {t} WHERE id = %s AND lease_owner = %s"
                              " RETURNING body_key"), (self.id, store.owner),
                )  # fmt: skip
                row = cur.fetchone()
                if row is None:
                    raise StorageError(f"queue message {self.id}: the lease was lost; kept")
                conn.execute(
                    store.sql("INSERT INTO {s} (id, body_key, doomed) VALUES (%s, %s, true)"
                              " ON CONFLICT (id) DO NOTHING"), (self.id, row[0]),
                )  # fmt: skip
        except psycopg.Error as exc:
            raise store.failed(f"cannot remove queue message {self.id}", exc) from exc
        self._let_go()
        store.drop_reservation(self.id, str(row[0]))

    def _let_go(self) -> None:
        self._held = False
        self.store.forget(self.id)

    def release(self) -> None:
        """Give the lease back (if still held) and remove the fetched body. Idempotent."""
        body, self._body = self._body, None
        if body is not None:
            body.remove()
        if self._held:
            self._let_go()
            self.store.unlease(self.id)

    def __enter__(self) -> _Claim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@final
class PgQueue:
    """A `QueueStorage` in PostgreSQL with bodies in a blob store (`queue.postgres`).

    Args:
        dsn: the database (never logged unredacted).
        blobs: the blob store of the bodies.
        table: the messages' table (an SQL name, checked by the caller).
        lease: seconds a claim holds unrenewed.
        poll: seconds between looks for messages others queued or let go.
        orphan_age: seconds before an unfinished write's body is removed.

    Raises:
        StorageError: the tables cannot be created.
    """

    def __init__(self, *, dsn: str, blobs: BlobStore, table: str, lease: float, poll: float,
                 orphan_age: float) -> None:  # fmt: skip
        self._dsn = dsn
        self._blobs = blobs
        self._table = table
        self.lease = lease
        self.poll_interval = poll
        self.orphan_age = orphan_age
        self.location = f"{redact_dsn(dsn)} table {table}"
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._idle: list[psycopg.Connection[_Row]] = []
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._loop = _BlobLoop()
        self.create_schema()

    # The database

    def sql(self, text: str) -> bytes:
        """`text` with `{t}` the table and `{s}` the reservations table (names checked)."""
        return text.format(t=self._table, s=f"{self._table}_staged").encode()

    def failed(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"{what}: database {redact_dsn(self._dsn)!r}: {_first_line(exc)}")

    def connection(self) -> _Lent:
        """A connection of the pool (autocommit), for one `with` block."""
        return _Lent(self)

    def take(self) -> psycopg.Connection[_Row]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise self.failed("cannot connect", exc) from exc

    def give(self, conn: psycopg.Connection[_Row], broken: bool) -> None:
        with self._lock:
            if not (broken or self._closed or conn.closed
                    or conn.info.transaction_status != _IDLE):  # fmt: skip
                self._idle.append(conn)
                return
        conn.close()

    def create_schema(self) -> None:
        """Create the tables when missing.

        Raises:
            StorageError: the database refuses.
        """
        statements = (
            "CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, meta bytea NOT NULL,"
            " header bytea NOT NULL, body_key text NOT NULL, due timestamptz NOT NULL,"
            " lease_owner text, lease_until timestamptz,"
            " flush boolean NOT NULL DEFAULT false)",
            "CREATE INDEX IF NOT EXISTS {t}_due ON {t} (due)",
            "CREATE TABLE IF NOT EXISTS {s} (id text PRIMARY KEY, body_key text NOT NULL,"
            " doomed boolean NOT NULL DEFAULT false,"
            " created timestamptz NOT NULL DEFAULT now())",
        )
        try:
            # Concurrent first starts would race in the catalog: one at a time.
            with self.connection() as conn, conn.transaction():
                conn.execute(b"SELECT pg_advisory_xact_lock(7400120)")
                for statement in statements:
                    conn.execute(self.sql(statement))
        except psycopg.Error as exc:
            raise self.failed("cannot create the queue's tables", exc) from exc

    def _query(self, what: str, text: str, params: Sequence[object] = ()) -> list[_Row]:
        try:
            with self.connection() as conn:
                cur = conn.execute(self.sql(text), params)
                return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise self.failed(what, exc) from exc

    # The blob store

    def _write_body(self, key: str, body: Buffer) -> None:
        blob = self._loop.run(self._blobs.create(key, len(body)))
        try:
            with body.open() as reader:
                while chunk := reader.read(_CHUNK):
                    blob.write(chunk)
            blob.sync()
        except OSError as exc:
            raise StorageError(f"cannot read the body for blob {key!r}: {exc}") from exc
        finally:
            blob.close()

    def _read_body(self, key: str) -> Buffer:
        reader = self._loop.run(self._blobs.open(key))
        writer = BufferWriter()
        try:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
            return writer.finish()
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc
        finally:
            writer.abort()
            reader.close()

    def _delete_bodies(self, keys: list[str]) -> None:
        self._loop.run(self._blobs.delete(keys))

    def drop_reservation(self, message_id: str, key: str) -> None:
        """Delete a body and then its reservation; failures are logged, left to `clean`."""
        try:
            self._delete_bodies([key])
            self._query("drop a reservation", "DELETE FROM {s} WHERE id = %s", (message_id,))
        except StorageError as exc:
            _log.error("queue %s: message %s left to clean up: %s", self.location, message_id, exc)

    # QueueStorage

    def stage(self, meta: QueueMetadata, header: Header, body: Buffer) -> _Staged:
        """Reserve an ID, and write the body to the blob store, synced.

        The ID is `meta.msg_meta.id` or, when taken, that ID with random letters added;
        `meta.msg_meta.id` is set to the one it got.

        Raises:
            DataError: `meta.msg_meta` is None or its ID cannot be a queue message ID.
            MetadataError: `meta` cannot be written.
            StorageError: the database or the blob store failed; nothing is left.
        """
        if meta.msg_meta is None:
            raise DataError("a queued message needs its MsgMetadata")
        base = check_id(meta.msg_meta.id)
        key = ""
        for attempt in range(_ID_TRIES):
            candidate = base if attempt == 0 else f"{base[:190]}-{secrets.token_hex(3)}"
            key = f"{self._table}-{candidate}-{secrets.token_hex(8)}"
            rows = self._query(
                f"cannot queue message {candidate}",
                "INSERT INTO {s} (id, body_key) SELECT %s, %s"
                " WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE id = %s)"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                (candidate, key, candidate),
            )
            if rows:
                break
        else:
            raise StorageError(f"no free queue message ID for {base} after {_ID_TRIES} tries")
        meta.msg_meta.id = candidate
        try:
            data = meta.to_json()
            self._write_body(key, body)
        except BaseException:
            self.drop_reservation(candidate, key)
            raise
        return _Staged(self, candidate, key, data, header.to_bytes())

    def claim(self, message_id: str) -> _Claim | None:
        """Lease `message_id` for `lease` seconds of the database's clock, renewed until
        the claim is released, unless another holds an unexpired lease on it.

        Raises:
            DataError: `message_id` cannot be a queue message ID.
            StorageError: the database failed.
        """
        rows = self._query(
            f"cannot claim queue message {message_id}",
            "UPDATE {t} SET lease_owner = %s, lease_until = now() + make_interval(secs => %s)"
            " WHERE id IN (SELECT id FROM {t} WHERE id = %s"
            " AND (lease_until IS NULL OR lease_until < now()) FOR UPDATE SKIP LOCKED)"
            " RETURNING meta, header, body_key",
            (self.owner, self.lease, check_id(message_id)),
        )
        if not rows:
            return None
        with self._lock:
            self._held.add(message_id)
            if self._renewer is None and not self._closed:
                self._renewer = threading.Thread(
                    target=self._renew, name="queue.postgres leases", daemon=True
                )
                self._renewer.start()
        return _Claim(self, message_id, rows[0])

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                self._query(
                    "cannot renew leases",
                    "UPDATE {t} SET lease_until = now() + make_interval(secs => %s)"
                    " WHERE lease_owner = %s AND id = ANY(%s)",
                    (self.lease, self.owner, held),
                )
            except StorageError as exc:
                _log.error("queue %s: %s", self.location, exc)

    def forget(self, message_id: str) -> None:
        """Stop renewing the lease of `message_id`."""
        with self._lock:
            self._held.discard(message_id)

    def unlease(self, message_id: str) -> None:
        """Give the lease of `message_id` back (an error is logged: the lease runs out)."""
        try:
            self._query(
                "cannot give a lease back",
                "UPDATE {t} SET lease_owner = NULL, lease_until = NULL"
                " WHERE id = %s AND lease_owner = %s",
                (message_id, self.owner),
            )
        except StorageError as exc:
            _log.error("queue %s: %s", self.location, exc)

    def message(self, message_id: str, row: _Row) -> tuple[StoredMessage, Buffer]:
        """The message of a row (meta, header, body_key): its body fetched."""
        meta_data, header_data, key = row
        if not isinstance(meta_data, bytes) or not isinstance(header_data, bytes):
            raise StorageError(f"queue message {message_id}: its row is malformed")
        try:
            meta = QueueMetadata.from_json(meta_data)
        except MetadataError as exc:
            exc.add_note(f"in queue message {message_id}")
            raise
        header = Header.parse(header_data)
        body = self._read_body(str(key))
        return StoredMessage(id=message_id, meta=meta, header=header, body=body), body

    def exists(self, message_id: str) -> bool:
        rows = self._query(
            "cannot look up a message", "SELECT 1 FROM {t} WHERE id = %s", (check_id(message_id),)
        )
        return bool(rows)

    def ids(self) -> list[str]:
        return [str(r[0]) for r in self._query("cannot list", "SELECT id FROM {t} ORDER BY id")]

    def candidates(self) -> list[str]:
        """The messages due and unclaimed (in the database's time), soonest first."""
        rows = self._query(
            "cannot list",
            "SELECT id FROM {t} WHERE due <= now()"
            " AND (lease_until IS NULL OR lease_until < now()) ORDER BY due",
        )
        return [str(r[0]) for r in rows]

    def read_meta(self, message_id: str) -> QueueMetadata:
        rows = self._query(
            "cannot read a message", "SELECT meta FROM {t} WHERE id = %s", (check_id(message_id),)
        )
        if not rows or not isinstance(rows[0][0], bytes):
            raise StorageError(f"no queued message {message_id}")
        return QueueMetadata.from_json(rows[0][0])

    def read_unclaimed(self, message_id: str) -> StoredMessage:
        rows = self._query(
            "cannot read a message",
            "SELECT meta, header, body_key FROM {t} WHERE id = %s",
            (check_id(message_id),),
        )
        if not rows:
            raise StorageError(f"no queued message {message_id}")
        return self.message(message_id, rows[0])[0]

    def iter_metas(self) -> Iterator[tuple[str, QueueMetadata | MetadataError]]:
        for message_id, data in self._query("cannot list", "SELECT id, meta FROM {t} ORDER BY id"):
            try:
                if not isinstance(data, bytes):
                    raise MetadataError("not bytes")
                yield str(message_id), QueueMetadata.from_json(data)
            except MetadataError as exc:
                yield str(message_id), exc

    def clean(self) -> list[str]:
        """Remove the bodies of writes older than `orphan_age` that never committed, and
        of removals that never finished, then their reservations.

        Raises:
            StorageError: the database or the blob store failed.
        """
        self._query(
            "cannot clean up",
            "UPDATE {s} SET doomed = true"
            " WHERE NOT doomed AND created < now() - make_interval(secs => %s)",
            (self.orphan_age,),
        )
        rows = self._query("cannot clean up", "SELECT id, body_key FROM {s} WHERE doomed")
        if not rows:
            return []
        self._delete_bodies([str(key) for _id, key in rows])
        ids = [str(i) for i, _key in rows]
        self._query("cannot clean up", "DELETE FROM {s} WHERE doomed AND id = ANY(%s)", (ids,))
        _log.warning(
            "queue %s: removed the leftovers of %d unfinished write(s) or removal(s): %s",
            self.location,
            len(ids),
            ", ".join(ids),
        )
        return sorted(ids)

    def request_flush(self, ids: Sequence[str] = ()) -> None:
        """Mark `ids` (every message when empty) due now and to be retried at once."""
        if ids:
            checked = [check_id(i) for i in ids]
            self._query(
                "cannot flush",
                "UPDATE {t} SET flush = true, due = now() WHERE id = ANY(%s)",
                (checked,),
            )
        else:
            self._query("cannot flush", "UPDATE {t} SET flush = true, due = now()")

    def take_flush(self) -> FlushRequest | None:
        rows = self._query(
            "cannot take a flush", "UPDATE {t} SET flush = false WHERE flush RETURNING id"
        )
        if not rows:
            return None
        return FlushRequest(ids=frozenset(str(r[0]) for r in rows))

    def close(self) -> None:
        """Stop renewing leases (those held run out), close connections and the blob
        loop. Idempotent."""
        with self._lock:
            self._closed = True
        self._stop.set()
        renewer = self._renewer
        if renewer is not None:
            renewer.join()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        # An S3 store's client belongs to the loop it was opened on: close it there.
        self._loop.close(getattr(self._blobs, "aclose", None))


@final
class _Lent:
    """A pooled connection for one `with` block; closed instead of pooled after a failure."""

    def __init__(self, store: PgQueue) -> None:
        self._store = store
        self._conn: psycopg.Connection[_Row] | None = None

    def __enter__(self) -> psycopg.Connection[_Row]:
        self._conn = self._store.take()
        return self._conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._store.give(conn, broken=exc_type is not None)
