"""`storage.blob.s3` against a real S3 service: moto's server mode on loopback."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError, NoSuchBlobError, StorageError
from mailmodule.interfaces import UNKNOWN_BLOB_SIZE, Blob, BlobStore
from mailmodule.modules.blob_s3 import S3BlobStore
from mailmodule.testing import BlobStoreSuite
from tests.endpoint_kit import free_port

_buckets = itertools.count()
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, for the session; its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's server did not start (exit {server.poll()})")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def configure(endpoint: str, bucket: str, **settings: object) -> S3BlobStore:
    store = S3BlobStore("storage.blob.s3", "blobs")
    store.init(ConfigMap({
        "endpoint": endpoint, "bucket": bucket, "access_key": "test", "secret_key": "test",
        **settings,
    }, module="storage.blob.s3"))  # fmt: skip
    return store


async def new_bucket(store: S3BlobStore) -> None:
    s3 = await store._s3()
    await s3.create_bucket(Bucket=store.bucket)


async def object_names(store: S3BlobStore) -> list[str]:
    s3 = await store._s3()
    listed = await s3.list_objects_v2(Bucket=store.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


async def read(store: BlobStore, key: str) -> bytes:
    reader = await store.open(key)
    try:
        return reader.read()
    finally:
        reader.close()


async def put(store: BlobStore, key: str, data: bytes, size: int | None = None) -> None:
    blob = await store.create(key, len(data) if size is None else size)
    try:
        blob.write(data)
        await asyncio.to_thread(blob.sync)
    finally:
        blob.close()


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[S3BlobStore]:
    built = configure(s3_endpoint, f"bucket{next(_buckets)}", part_size="5M")
    await new_bucket(built)
    yield built
    await built.aclose()


class TestS3BlobStore(BlobStoreSuite):
    """The kit's contract of BlobStore, over S3."""

    @pytest.fixture
    def store(self, store: S3BlobStore) -> BlobStore:
        return store


async def test_nothing_is_visible_before_sync(store: S3BlobStore) -> None:
    blob = await store.create("msg", 5)
    blob.write(b"hello")
    assert await object_names(store) == []
    with pytest.raises(NoSuchBlobError):
        await store.open("msg")
    await asyncio.to_thread(blob.sync)
    blob.close()
    assert await object_names(store) == ["msg"]


async def test_close_without_sync_leaves_nothing(store: S3BlobStore) -> None:
    blob = await store.create("msg", UNKNOWN_BLOB_SIZE)
    blob.write(b"x" * (6 * MiB))
    blob.close()
    assert await object_names(store) == []


async def test_a_large_blob_goes_up_in_parts(store: S3BlobStore) -> None:
    data = bytes(range(256)) * (11 * MiB // 256)
    await put(store, "big", data)
    s3 = await store._s3()
    head = await s3.head_object(Bucket=store.bucket, Key="big")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert await read(store, "big") == data


async def test_a_failed_multipart_upload_is_aborted(store: S3BlobStore) -> None:
    blob = await store.create("big", UNKNOWN_BLOB_SIZE)
    blob.write(b"y" * (6 * MiB))
    store.bucket, real = "no-such-bucket", store.bucket
    try:
        with pytest.raises(StorageError, match="cannot store blob 'big'"):
            await asyncio.to_thread(blob.sync)
    finally:
        store.bucket = real
    s3 = await store._s3()
    uploads = await s3.list_multipart_uploads(Bucket=real)
    assert uploads.get("Uploads", []) == []
    assert await object_names(store) == []


async def test_a_short_blob_is_discarded_at_sync(store: S3BlobStore) -> None:
    blob = await store.create("short", 10)
    blob.write(b"four")
    with pytest.raises(StorageError, match="4 of the 10 bytes"):
        await asyncio.to_thread(blob.sync)
    assert await object_names(store) == []


async def test_sync_on_the_event_loop_is_refused_not_deadlocked(store: S3BlobStore) -> None:
    blob = await store.create("k", 1)
    blob.write(b"k")
    with pytest.raises(StorageError, match="off the event loop"):
        blob.sync()
    assert await object_names(store) == []


@pytest.mark.parametrize("key", ["", ".", "..", "../escape", "a/b", ".hidden", "nul\x00"])
async def test_keys_are_checked_as_the_file_store_checks_them(store: S3BlobStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.create(key, 1)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.open(key)
    with pytest.raises(StorageError, match="invalid blob key"):
        await store.delete([key])


async def test_the_prefix_keeps_blobs_apart(s3_endpoint: str) -> None:
    bucket = f"bucket{next(_buckets)}"
    one = configure(s3_endpoint, bucket, object_prefix="one/")
    two = configure(s3_endpoint, bucket, object_prefix="two/")
    await new_bucket(one)
    try:
        await put(one, "k", b"1")
        await put(two, "k", b"2")
        assert sorted(await object_names(one)) == ["one/k", "two/k"]
        assert (await read(one, "k"), await read(two, "k")) == (b"1", b"2")
        await one.delete(["k"])
        assert await object_names(one) == ["two/k"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_deleting_many_keys_batches_them(store: S3BlobStore) -> None:
    await asyncio.gather(*(put(store, f"k{i}", b"x") for i in range(30)))
    await store.delete([f"k{i}" for i in range(1500)])
    assert await object_names(store) == []


def test_a_blob_written_without_a_running_loop_is_uploaded(s3_endpoint: str) -> None:
    """The CLI's way: no server loop; sync uploads on a loop of its own."""
    store = configure(s3_endpoint, f"bucket{next(_buckets)}")

    async def setup() -> Blob:
        await new_bucket(store)
        blob = await store.create("k", 3)
        await store.aclose()
        blob.write(b"abc")
        return blob

    blob = asyncio.run(setup())
    blob.sync()
    blob.close()

    async def check() -> bytes:
        try:
            return await read(store, "k")
        finally:
            await store.aclose()

    assert asyncio.run(check()) == b"abc"


def test_a_missing_bucket_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bucket"):
        S3BlobStore().init(ConfigMap({"endpoint": "http://127.0.0.1:1"}, module="s3"))


def test_a_secret_key_without_an_access_key_is_refused_and_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        S3BlobStore().init(ConfigMap({"bucket": "b", "secret_key": "hunter2"}, module="s3"))
    assert "hunter2" not in str(caught.value)


def test_a_part_size_under_s3s_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match="part_size"):
        S3BlobStore().init(ConfigMap({"bucket": "b", "part_size": "1M"}, module="s3"))


@settings(max_examples=15)
@given(
    data=st.binary(max_size=4096),
    key=st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}", fullmatch=True),
)
def test_any_bytes_under_any_plain_key_round_trip(s3_endpoint: str, data: bytes, key: str) -> None:
    async def scenario() -> bytes:
        store = configure(s3_endpoint, "roundtrip")
        try:
            s3 = await store._s3()
            if "roundtrip" not in {b["Name"] for b in (await s3.list_buckets())["Buckets"]}:
                await s3.create_bucket(Bucket="roundtrip")
            await put(store, key, data)
            return await read(store, key)
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) == data
