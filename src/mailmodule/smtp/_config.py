"""What an SMTP or LMTP server session offers and the limits it keeps."""

from __future__ import annotations

from typing import final

import attrs

__all__ = ["ServerConfig"]


def _positive(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"ServerConfig.{attr.name} must be an int >= 1, got {value!r}")


def _optional_positive(inst: object, attr: attrs.Attribute[int | None], value: object) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"ServerConfig.{attr.name} must be None or an int >= 1, got {value!r}")


def _line_length(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 512:
        raise ValueError(f"ServerConfig.{attr.name} must be an int >= 512, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class ServerConfig:
    """The extensions and limits of a `ServerConnection`; one value serves many sessions.

    Extensions (each advertised in the EHLO/LHLO answer, and its parameters accepted,
    only when enabled): `pipelining` (PIPELINING), `eightbitmime` (8BITMIME, BODY=),
    `smtputf8` (SMTPUTF8), `enhanced_status_codes` (ENHANCEDSTATUSCODES: every 2xx/4xx/5xx
    reply except the greeting and the EHLO answer carries one), SIZE always (with
    `max_message_size` when set), `starttls` (STARTTLS, until TLS is on), `auth` (AUTH
    PLAIN LOGIN and AUTH=; after TLS only unless `auth_without_tls`), `chunking` (CHUNKING,
    BDAT), `dsn` (DSN: RET=, ENVID=, NOTIFY=, ORCPT=; off by default, enable it only where
    a queue can honour it; `dsn_parameters` accepts those parameters without offering
    DSN, so that a server keeps them for the queue to come), `requiretls` (REQUIRETLS,
    after TLS only). `lmtp` speaks LMTP (RFC 2033): LHLO instead of EHLO and HELO, one
    reply per recipient after the body.

    Limits: `max_line_length` counts a command line with its CRLF (512 in RFC 5321; AUTH
    lines may be 12288); a longer line is answered 500 5.5.6 and skipped, never held.
    `max_recipients` per transaction (452 4.5.3 beyond). `max_message_size` bytes of body
    (as decoded), beyond which the body is dropped and `DataEnd.too_big` set.
    `max_errors` refused commands (syntax, sequence, unknown) before 421 4.7.0 and close.
    """

    lmtp: bool = False
    pipelining: bool = True
    eightbitmime: bool = True
    smtputf8: bool = True
    enhanced_status_codes: bool = True
    starttls: bool = False
    auth: bool = False
    auth_without_tls: bool = False
    chunking: bool = True
    dsn: bool = False
    dsn_parameters: bool = False
    requiretls: bool = False
    max_message_size: int | None = attrs.field(default=None, validator=_optional_positive)
    max_line_length: int = attrs.field(default=512, validator=_line_length)
    max_recipients: int = attrs.field(default=1000, validator=_positive)
    max_errors: int = attrs.field(default=10, validator=_positive)
