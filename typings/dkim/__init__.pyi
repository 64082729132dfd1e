# Stubs for the parts of dkimpy 1.1 that the tests and benchmarks use; dkimpy ships no type
# hints. mailmodule itself does not import it (see the comment in pyproject.toml).
from collections.abc import Callable, Sequence

DNSFunc = Callable[..., bytes | None]

class DKIMException(Exception): ...
class ValidationError(DKIMException): ...

def sign(
    message: bytes,
    selector: bytes,
    domain: bytes,
    privkey: bytes,
    identity: bytes | None = None,
    canonicalize: tuple[bytes, bytes] = ...,
    signature_algorithm: bytes = ...,
    include_headers: Sequence[bytes] | None = None,
    length: bool = False,
    logger: object = None,
    linesep: bytes = ...,
    tlsrpt: bool = False,
) -> bytes: ...
def verify(
    message: bytes,
    logger: object = None,
    dnsfunc: DNSFunc = ...,
    minkey: int = 1024,
    timeout: int = 5,
    tlsrpt: bool = False,
) -> bool: ...
