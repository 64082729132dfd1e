from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailmodule import UNKNOWN_BLOB_SIZE, BlobStore, NoSuchBlobError, StorageError
from mailmodule.modules import FSBlobStore, MemoryBlobStore
from tests.modules_kit import build, new_registry


@pytest.fixture(params=["fs", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "fs":
        built = build(new_registry(), "storage.blob.fs", "blobs", {"root": str(tmp_path / "b")})
    else:
        built = build(new_registry(), "storage.blob.memory", "blobs", {})
    assert isinstance(built, BlobStore)
    return built


async def read(store: BlobStore, key: str) -> bytes:
    reader = await store.open(key)
    try:
        return reader.read()
    finally:
        reader.close()


async def test_a_blob_appears_under_its_key_only_on_sync(store: BlobStore) -> None:
    blob = await store.create("msg1", 5)
    blob.write(b"hello")
    with pytest.raises(NoSuchBlobError):
        await store.open("msg1")
    blob.sync()
    blob.close()
    assert await read(store, "msg1") == b"hello"


async def test_close_without_sync_discards_the_blob(store: BlobStore, tmp_path: Path) -> None:
    blob = await store.create("msg1", UNKNOWN_BLOB_SIZE)
    blob.write(b"partial")
    blob.close()
    with pytest.raises(NoSuchBlobError, match="msg1"):
        await store.open("msg1")
    if isinstance(store, FSBlobStore):
        assert os.listdir(store.root) == []


async def test_writing_past_the_announced_size_fails(store: BlobStore) -> None:
    blob = await store.create("msg1", 3)
    with pytest.raises(StorageError, match="larger than the 3 bytes"):
        blob.write(b"four")
    blob.close()


async def test_delete_ignores_missing_keys(store: BlobStore) -> None:
    blob = await store.create("a", 1)
    blob.write(b"x")
    blob.sync()
    await store.delete(["a", "never-there"])
    with pytest.raises(NoSuchBlobError):
        await store.open("a")


@pytest.mark.parametrize(
    "key", ["", ".", "..", "../etc/passwd", "/etc/passwd", "a/b", "a\0b", ".hidden", "a\\b"]
)
async def test_hostile_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.create(key, 1)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.open(key)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.delete([key])


async def test_a_symlink_planted_in_the_root_is_not_followed(tmp_path: Path) -> None:
    store = build(new_registry(), "storage.blob.fs", "b", {"root": str(tmp_path / "root")})
    assert isinstance(store, FSBlobStore)
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    os.symlink(secret, os.path.join(store.root, "planted"))
    with pytest.raises(StorageError, match="cannot open blob") as info:
        await store.open("planted")
    assert not isinstance(info.value, NoSuchBlobError)


async def test_concurrent_writers_of_different_keys_do_not_interfere(store: BlobStore) -> None:
    async def write(n: int) -> None:
        blob = await store.create(f"k{n}", UNKNOWN_BLOB_SIZE)
        for _ in range(10):
            blob.write(bytes([n]) * 100)
            await asyncio.sleep(0)
        blob.sync()
        blob.close()

    await asyncio.gather(*(write(n) for n in range(20)))
    for n in range(20):
        assert await read(store, f"k{n}") == bytes([n]) * 1000


def test_memory_store_is_a_blob_store() -> None:
    assert isinstance(MemoryBlobStore(), BlobStore)
