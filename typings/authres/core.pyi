# Stubs for the parts of authres 1.2 that mailmodule uses; authres ships no type hints.
from re import Pattern
from typing import ClassVar

class AuthResError(Exception):
    message: str | None
    def __init__(self, message: str | None = None) -> None: ...

class SyntaxError(AuthResError):
    parse_text: str | None
    def __init__(self, message: str | None = None, parse_text: str | None = None) -> None: ...

class UnsupportedVersionError(AuthResError):
    version: str | None
    def __init__(self, message: str | None = None, version: str | None = None) -> None: ...

class OrphanCommentError(AuthResError): ...

class QuotableValue(str):
    def quote_if_needed(self) -> str: ...

class AuthenticationResultProperty:
    type: str
    name: str
    value: QuotableValue | None
    comment: str | None
    def __init__(
        self, type: str, name: str, value: str | None = None, comment: str | None = None
    ) -> None: ...

class BaseAuthenticationResult: ...

class NoneAuthenticationResult(BaseAuthenticationResult):
    comment: str | None
    def __init__(self, comment: str | None = None) -> None: ...

class AuthenticationResult(BaseAuthenticationResult):
    method: str
    version: str | None
    result: str
    result_comment: str | None
    reason: QuotableValue | None
    reason_comment: str | None
    properties: list[AuthenticationResultProperty]
    def __init__(
        self,
        method: str,
        version: str | None = None,
        result: str | None = None,
        result_comment: str | None = None,
        reason: str | None = None,
        reason_comment: str | None = None,
        properties: list[AuthenticationResultProperty] | None = None,
    ) -> None: ...

class DKIMAuthenticationResult(AuthenticationResult):
    METHOD: ClassVar[str]
    header_d: str | None
    header_i: str | None
    header_a: str | None
    header_s: str | None
    def __init__(
        self,
        version: str | None = None,
        result: str | None = None,
        result_comment: str | None = None,
        reason: str | None = None,
        reason_comment: str | None = None,
        properties: list[AuthenticationResultProperty] | None = None,
        header_d: str | None = None,
        header_d_comment: str | None = None,
        header_i: str | None = None,
        header_i_comment: str | None = None,
        header_a: str | None = None,
        header_a_comment: str | None = None,
        header_s: str | None = None,
        header_s_comment: str | None = None,
    ) -> None: ...

class SPFAuthenticationResult(AuthenticationResult):
    METHOD: ClassVar[str]
    smtp_helo: str | None
    smtp_mailfrom: str | None
    def __init__(
        self,
        version: str | None = None,
        result: str | None = None,
        result_comment: str | None = None,
        reason: str | None = None,
        reason_comment: str | None = None,
        properties: list[AuthenticationResultProperty] | None = None,
        smtp_helo: str | None = None,
        smtp_helo_comment: str | None = None,
        smtp_mailfrom: str | None = None,
        smtp_mailfrom_comment: str | None = None,
    ) -> None: ...

class IPRevAuthenticationResult(AuthenticationResult):
    METHOD: ClassVar[str]
    policy_iprev: str | None
    def __init__(
        self,
        version: str | None = None,
        result: str | None = None,
        result_comment: str | None = None,
        reason: str | None = None,
        reason_comment: str | None = None,
        properties: list[AuthenticationResultProperty] | None = None,
        policy_iprev: str | None = None,
        policy_iprev_comment: str | None = None,
    ) -> None: ...

class SMTPAUTHAuthenticationResult(AuthenticationResult):
    METHOD: ClassVar[str]
    smtp_auth: str | None
    smtp_mailfrom: str | None
    def __init__(
        self,
        version: str | None = None,
        result: str | None = None,
        result_comment: str | None = None,
        reason: str | None = None,
        reason_comment: str | None = None,
        properties: list[AuthenticationResultProperty] | None = None,
        smtp_auth: str | None = None,
        smtp_auth_comment: str | None = None,
        smtp_mailfrom: str | None = None,
        smtp_mailfrom_comment: str | None = None,
    ) -> None: ...

class AuthenticationResultsHeader:
    VERSIONS: ClassVar[list[str]]
    NONE_RESULT: ClassVar[NoneAuthenticationResult]
    HEADER_FIELD_NAME: ClassVar[str]
    HEADER_FIELD_PATTERN: ClassVar[Pattern[str]]
    authserv_id: str | None
    authserv_id_comment: str | None
    version: str | None
    version_comment: str | None
    results: list[BaseAuthenticationResult]
    def header_value(self) -> str: ...
