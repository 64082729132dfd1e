"""What every session of an endpoint reads: fixed when the endpoint starts, replaced
whole when the server reloads its configuration."""

from __future__ import annotations

import os
from typing import final

import attrs

from mailmodule.endpoint._generation import Generation
from mailmodule.endpoint._tls import ServerTLS
from mailmodule.interfaces import PlainAuth
from mailmodule.metrics import Metrics
from mailmodule.pipeline import Pipeline
from mailmodule.smtp import ServerConfig

__all__ = ["Settings"]


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
