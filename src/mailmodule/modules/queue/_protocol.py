"""What the scheduler and `target.queue` need of a queue's storage: `QueueStorage`.

Two stores implement it: `QueueStore`, maddy's directory (one machine), and
`PostgresQueueStore` (`queue.postgres`: rows in PostgreSQL, bodies in a blob store, shared
by several servers). Every method blocks: call them off the event loop.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

import attrs

from mailmodule.buffer import Buffer
from mailmodule.errors import DataError
from mailmodule.header import Header
from mailmodule.metadata import QueueMetadata

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mailmodule.errors import MetadataError
    from mailmodule.modules.queue._control import FlushRequest

__all__ = ["MessageClaim", "QueueStorage", "StagedMessage", "StoredMessage", "check_id"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


def check_id(message_id: str) -> str:
    """`message_id` if it can be a queue message ID: letters, digits, "-" and "_", at most
    200, not starting with "-" or "_" (so no path, no hidden file, no SQL of its own).

    Raises:
        DataError: it cannot; names it.
    """
    if not isinstance(message_id, str) or not _ID.fullmatch(message_id):
        raise DataError(f"not a queue message ID: {message_id!r}")
    return message_id


@final
@attrs.frozen(kw_only=True)
class StoredMessage:
    """A message read from the queue: its metadata, header and body."""

    id: str
    meta: QueueMetadata
    header: Header
    body: Buffer


class StagedMessage(Protocol):
    """A message written but not yet queued: `commit` makes it exist, `abort` drops it.

    Callers may assume: exactly one of the two has an effect; `abort` after either is a
    no-op.
    Raises: `StorageError` from `commit` when the message cannot be made durable; nothing
    of it is left then.
    """

    @property
    def id(self) -> str: ...

    def commit(self) -> None:
        """Make the message exist, durably: when this returns, a crash loses nothing."""
        ...

    def abort(self) -> None:
        """Remove what was written."""
        ...


class MessageClaim(Protocol):
    """The right to work on one message: no other claim on it is granted until `release`
    (or, for a store of leases, until the lease runs out unrenewed).

    Callers may assume: `release` is idempotent and is all `__exit__` does.
    Implementers must: grant no second claim on the message while this one holds.
    Raises: `StorageError` (a part is missing or cannot be read or written),
    `MetadataError`, `HeaderError` (`read`: a part is malformed).
    """

    @property
    def id(self) -> str: ...

    def read(self) -> StoredMessage:
        """The message as stored; its body is valid until `release`."""
        ...

    def update(self, meta: QueueMetadata, *, due: float) -> None:
        """Replace the metadata (after an attempt), atomically and durably; the message is
        next due at `due` (Unix seconds, perhaps infinite)."""
        ...

    def remove(self) -> None:
        """Remove the message for good."""
        ...

    def release(self) -> None: ...

    def __enter__(self) -> MessageClaim: ...

    def __exit__(self, *exc_info: object) -> None: ...


@runtime_checkable
class QueueStorage(Protocol):
    """Where a queue keeps its messages. `target.queue`'s `store` setting names one.

    Callers may assume: a message exists from the return of its `commit` until a claim
    `remove`s it; `claim` never grants two claims on one message at once, across
    processes and machines sharing the storage.
    Implementers must: block (the callers run them on threads); be safe to call from
    several threads at once; never point at a part of a message not yet durable.
    Raises: `StorageError` when the storage fails; `DataError` for an ID that cannot be one.
    """

    @property
    def location(self) -> str:
        """Where the messages are, for logs (a directory; a DSN without its password)."""
        ...

    @property
    def poll_interval(self) -> float:
        """Seconds between looks for messages others queued, and before a message found
        claimed elsewhere is looked at again."""
        ...

    def stage(self, meta: QueueMetadata, header: Header, body: Buffer) -> StagedMessage:
        """Write a new message's parts; `meta.msg_meta.id` becomes the ID it got."""
        ...

    def claim(self, message_id: str) -> MessageClaim | None:
        """Claim a message without waiting; None when it is claimed elsewhere or gone."""
        ...

    def exists(self, message_id: str) -> bool:
        """Whether the message is queued (claimed or not)."""
        ...

    def ids(self) -> Sequence[str]:
        """The IDs of the queued messages, sorted."""
        ...

    def candidates(self) -> Sequence[str]:
        """The IDs of the messages a scheduler may want to try: a superset of those due
        and not claimed elsewhere (a directory gives them all)."""
        ...

    def read_meta(self, message_id: str) -> QueueMetadata:
        """A message's metadata, read without claiming it."""
        ...

    def read_unclaimed(self, message_id: str) -> StoredMessage:
        """A message, read without claiming it (to show it)."""
        ...

    def iter_metas(self) -> Iterator[tuple[str, QueueMetadata | MetadataError]]:
        """Every queued message's ID and metadata (or why it cannot be read), by ID."""
        ...

    def clean(self) -> list[str]:
        """Remove the leftovers of writes that never finished; the IDs cleaned."""
        ...

    def request_flush(self, ids: Sequence[str] = ()) -> None:
        """Ask the queues delivering from this storage to retry `ids` (every message when
        empty) now."""
        ...

    def take_flush(self) -> FlushRequest | None:
        """The flush asked since the last call, if any (taken: no other caller sees it)."""
        ...

    def close(self) -> None:
        """Let go of connections and threads. Idempotent."""
        ...
