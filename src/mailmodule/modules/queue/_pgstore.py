"""`queue.postgres`: the module that configures a queue store in PostgreSQL (`_pgdb`), for
`target.queue`'s `store` setting. psycopg is imported only when one is initialized."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Final, final

from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, MetadataError, StorageError
from mailmodule.header import Header
from mailmodule.interfaces import BlobStore
from mailmodule.metadata import QueueMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.queue._control import FlushRequest
from mailmodule.modules.queue._protocol import MessageClaim, StagedMessage, StoredMessage

if TYPE_CHECKING:
    from mailmodule.modules.queue._pgdb import PgQueue

__all__ = ["PostgresQueueStore"]

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")

_DSN: Final = Setting.string(
    "dsn",
    "the database: a libpq connection string or URI",
    default_doc="required (in code: the first inline argument)",
    default="",
)
_BLOBS: Final = Setting.module(
    "blobs", "the blob store of the bodies (storage.blob.s3, storage.blob.fs)", BlobStore
)
_TABLE: Final = Setting.string(
    "table", "the table of the messages (and <table>_staged)", "mailmodule_queue"
)
_LEASE: Final = Setting.duration(
    "lease",
    "how long a claim holds unrenewed: a dead server's messages wait this long",
    datetime.timedelta(minutes=1),
    positive=True,
)
_POLL: Final = Setting.duration(
    "poll",
    "how often to look for messages other servers queued or let go",
    datetime.timedelta(seconds=5),
    positive=True,
)
_ORPHAN_AGE: Final = Setting.duration(
    "orphan_age",
    "how old an unfinished write must be before its body is removed",
    datetime.timedelta(hours=1),
    positive=True,
)


@final
class PostgresQueueStore(ModuleBase):
    """`queue.postgres`: a `QueueStorage` in PostgreSQL with bodies in a blob store, for
    several servers sharing one queue (`target.queue`'s `store = "&name"`).

    Settings: `SETTINGS` (`dsn`, `blobs`, `table`, `lease`, `poll`, `orphan_age`). Give
    the queue a blob store instance of its own. A message is a row (maddy's QueueMetadata
    JSON, the header, the body's key, when it is due, its lease); its body is durable in
    the blob store before its row is inserted; a claim is a lease in the database's time,
    taken with `FOR UPDATE SKIP LOCKED`, renewed while an attempt runs, so a server that
    dies lets its messages go to the others after `lease`. Every method blocks: the queue
    calls them on its threads.
    """

    SETTINGS: ClassVar = (_DSN, _BLOBS, _TABLE, _LEASE, _POLL, _ORPHAN_AGE)

    def __init__(
        self,
        mod_name: str = "queue.postgres",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._db: PgQueue | None = None

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        dsn = cfg.value(_DSN, self.inline_default() or "")
        if not dsn:
            raise ConfigError("required key is missing", module=cfg.module, key="dsn")
        blobs = cfg.value(_BLOBS)
        if not isinstance(blobs, BlobStore):
            raise ConfigError("not a BlobStore", module=cfg.module, key="blobs")
        table = cfg.value(_TABLE)
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigError(
                f"expected a lower-case SQL name (letters, digits, _), got {table!r}",
                module=cfg.module,
                key="table",
            )
        try:
            from mailmodule.modules.queue._pgdb import PgQueue
        except ImportError as exc:
            raise ConfigError(
                "queue.postgres needs psycopg: pip install 'mailmodule[postgres]'",
                module=cfg.module,
            ) from exc
        try:
            self._db = PgQueue(
                dsn=dsn,
                blobs=blobs,
                table=table,
                lease=cfg.value(_LEASE).total_seconds(),
                poll=cfg.value(_POLL).total_seconds(),
                orphan_age=cfg.value(_ORPHAN_AGE).total_seconds(),
            )
        except StorageError as exc:
            raise ConfigError(str(exc), module=cfg.module, key="dsn") from exc

    @property
    def db(self) -> PgQueue:
        """The store itself.

        Raises:
            StorageError: `init` has not run.
        """
        if self._db is None:
            raise StorageError(f"{self!r} is not initialized")
        return self._db

    # QueueStorage, by delegation

    @property
    def location(self) -> str:
        return self.db.location

    @property
    def poll_interval(self) -> float:
        return self.db.poll_interval

    def stage(self, meta: QueueMetadata, header: Header, body: Buffer) -> StagedMessage:
        return self.db.stage(meta, header, body)

    def claim(self, message_id: str) -> MessageClaim | None:
        return self.db.claim(message_id)

    def exists(self, message_id: str) -> bool:
        return self.db.exists(message_id)

    def ids(self) -> list[str]:
        return self.db.ids()

    def candidates(self) -> list[str]:
        return self.db.candidates()

    def read_meta(self, message_id: str) -> QueueMetadata:
        return self.db.read_meta(message_id)

    def read_unclaimed(self, message_id: str) -> StoredMessage:
        return self.db.read_unclaimed(message_id)

    def iter_metas(self) -> Iterator[tuple[str, QueueMetadata | MetadataError]]:
        return self.db.iter_metas()

    def clean(self) -> list[str]:
        return self.db.clean()

    def request_flush(self, ids: Sequence[str] = ()) -> None:
        self.db.request_flush(ids)

    def take_flush(self) -> FlushRequest | None:
        return self.db.take_flush()

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
