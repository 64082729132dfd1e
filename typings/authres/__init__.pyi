# Stubs for the parts of authres 1.2 that mailmodule uses; authres ships no type hints.
from authres.core import AuthenticationResult as AuthenticationResult
from authres.core import AuthenticationResultProperty as AuthenticationResultProperty
from authres.core import AuthenticationResultsHeader as _CoreHeader
from authres.core import AuthResError as AuthResError
from authres.core import BaseAuthenticationResult as BaseAuthenticationResult
from authres.core import DKIMAuthenticationResult as DKIMAuthenticationResult
from authres.core import IPRevAuthenticationResult as IPRevAuthenticationResult
from authres.core import NoneAuthenticationResult as NoneAuthenticationResult
from authres.core import OrphanCommentError as OrphanCommentError
from authres.core import SMTPAUTHAuthenticationResult as SMTPAUTHAuthenticationResult
from authres.core import SPFAuthenticationResult as SPFAuthenticationResult
from authres.core import SyntaxError as SyntaxError
from authres.core import UnsupportedVersionError as UnsupportedVersionError

class AuthenticationResultsHeader(_CoreHeader):
    @classmethod
    def parse(cls, string: str) -> AuthenticationResultsHeader: ...
    @classmethod
    def parse_value(cls, string: str) -> AuthenticationResultsHeader: ...
    def __init__(
        self,
        authserv_id: str | None = None,
        authserv_id_comment: str | None = None,
        version: str | None = None,
        version_comment: str | None = None,
        results: list[BaseAuthenticationResult] | None = None,
    ) -> None: ...

def result(
    method: str,
    version: str | None = None,
    result: str | None = None,
    result_comment: str | None = None,
    reason: str | None = None,
    reason_comment: str | None = None,
    properties: list[AuthenticationResultProperty] | None = None,
) -> AuthenticationResult: ...
def parse(string: str) -> AuthenticationResultsHeader: ...
def parse_value(string: str) -> AuthenticationResultsHeader: ...
