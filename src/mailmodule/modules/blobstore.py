"""Blob stores: `storage.blob.fs` (files in a directory) and an in-memory one for tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tempfile
import threading
from collections.abc import Sequence
from typing import final

from mailmodule._fsutil import fsync_dir
from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError, NoSuchBlobError, StorageError
from mailmodule.interfaces import UNKNOWN_BLOB_SIZE, ReadCloser
from mailmodule.modules._base import ModuleBase

__all__ = ["FSBlobStore", "MemoryBlobStore", "check_blob_key"]


def check_blob_key(key: str) -> str:
    """Refuse keys that could leave the store's directory or are not file names.

    Raises:
        StorageError: the key is empty, ".", "..", holds a path separator or NUL, or
            starts with "." (kept for the store's own temporary files).
    """
    if (
        not isinstance(key, str)
        or not key
        or key in (".", "..")
        or key.startswith(".")
        or any(c in key for c in "/\\\0")
        or os.path.isabs(key)
        or len(key.encode("utf-8", "surrogatepass")) > 255
    ):
        raise StorageError(f"invalid blob key {key!r}: keys are plain file names")
    return key


class _Blob:
    """A blob being written to a temporary file; `sync` moves it under its key."""

    def __init__(self, fd: int, tmp: str, final: str, size: int) -> None:
        self._file = os.fdopen(fd, "wb")
        self._tmp, self._final, self._size = tmp, final, size
        self._written = 0
        self._done = False

    def write(self, data: bytes, /) -> int:
        if self._done:
            raise StorageError("blob is closed")
        self._written += len(data)
        if self._size != UNKNOWN_BLOB_SIZE and self._written > self._size:
            raise StorageError(f"blob is larger than the {self._size} bytes announced")
        try:
            return self._file.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write blob: {exc}") from exc

    def sync(self) -> None:
        if self._done:
            raise StorageError("blob is closed")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self._final)
            fsync_dir(os.path.dirname(self._final))
        except OSError as exc:
            self.close()
            raise StorageError(f"cannot store blob: {exc}") from exc
        self._done = True

    def close(self) -> None:
        """Without a successful `sync`, the data is discarded."""
        if not self._file.closed:
            self._file.close()
        if not self._done:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


@final
class FSBlobStore(ModuleBase):
    """`storage.blob.fs`: blobs as files in one directory.

    Settings: `root` (or the first inline argument), the directory, created if missing.
    Keys are plain file names (`check_blob_key`); a key never leads outside the directory,
    and a symlink planted in it is refused, not followed.
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

    def init(self, cfg: ConfigMap) -> None:
        root = cfg.string("root", self.inline_args[0] if self.inline_args else "")
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
            fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=self.root)
            return _Blob(fd, tmp, final, blob_size)

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

    def write(self, data: bytes, /) -> int:
        if self._done:
            raise StorageError("blob is closed")
        if self._size != UNKNOWN_BLOB_SIZE and len(self._data) + len(data) > self._size:
            raise StorageError(f"blob is larger than the {self._size} bytes announced")
        self._data += data
        return len(data)

    def sync(self) -> None:
        if self._done:
            raise StorageError("blob is closed")
        with self._store._lock:
            self._store.blobs[self._key] = bytes(self._data)
        self._done = True

    def close(self) -> None:
        self._done = True


@final
class MemoryBlobStore(ModuleBase):
    """A blob store in memory, for tests: `blobs` maps key to content."""

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

    def init(self, cfg: ConfigMap) -> None:
        """Nothing to configure."""

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
