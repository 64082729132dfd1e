"""`storage.blob.s3`: blobs as objects in a bucket of any S3-compatible service.

The Blob contract over S3: a blob is written to a local spool (memory, then a temporary
file) and uploaded by `sync` in one PUT, or as a multipart upload when larger than a part,
so nothing is visible under the key until `sync` succeeds; a failed multipart upload is
aborted, and `close` without `sync` uploads nothing. Requests go through aiobotocore, whose
client belongs to the event loop that opened it: `sync`, synchronous as the seed has it and
called off the loop (`asyncio.to_thread`), hands its upload to that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Coroutine, Sequence
from typing import IO, TYPE_CHECKING, ClassVar, Final, final

from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, NoSuchBlobError, StorageError
from mailmodule.interfaces import UNKNOWN_BLOB_SIZE, ReadCloser
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.blobstore import CheckedWrites, check_blob_key, check_blob_size

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3BlobStore"]

#: S3 refuses parts under 5 MiB (but the last).
_MIN_PART: Final = 5 * 1024 * 1024
#: How much of a blob, being written or read, stays in memory before spilling to a file.
_SPOOL: Final = 1024 * 1024
_CHUNK: Final = 256 * 1024
#: DeleteObjects takes at most this many keys a request.
_DELETE_BATCH: Final = 1000

_ENDPOINT: Final = Setting.string(
    "endpoint", "the service's host[:port] or URL; AWS's regional endpoint when empty", ""
)
_SECURE: Final = Setting.boolean("secure", "use https with an endpoint given as host[:port]", True)
_BUCKET: Final = Setting.string("bucket", "the bucket, which must exist")
_REGION: Final = Setting.string("region", "the bucket's region", "us-east-1")
_ACCESS_KEY: Final = Setting.string(
    "access_key", "the access key ID; botocore's usual sources (environment, files) if empty", ""
)
_SECRET_KEY: Final = Setting.string("secret_key", "the secret access key", "")
_PREFIX: Final = Setting.string("object_prefix", "prepended to every key", "")
_PART_SIZE: Final = Setting.size(
    "part_size", "blobs larger than this go up as a multipart upload of such parts",
    8 * 1024 * 1024, minimum=_MIN_PART,
)  # fmt: skip


class _S3Blob(CheckedWrites):
    """A blob spooled locally until `sync` uploads it."""

    def __init__(self, store: S3BlobStore, key: str, size: int) -> None:
        super().__init__(tempfile.SpooledTemporaryFile(max_size=_SPOOL), key, size)  # noqa: SIM115
        self._store = store

    def sync(self) -> None:
        """Upload the blob; on any failure nothing is visible and the blob is discarded.

        Raises:
            StorageError: a failed write, a size other than announced, the service's
                refusal, or a call on the event loop (this blocks until the upload ends).
        """
        if self._done:
            raise StorageError("blob is closed")
        try:
            if self._failed:
                raise StorageError(f"blob {self._key!r} had a failed write; discarded")
            check_blob_size(self._key, self._size, self._written)
            self._file.seek(0)
            self._store._run_blocking(self._store._upload(self._key, self._file, self._written))
        except BaseException:
            self.close()
            raise
        self._done = True
        self._file.close()

    def close(self) -> None:
        """Without a successful `sync`, the data is discarded."""
        self._done = True
        self._file.close()


@final
class S3BlobStore(ModuleBase):
    """`storage.blob.s3`: blobs in an S3 bucket (AWS, MinIO, Ceph, moto, ...), after maddy's
    module of the same name.

    Keys are checked as the file store checks them (`check_blob_key`), then prefixed with
    `object_prefix`. A blob larger than `part_size` is uploaded in parts; an upload that
    fails is aborted, so no part is left billed in the bucket. `open` reads the object into
    a local spool and returns it, so readers need no loop. The secret key is never echoed.
    """

    SETTINGS: ClassVar = (
        _ENDPOINT, _SECURE, _BUCKET, _REGION, _ACCESS_KEY, _SECRET_KEY, _PREFIX, _PART_SIZE,
    )  # fmt: skip

    def __init__(
        self,
        mod_name: str = "storage.blob.s3",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.bucket = ""
        self.prefix = ""
        self.part_size = 8 * 1024 * 1024
        self._client_args: dict[str, object] = {}
        self._client: S3Client | None = None
        self._client_exit: contextlib.AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        try:
            from aiobotocore.config import AioConfig
        except ImportError as exc:
            raise ConfigError(
                "storage.blob.s3 needs aiobotocore: pip install 'mailmodule[s3]'",
                module=cfg.module,
            ) from exc
        self.bucket = cfg.value(_BUCKET)
        if not self.bucket:
            raise ConfigError("a bucket is required", module=cfg.module, key="bucket")
        self.prefix = cfg.value(_PREFIX)
        self.part_size = cfg.value(_PART_SIZE)
        endpoint = cfg.value(_ENDPOINT)
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if cfg.value(_SECURE) else "http://") + endpoint
        access, secret = cfg.value(_ACCESS_KEY), cfg.value(_SECRET_KEY)
        if bool(access) != bool(secret):
            raise ConfigError(
                "access_key and secret_key go together", module=cfg.module, key="secret_key"
            )
        self._client_args = {
            "region_name": cfg.value(_REGION),
            "config": AioConfig(
                s3={"addressing_style": "path"} if endpoint else {},
                connect_timeout=10,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        if endpoint:
            self._client_args["endpoint_url"] = endpoint
        if access:
            self._client_args["aws_access_key_id"] = access
            self._client_args["aws_secret_access_key"] = secret

    def _object(self, key: str) -> str:
        return self.prefix + check_blob_key(key)

    async def _s3(self) -> S3Client:
        """This loop's client, opened on first use (a loop change opens a new one)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._opening is None or self._loop is not loop:
            self._opening, self._loop, self._client = asyncio.Lock(), loop, None
        async with self._opening:
            client = self._client
            if client is None:
                from aiobotocore.session import get_session

                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(
                    get_session().create_client("s3", **self._client_args)
                )
                self._client, self._client_exit = client, stack
            return client

    def _run_blocking(self, coro: Coroutine[object, object, None]) -> None:
        """Run `coro` to its end from synchronous code: on the loop that owns the client if
        it runs in another thread, else on a loop of its own."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise StorageError(
                "storage.blob.s3: Blob.sync blocks until the upload ends; call it off the "
                "event loop (asyncio.to_thread)"
            )
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(coro, loop).result()
            return

        async def alone() -> None:
            try:
                await coro
            finally:
                await self.aclose()

        asyncio.run(alone())

    async def _upload(self, key: str, spool: IO[bytes], size: int) -> None:
        name = self._object(key)
        s3 = await self._s3()
        try:
            if size <= self.part_size:
                await s3.put_object(Bucket=self.bucket, Key=name, Body=spool.read())
                return
            started = await s3.create_multipart_upload(Bucket=self.bucket, Key=name)
        except Exception as exc:
            raise _storage_error(f"cannot store blob {key!r}", exc) from exc
        upload_id = started["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            number = 1
            while chunk := spool.read(self.part_size):
                part = await s3.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload_id,
                    PartNumber=number, Body=chunk,
                )  # fmt: skip
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                number += 1
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            if isinstance(exc, Exception):
                raise _storage_error(f"cannot store blob {key!r}", exc) from exc
            raise

    async def create(self, key: str, blob_size: int) -> _S3Blob:
        self._object(key)
        if blob_size < 0 and blob_size != UNKNOWN_BLOB_SIZE:
            raise StorageError(f"blob {key!r}: invalid size {blob_size}")
        await self._s3()  # sync() hands its upload to this loop
        return _S3Blob(self, key, blob_size)

    async def open(self, key: str) -> ReadCloser:
        name = self._object(key)
        s3 = await self._s3()
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=name)
            body = response["Body"]
            try:
                while chunk := await body.read(_CHUNK):
                    await asyncio.to_thread(spool.write, chunk)
            finally:
                body.close()
        except BaseException as exc:
            spool.close()
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise NoSuchBlobError(key) from None
            if isinstance(exc, Exception):
                raise _storage_error(f"cannot open blob {key!r}", exc) from exc
            raise
        spool.seek(0)
        return spool

    async def delete(self, keys: list[str]) -> None:
        names = [self._object(k) for k in keys]
        s3 = await self._s3()
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            try:
                result = await s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True},
                )
            except Exception as exc:
                raise _storage_error("cannot delete blobs", exc) from exc
            failed = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise StorageError(
                    f"cannot delete blob {first.get('Key', '?')!r}: {first.get('Code', '?')} "
                    f"({len(failed)} failed)"
                )

    async def aclose(self) -> None:
        """Close this loop's client (its HTTP connections)."""
        stack, self._client_exit = self._client_exit, None
        loop, self._loop = self._loop, None
        self._client = None
        if stack is not None and loop is asyncio.get_running_loop():
            await stack.aclose()


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _storage_error(what: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    code = _error_code(exc)
    return StorageError(f"{what}: {code or type(exc).__name__}: {exc}")
