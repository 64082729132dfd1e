"""An endpoint's settings: declared (`ENDPOINT_SETTINGS`, read by `SMTPEndpoint.init`), and
as every session reads them (`Settings`, fixed when the endpoint starts, replaced whole when
the server reloads its configuration)."""

from __future__ import annotations

import datetime
import os
from typing import Final, final

import attrs

from mailmodule.config import Setting
from mailmodule.endpoint._generation import Generation
from mailmodule.endpoint._tls import ServerTLS
from mailmodule.interfaces import PlainAuth, TLSLoader
from mailmodule.metrics import Metrics
from mailmodule.pipeline import Pipeline
from mailmodule.smtp import ServerConfig

__all__ = ["ENDPOINT_SETTINGS", "Settings"]


@final
@attrs.frozen(kw_only=True)
class Settings:
    """An endpoint's settings as its sessions use them (see `SMTPEndpoint` for each).

    `generation` counts the sessions using these settings' modules; `metrics` is where
    the sessions count what they do (None: metrics are off).
    """

    name: str
    hostname: str
    lmtp: bool
    pipeline: Pipeline
    server: ServerConfig
    tls: ServerTLS | None
    auth: PlainAuth | None
    auth_required: bool
    rdns: bool
    strict_helo: bool
    command_timeout: float
    data_timeout: float
    session_timeout: float
    handshake_timeout: float
    max_auth_failures: int
    auth_failure_delay: float
    max_header_size: int
    max_header_fields: int
    buffer_max_memory: int
    buffer_dir: str | os.PathLike[str] | None
    generation: Generation = attrs.field(factory=Generation, eq=False)
    metrics: Metrics | None = None


# The settings of the endpoint modules, as `SMTPEndpoint.init` reads them.

HOSTNAME: Final = Setting.string(
    "hostname",
    "the name in the greeting and the Received fields",
    "localhost",
    default_doc="the server's hostname",
)
MAX_MESSAGE_SIZE: Final = Setting.size(
    "max_message_size", "bytes of body; beyond, 552 5.3.4", 32 << 20, minimum=1
)
MAX_RECIPIENTS: Final = Setting.integer(
    "max_recipients", "recipients per message; beyond, 452 4.5.3", 1000, minimum=1
)
MAX_HEADER_SIZE: Final = Setting.size(
    "max_header_size", "bytes of a message header; beyond, 552 5.3.4", 1 << 20, minimum=1
)
MAX_HEADER_FIELDS: Final = Setting.integer(
    "max_header_fields", "fields of a message header; beyond, 552 5.3.4", 1000, minimum=1
)
BUFFER_MAX_MEMORY: Final = Setting.size(
    "buffer_max_memory",
    "body bytes kept in memory; beyond, the body spills to a file",
    1 << 20,
    minimum=0,
)
BUFFER_DIR: Final = Setting.string(
    "buffer_dir",
    "the directory of spilled bodies",
    None,
    default_doc="the system's temporary directory",
)
AUTH: Final = Setting.module(
    "auth", "the module checking AUTH PLAIN and LOGIN; without one, no AUTH", PlainAuth, None
)
TLS: Final = Setting.module(
    "tls", "the certificates for STARTTLS and tls:// (chosen among by SNI)", TLSLoader, None
)
AUTH_REQUIRE_TLS: Final = Setting.boolean("auth_require_tls", "AUTH only once TLS is on", True)
AUTH_REQUIRED: Final = Setting.boolean(
    "auth_required",
    "MAIL needs AUTH first (530 5.7.0)",
    False,
    default_doc="yes for submission and submissions, else no",
)
MAX_AUTH_FAILURES: Final = Setting.integer(
    "max_auth_failures", "AUTH failures per session before 421 4.7.0 and close", 3, minimum=1
)
AUTH_FAILURE_DELAY: Final = Setting.duration(
    "auth_failure_delay",
    "the wait before answering a failed AUTH, doubled for each next one",
    datetime.timedelta(milliseconds=500),
)
RDNS: Final = Setting.boolean(
    "rdns", "look up the reverse DNS of clients (never for loopback)", True
)
STRICT_HELO: Final = Setting.boolean(
    "strict_helo", "refuse (501 5.5.2) a HELO name that is no domain or address literal", False
)
DSN: Final = Setting.boolean(
    "dsn",
    "offer DSN (RFC 3461): where a target.queue with a bounce target honours NOTIFY, RET, "
    "ENVID and ORCPT",
    False,
)
TIMEOUT: Final = Setting.duration(
    "timeout", "an older name of command_timeout", None, positive=True
)
COMMAND_TIMEOUT: Final = Setting.duration(
    "command_timeout",
    "idle time after a command line before 421 4.4.2 (RFC 5321 4.5.3.2)",
    datetime.timedelta(minutes=5),
    positive=True,
    default_doc="5m (or the value of timeout)",
)
DATA_TIMEOUT: Final = Setting.duration(
    "data_timeout",
    "idle time inside a body before 421 4.4.2",
    datetime.timedelta(minutes=3),
    positive=True,
)
SESSION_TIMEOUT: Final = Setting.duration(
    "session_timeout",
    "a session's whole length before 421 4.4.2",
    datetime.timedelta(minutes=30),
    positive=True,
)
MAX_SESSIONS: Final = Setting.integer(
    "max_sessions",
    "open sessions in all; beyond, 421 4.7.0 at connect (0: no limit)",
    1000,
    minimum=0,
)
MAX_SESSIONS_PER_IP: Final = Setting.integer(
    "max_sessions_per_ip", "open sessions from one client IP (0: no limit)", 100, minimum=0
)
MAX_ERRORS: Final = Setting.integer(
    "max_errors", "refused commands before 421 4.7.0 and close", 10, minimum=1
)

#: Every setting of the endpoint modules, in the order of the documentation.
ENDPOINT_SETTINGS: Final = (
    HOSTNAME,
    MAX_MESSAGE_SIZE,
    MAX_RECIPIENTS,
    MAX_HEADER_SIZE,
    MAX_HEADER_FIELDS,
    BUFFER_MAX_MEMORY,
    BUFFER_DIR,
    AUTH,
    AUTH_REQUIRE_TLS,
    AUTH_REQUIRED,
    MAX_AUTH_FAILURES,
    AUTH_FAILURE_DELAY,
    TLS,
    RDNS,
    STRICT_HELO,
    DSN,
    COMMAND_TIMEOUT,
    TIMEOUT,
    DATA_TIMEOUT,
    SESSION_TIMEOUT,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_IP,
    MAX_ERRORS,
)
