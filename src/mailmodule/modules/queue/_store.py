"""The queue directory, laid out as maddy's `target.queue` lays it out.

A message `ID` is three files: `ID.header` (the header as written on the wire), `ID.body`
and `ID.meta` (maddy's QueueMetadata JSON, `mailmodule.metadata.QueueMetadata`). The
`.meta` is written last, through `ID.meta.new` and a rename: a message exists once its
`.meta` does, and not before; a body or header without one is the leftover of a write that
never finished.

Who works on a message holds an exclusive `flock` on its open `ID.body`: the writer from
creating the body until the `.meta` is durable, a delivery attempt while it runs, a removal
while it removes. Whoever finds the lock taken leaves the message alone; a process that
dies (even by SIGKILL) lets go of its locks, so its leftovers can be told from work under
way in another process (a worker of `serve --workers`, `check-config`, `mailmodule queue`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from typing import BinaryIO, final

from mailmodule._fsutil import make_private_dirs
from mailmodule.buffer import Buffer, FileBuffer
from mailmodule.errors import DataError, MetadataError, StorageError
from mailmodule.header import Header
from mailmodule.metadata import QueueMetadata
from mailmodule.modules.queue._control import FlushRequest, request_flush, take_flush
from mailmodule.modules.queue._dirsync import DirSync
from mailmodule.modules.queue._protocol import StoredMessage, check_id

__all__ = ["Claim", "QueueStore", "Staged"]

_log = logging.getLogger("mailmodule.modules.queue")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")  # check_id's
_SUFFIXES = (".meta.new", ".meta", ".header", ".body")
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW
_COPY_CHUNK = 1 << 16
#: Tries at finding a free ID before giving up (each next one has random letters added).
_ID_TRIES = 8


@final
class Staged:
    """A message whose header, body and `.meta.new` are written and fsynced: one rename
    away from existing.

    Holds the lock of the body until `commit` or `abort` closes it.
    """

    def __init__(self, store: QueueStore, message_id: str, body_fd: int) -> None:
        self.store = store
        self.id = message_id
        self._fd = body_fd

    def commit(self) -> None:
        """Rename the `.meta` into place and fsync the directory: the message now exists,
        durably. Releases the lock.

        Raises:
            StorageError: the rename or the fsync failed; nothing of the message is left.
        """
        try:
            self.publish()
            self.store.dir_sync.sync()
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write queue message {self.id}: {exc}") from exc
        self.release()

    def publish(self) -> None:
        """The rename alone; the caller makes it durable (a group commit does it for many).

        Raises:
            OSError: the rename failed.
        """
        os.replace(self.store.path(self.id, ".meta.new"), self.store.path(self.id, ".meta"))

    def abort(self) -> None:
        """Remove what was written (the body last) and release the lock."""
        if self._fd < 0:
            return
        self.store._unlink(self.id, (".meta", ".meta.new", ".header", ".body"))
        self.release()

    def release(self) -> None:
        """Close the body, and with it let go of the lock."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


