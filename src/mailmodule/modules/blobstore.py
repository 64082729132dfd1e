"""Blob stores: `storage.blob.fs` (files in a directory) and an in-memory one for tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import tempfile
import threading
from collections.abc import Sequence
from typing import IO, ClassVar, Final, final

from mailmodule._fsutil import fsync_dir
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, NoSuchBlobError, StorageError
from mailmodule.interfaces import UNKNOWN_BLOB_SIZE, ReadCloser
from mailmodule.modules._base import ModuleBase

__all__ = ["CheckedWrites", "FSBlobStore", "MemoryBlobStore", "check_blob_key", "check_blob_size"]


def check_blob_key(key: str) -> str:
    """Refuse keys that could leave the store's directory or are not file names.

    Raises:
        StorageError: the key is empty, ".", "..", holds a path separator or NUL, starts
            with "." (kept for the store's own temporary files), is not valid UTF-8 (a lone
            surrogate), or is longer than 255 bytes; the message names the key.
    """
    if not isinstance(key, str):
        raise StorageError(f"invalid blob key {key!r}: keys are str")
    try:
        encoded = key.encode("utf-8")
        os.fsencode(key)  # the file system's own encoding may be narrower
    except UnicodeEncodeError as exc:
        raise StorageError(f"invalid blob key {key!r}: not valid UTF-8") from exc
    if (
        not key
        or key.startswith(".")
        or any(c in key for c in "/\\\0")
        or os.path.isabs(key)
        or len(encoded) > 255
    ):
        raise StorageError(f"invalid blob key {key!r}: keys are plain file names")
    return key


def check_blob_size(key: str, size: int, written: int) -> None:
    """Raises StorageError when `written` is not the announced `size` (unless unknown)."""
    if size != UNKNOWN_BLOB_SIZE and written != size:
        raise StorageError(f"blob {key!r} has {written} of the {size} bytes announced; discarded")


def _refuse_non_file(key: str, path: str) -> None:
    """Refuse a key whose path holds anything but a regular file: a symlink, a directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"blob {key!r} is taken by something that is not a regular file")


class CheckedWrites:
    """The writing half of a Blob over a local file: refused once closed, after a failed
    write, or past the announced size (which poisons the blob: its `sync` must then
    raise and discard it). Subclasses publish in `sync` and discard in `close`."""

    def __init__(self, file: IO[bytes], key: str, size: int) -> None:
        self._file, self._key, self._size = file, key, size
        self._written = 0
        self._done = False
        self._failed = False

    def write(self, data: bytes, /) -> int:
        if self._done:
            raise StorageError("blob is closed")
        if self._failed:
            raise StorageError(f"blob {self._key!r} had a failed write")
        if self._size != UNKNOWN_BLOB_SIZE and self._written + len(data) > self._size:
            self._failed = True
            raise StorageError(f"blob is larger than the {self._size} bytes announced")
        try:
            written = self._file.write(data)
        except OSError as exc:
            self._failed = True
            raise StorageError(f"cannot write blob {self._key!r}: {exc}") from exc
        self._written += written
        return written


class _Blob(CheckedWrites):
    """A blob being written to a temporary file; `sync` moves it under its key."""

    def __init__(self, fd: int, tmp: str, final: str, key: str, size: int) -> None:
        super().__init__(os.fdopen(fd, "wb"), key, size)
        self._tmp, self._final = tmp, final

    def sync(self) -> None:
        """Publish the blob; on any failure it is discarded and nothing is visible."""
        if self._done:
            raise StorageError("blob is closed")
        try:
            if self._failed:
                raise StorageError(f"blob {self._key!r} had a failed write; discarded")
            check_blob_size(self._key, self._size, self._written)
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                _refuse_non_file(self._key, self._final)
                # rename never follows a symlink at the destination, even one raced in
                os.replace(self._tmp, self._final)
                fsync_dir(os.path.dirname(self._final))
            except OSError as exc:
                raise StorageError(f"cannot store blob {self._key!r}: {exc}") from exc
        except StorageError:
            self.close()
            raise
        self._done = True

    def close(self) -> None:
        """Without a successful `sync`, the data is discarded."""
        if not self._file.closed:
            self._file.close()
        if not self._done:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


