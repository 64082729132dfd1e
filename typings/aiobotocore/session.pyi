from types import TracebackType
from typing import Literal

from types_aiobotocore_s3.client import S3Client

class _S3ClientContext:
    async def __aenter__(self) -> S3Client: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

class AioSession:
    def create_client(self, service_name: Literal["s3"], **kwargs: object) -> _S3ClientContext: ...

def get_session() -> AioSession: ...