@final
class Claim:
    """The lock on one message: read it, record an attempt, or remove it."""

    def __init__(self, store: QueueStore, message_id: str, body_fd: int) -> None:
        self.store = store
        self.id = message_id
        self._fd = body_fd

    def read(self) -> StoredMessage:
        """The message as stored.

        Raises:
            StorageError: a file is missing or cannot be read.
            MetadataError: the `.meta` is malformed.
            HeaderError: the `.header` is malformed.
        """
        meta = QueueMetadata.read(self.store.path(self.id, ".meta"))
        try:
            with open(self.store.path(self.id, ".header"), "rb") as f:
                raw = f.read()
            size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise StorageError(f"cannot read queue message {self.id}: {exc}") from exc
        header = Header.parse(raw)
        return StoredMessage(
            id=self.id,
            meta=meta,
            header=header,
            body=FileBuffer(self.store.path(self.id, ".body"), size),
        )

    def update(self, meta: QueueMetadata, *, due: float = 0.0) -> None:
        """Replace the `.meta` atomically and durably (`due` follows from it: unused).

        Raises:
            StorageError: it cannot be written; the old one is still in place.
        """
        try:
            self.store._write_meta(self.id, meta)
            self.store.dir_sync.sync()
        except OSError as exc:
            raise StorageError(f"cannot update queue message {self.id}: {exc}") from exc

    def remove(self) -> None:
        """Remove the message: the `.meta` first (it is then no message any more), durably,
        then its header and body."""
        self.store._unlink(self.id, (".meta",))
        with contextlib.suppress(OSError):
            self.store.dir_sync.sync()
        self.store._unlink(self.id, (".meta.new", ".header", ".body"))

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@final
class QueueStore:
    """One queue directory: writing, claiming, scanning and cleaning up messages (the
    `QueueStorage` of one machine).

    Every method blocks on the file system: call them off the event loop.

    Args:
        location: the directory; created (0700) when missing.

    Raises:
        StorageError: the directory cannot be created.
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        path = os.path.abspath(os.fspath(location))
        try:
            make_private_dirs(path)
        except OSError as exc:
            raise StorageError(f"cannot create the queue directory {path!r}: {exc}") from exc
        self.location = path
        self._prefix = os.path.join(path, "")
        self.dir_sync = DirSync(path)
        self.poll_interval = 60.0

    def path(self, message_id: str, suffix: str) -> str:
        """The file `message_id` + `suffix` of the directory (the ID is not checked)."""
        return self._prefix + message_id + suffix

    # Writing

    def stage(self, meta: QueueMetadata, header: Header, body: Buffer) -> Staged:
        """Write the header, body and `.meta.new` of a new message and fsync them.

        The message's ID is `meta.msg_meta.id` or, when that is taken, that ID with random
        letters added; `meta.msg_meta.id` is set to the ID it got, which maddy reads the
        files by.

        Returns:
            The staged message, holding its lock; its `id` is the ID it got.

        Raises:
            DataError: `meta.msg_meta` is None or its ID cannot be a queue message ID.
            MetadataError: `meta` cannot be written.
            StorageError: the files cannot be written; nothing is left of them.
        """
        if meta.msg_meta is None:
            raise DataError("a queued message needs its MsgMetadata")
        base = check_id(meta.msg_meta.id)
        staged = None
        for attempt in range(_ID_TRIES):
            candidate = base if attempt == 0 else f"{base[:190]}-{secrets.token_hex(3)}"
            try:
                fd = os.open(self.path(candidate, ".body"), _NEW_FILE, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot write queue message {candidate}: {exc}") from exc
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
            staged = Staged(self, candidate, fd)
            break
        if staged is None:
            raise StorageError(f"no free queue message ID for {base} after {_ID_TRIES} tries")
        meta.msg_meta.id = staged.id
        try:
            self._write_parts(staged.id, staged._fd, header, body, meta)
        except OSError as exc:
            staged.abort()
            raise StorageError(f"cannot write queue message {staged.id}: {exc}") from exc
        except BaseException:
            staged.abort()
            raise
        return staged

    def _write_parts(
        self, message_id: str, body_fd: int, header: Header, body: Buffer, meta: QueueMetadata
    ) -> None:
        """Write the three files, then fsync them."""
        data = meta.to_json()
        with contextlib.suppress(FileNotFoundError):  # a dead writer's, of an ID now free
            os.unlink(self.path(message_id, ".header"))
        fds = []
        try:
            fds.append(os.open(self.path(message_id, ".header"), _NEW_FILE, 0o600))
            _write_all(fds[0], header.to_bytes())
            with body.open() as reader:
                _copy(reader, body_fd)
            new_meta = self.path(message_id, ".meta.new")
            fds.append(os.open(new_meta, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NO_FOLLOW, 0o600))
            _write_all(fds[1], data)
            for fd in (body_fd, *fds):
                os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)

    def _write_new_meta(self, message_id: str, meta: QueueMetadata) -> None:
        """`.meta.new`, fsynced."""
        data = meta.to_json()
        tmp = self.path(message_id, ".meta.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NO_FOLLOW, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_meta(self, message_id: str, meta: QueueMetadata) -> None:
        """`.meta.new`, fsync, rename; the caller makes the rename durable."""
        self._write_new_meta(message_id, meta)
        os.replace(self.path(message_id, ".meta.new"), self.path(message_id, ".meta"))

    def _unlink(self, message_id: str, suffixes: tuple[str, ...]) -> None:
        for suffix in suffixes:
            try:
                os.unlink(self.path(message_id, suffix))
            except FileNotFoundError:
                pass
            except OSError as exc:
                _log.error(
                    "queue %s: cannot remove %s%s: %s", self.location, message_id, suffix, exc
                )

    # Claiming

    def claim(self, message_id: str) -> Claim | None:
        """Take the lock of a stored message without waiting.

        Returns:
            The claim, or None when another process or task holds the lock, or when the
            message is not (or no longer) complete.

        Raises:
            DataError: `message_id` cannot be a queue message ID.
            StorageError: the body exists but cannot be opened.
        """
        fd = self._lock_body(check_id(message_id))
        if fd is None:
            return None
        if not os.path.exists(self.path(message_id, ".meta")):
            os.close(fd)  # removed meanwhile, or never committed
            return None
        return Claim(self, message_id, fd)

    def _lock_body(self, message_id: str) -> int | None:
        path = self.path(message_id, ".body")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot open queue message {message_id}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The file we locked must still be the message's: not removed and made anew.
            if os.fstat(fd).st_ino != os.stat(path, follow_symlinks=False).st_ino:
                raise BlockingIOError
        except OSError:
            os.close(fd)
            return None
        return fd

    def exists(self, message_id: str) -> bool:
        """Whether the message's `.meta` is there."""
        return os.path.exists(self.path(check_id(message_id), ".meta"))

    # Scanning

    def ids(self) -> list[str]:
        """The IDs of the complete messages (`.meta`, `.header` and `.body` all there),
        sorted. Reads the directory only.

        Raises:
            StorageError: the directory cannot be read.
        """
        groups = self._groups()
        return sorted(i for i, kinds in groups.items() if {".meta", ".header", ".body"} <= kinds)

    def candidates(self) -> list[str]:
        """Every complete message (`ids`): when one is due is in its `.meta`."""
        return self.ids()

    def _groups(self) -> dict[str, set[str]]:
        try:
            names = os.listdir(self.location)
        except OSError as exc:
            raise StorageError(f"cannot read the queue directory {self.location!r}: {exc}") from exc
        groups: dict[str, set[str]] = {}
        for name in names:
            for suffix in _SUFFIXES:
                if name.endswith(suffix):
                    message_id = name[: -len(suffix)]
                    if _ID.fullmatch(message_id):
                        groups.setdefault(message_id, set()).add(suffix)
                    break
        return groups

    def clean(self) -> list[str]:
        """Remove the leftovers of writes and removals that never finished: a body, header
        or `.meta.new` without a `.meta`, a `.meta` without its header or body. Files whose
        body another process holds locked are work under way and are left alone.

        Returns:
            The IDs cleaned up.

        Raises:
            StorageError: the directory cannot be read.
        """
        cleaned = []
        for message_id, kinds in sorted(self._groups().items()):
            if {".meta", ".header", ".body"} <= kinds:
                if ".meta.new" in kinds:
                    self._clean_locked(message_id, (".meta.new",))
                continue
            if ".body" in kinds:
                if self._clean_locked(message_id, (".meta", ".meta.new", ".header", ".body")):
                    cleaned.append(message_id)
                continue
            # No body: no writer holds this ID (the body comes first and goes last).
            self._unlink(message_id, (".meta", ".meta.new", ".header"))
            cleaned.append(message_id)
        if cleaned:
            _log.warning(
                "queue %s: removed the leftovers of %d unfinished message(s): %s",
                self.location,
                len(cleaned),
                ", ".join(cleaned),
            )
        return cleaned

    def _clean_locked(self, message_id: str, suffixes: tuple[str, ...]) -> bool:
        fd = self._lock_body(message_id)
        if fd is None:
            return False
        try:
            self._unlink(message_id, suffixes)
        finally:
            os.close(fd)
        return True

    def read_meta(self, message_id: str) -> QueueMetadata:
        """The `.meta` of a message, without claiming it (for listing).

        Raises:
            DataError: `message_id` cannot be a queue message ID.
            StorageError: it cannot be read.
            MetadataError: it is malformed.
        """
        return QueueMetadata.read(self.path(check_id(message_id), ".meta"))

    def read_unclaimed(self, message_id: str) -> StoredMessage:
        """A message as stored, read without its lock (for showing it).

        Raises:
            DataError: `message_id` cannot be a queue message ID.
            StorageError: a file is missing or cannot be read.
            MetadataError, HeaderError: a file is malformed.
        """
        meta = self.read_meta(message_id)
        try:
            with open(self.path(message_id, ".header"), "rb") as f:
                header = Header.parse(f.read())
        except OSError as exc:
            raise StorageError(f"cannot read queue message {message_id}: {exc}") from exc
        return StoredMessage(
            id=message_id,
            meta=meta,
            header=header,
            body=FileBuffer(self.path(message_id, ".body")),
        )

    def iter_metas(self) -> Iterator[tuple[str, QueueMetadata | MetadataError]]:
        """Every complete message's ID and `.meta` (or the error reading it), by ID."""
        for message_id in self.ids():
            try:
                yield message_id, self.read_meta(message_id)
            except (MetadataError, StorageError) as exc:
                yield message_id, MetadataError(str(exc))

    # Flushing, closing

    def request_flush(self, ids: Sequence[str] = ()) -> None:
        """Append `ids` (every message when empty) to the control file (`request_flush`)."""
        request_flush(self.location, ids)

    def take_flush(self) -> FlushRequest | None:
        """Take the control file away, and what it asks (`take_flush`)."""
        return take_flush(self.location)

    def close(self) -> None:
        """Nothing to let go of: every file is closed after use."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy(reader: BinaryIO, fd: int) -> None:
    while chunk := reader.read(_COPY_CHUNK):
        _write_all(fd, chunk)