_ROOT: Final = Setting.string(
    "root",
    "the directory of the blobs, created if missing",
    "",
    default_doc="required (in code: the first inline argument)",
)


@final
class FSBlobStore(ModuleBase):
    """`storage.blob.fs`: blobs as files in one directory.

    Settings: `root` (or the first inline argument), the directory, created if missing.
    Keys are plain file names in UTF-8 (`check_blob_key`); a key never leads outside the
    directory. A symlink (or anything but a regular file) planted at a key's path is
    refused by `open`, `create` and `sync`, never followed nor replaced; `delete` removes
    the link itself. A blob is published by `sync` only when every write succeeded and,
    for an exact `blob_size`, exactly that many bytes were written; otherwise `sync` raises
    and the blob is discarded.
    """

    def __init__(
        self,
        mod_name: str = "storage.blob.fs",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.root = ""

    SETTINGS: ClassVar = (_ROOT,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        root = cfg.value(_ROOT, self.inline_default() or "")
        if not root:
            raise ConfigError("required key is missing", module=cfg.module, key="root")
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {root!r}: {exc}", module=cfg.module, key="root"
            ) from exc
        self.root = os.path.realpath(root)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, check_blob_key(key))

    async def create(self, key: str, blob_size: int) -> _Blob:
        final = self._path(key)

        def make() -> _Blob:
            _refuse_non_file(key, final)
            fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=self.root)
            return _Blob(fd, tmp, final, key, blob_size)

        try:
            return await asyncio.to_thread(make)
        except OSError as exc:
            raise StorageError(f"cannot create blob {key!r}: {exc}") from exc

    async def open(self, key: str) -> ReadCloser:
        path = self._path(key)

        def opened() -> ReadCloser:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                raise NoSuchBlobError(key) from None
            except OSError as exc:  # ELOOP: a planted symlink
                raise StorageError(f"cannot open blob {key!r}: {exc}") from exc
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise StorageError(f"cannot open blob {key!r}: not a regular file")
            return os.fdopen(fd, "rb")

        return await asyncio.to_thread(opened)

    async def delete(self, keys: list[str]) -> None:
        paths = [self._path(k) for k in keys]

        def remove() -> None:
            for path in paths:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(f"cannot delete blob {path!r}: {exc}") from exc

        await asyncio.to_thread(remove)


class _MemoryBlob:
    def __init__(self, store: MemoryBlobStore, key: str, size: int) -> None:
        self._store, self._key, self._size = store, key, size
        self._data = bytearray()
        self._done = False
        self._failed = False

    def write(self, data: bytes, /) -> int:
        if self._done:
            raise StorageError("blob is closed")
        if self._failed:
            raise StorageError(f"blob {self._key!r} had a failed write")
        if self._size != UNKNOWN_BLOB_SIZE and len(self._data) + len(data) > self._size:
            self._failed = True
            raise StorageError(f"blob is larger than the {self._size} bytes announced")
        self._data += data
        return len(data)

    def sync(self) -> None:
        if self._done:
            raise StorageError("blob is closed")
        self._done = True
        if self._failed:
            raise StorageError(f"blob {self._key!r} had a failed write; discarded")
        check_blob_size(self._key, self._size, len(self._data))
        with self._store._lock:
            self._store.blobs[self._key] = bytes(self._data)

    def close(self) -> None:
        self._done = True


@final
class MemoryBlobStore(ModuleBase):
    """A blob store in memory, for tests: `blobs` maps key to content.

    Keys and sizes are checked as by `FSBlobStore`.
    """

    def __init__(
        self,
        mod_name: str = "storage.blob.memory",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    SETTINGS: ClassVar[tuple[Setting[object], ...]] = ()

    def init(self, cfg: ConfigMap) -> None:
        """Nothing to configure: any key is refused."""
        cfg.declare(self.SETTINGS)

    async def create(self, key: str, blob_size: int) -> _MemoryBlob:
        return _MemoryBlob(self, check_blob_key(key), blob_size)

    async def open(self, key: str) -> ReadCloser:
        with self._lock:
            data = self.blobs.get(check_blob_key(key))
        if data is None:
            raise NoSuchBlobError(key)
        return io.BytesIO(data)

    async def delete(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self.blobs.pop(check_blob_key(key), None)
