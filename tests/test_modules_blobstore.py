from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    UNKNOWN_BLOB_SIZE,
    BlobStore,
    MailModuleError,
    NoSuchBlobError,
    StorageError,
)
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


@pytest.mark.parametrize("key", [chr(0xD800), f"a{chr(0xDFFF)}b", chr(0xDC80)])
async def test_a_key_that_is_not_valid_utf8_is_refused_naming_the_key(
    store: BlobStore, key: str
) -> None:
    with pytest.raises(StorageError, match="invalid blob key") as info:
        await store.create(key, 1)
    assert repr(key) in str(info.value)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.open(key)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.delete([key])


@settings(max_examples=150, deadline=None)
@given(
    key=st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=300),  # surrogates too
        st.sampled_from(["\ud800", "\udc80", "a" * 255, "\u00e9" * 128, "..a", "a."]),
    )
)
def test_any_key_is_refused_with_a_typed_error_or_round_trips(key: str) -> None:
    """Create, write, sync, open, delete: a key either works all the way or is refused."""
    with tempfile.TemporaryDirectory() as root:
        for store in (
            build(new_registry(), "storage.blob.fs", "b", {"root": root}),
            MemoryBlobStore(),
        ):
            assert isinstance(store, BlobStore)
            asyncio.run(_round_trip(store, key))
        assert os.listdir(root) == []


async def _round_trip(store: BlobStore, key: str) -> None:
    refused: MailModuleError | None = None
    try:
        blob = await store.create(key, 3)
    except MailModuleError as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused, StorageError)
        assert "invalid blob key" in str(refused)
        return
    blob.write(b"abc")
    blob.sync()
    blob.close()
    assert await read(store, key) == b"abc"
    await store.delete([key])
    with pytest.raises(NoSuchBlobError):
        await store.open(key)


async def test_a_blob_that_overflowed_its_size_is_never_published(store: BlobStore) -> None:
    blob = await store.create("msg1", 3)
    blob.write(b"ab")
    with pytest.raises(StorageError, match="larger than the 3 bytes"):
        blob.write(b"cd")
    with pytest.raises(StorageError, match="failed write"):
        blob.sync()
    blob.close()
    with pytest.raises(NoSuchBlobError):
        await store.open("msg1")
    if isinstance(store, FSBlobStore):
        assert os.listdir(store.root) == []


async def test_a_blob_shorter_than_its_announced_size_is_never_published(
    store: BlobStore,
) -> None:
    blob = await store.create("msg1", 5)
    blob.write(b"abc")
    with pytest.raises(StorageError, match="3 of the 5 bytes"):
        blob.sync()
    blob.close()
    with pytest.raises(NoSuchBlobError):
        await store.open("msg1")
    if isinstance(store, FSBlobStore):
        assert os.listdir(store.root) == []


async def test_create_refuses_a_symlink_planted_at_the_key(tmp_path: Path) -> None:
    store = build(new_registry(), "storage.blob.fs", "b", {"root": str(tmp_path / "root")})
    assert isinstance(store, FSBlobStore)
    target = tmp_path / "target"
    target.write_text("keep me")
    link = os.path.join(store.root, "planted")
    os.symlink(target, link)
    with pytest.raises(StorageError, match="not a regular file"):
        await store.create("planted", 1)
    assert os.readlink(link) == str(target)
    assert target.read_text() == "keep me"


async def test_sync_refuses_a_symlink_planted_after_create(tmp_path: Path) -> None:
    store = build(new_registry(), "storage.blob.fs", "b", {"root": str(tmp_path / "root")})
    assert isinstance(store, FSBlobStore)
    target = tmp_path / "target"
    target.write_text("keep me")
    blob = await store.create("planted", 1)
    blob.write(b"x")
    link = os.path.join(store.root, "planted")
    os.symlink(target, link)
    with pytest.raises(StorageError, match="not a regular file"):
        blob.sync()
    blob.close()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "keep me"
    assert sorted(os.listdir(store.root)) == ["planted"]


async def test_a_synced_blob_may_be_replaced_under_the_same_key(store: BlobStore) -> None:
    for content in (b"one", b"two"):
        blob = await store.create("k", len(content))
        blob.write(content)
        blob.sync()
        blob.close()
    assert await read(store, "k") == b"two"


async def test_open_refuses_a_directory_planted_at_the_key(tmp_path: Path) -> None:
    store = build(new_registry(), "storage.blob.fs", "b", {"root": str(tmp_path / "root")})
    assert isinstance(store, FSBlobStore)
    os.mkdir(os.path.join(store.root, "planted"))
    with pytest.raises(StorageError, match="not a regular file"):
        await store.open("planted")
