"""SMTP, submission and LMTP endpoints: an asyncio shell around `mailmodule.smtp`,
driving a Pipeline; and the openmetrics endpoint, serving a server's metrics."""

from __future__ import annotations

from mailmodule.endpoint._endpoint import ENDPOINT_KINDS as ENDPOINT_KINDS
from mailmodule.endpoint._endpoint import SMTPEndpoint as SMTPEndpoint
from mailmodule.endpoint._endpoint import register_endpoints as register_endpoints
from mailmodule.endpoint._generation import Generation as Generation
from mailmodule.endpoint._listen import ListenAddress as ListenAddress
from mailmodule.endpoint._listen import parse_listen_address as parse_listen_address
from mailmodule.endpoint._openmetrics import OpenMetricsEndpoint as OpenMetricsEndpoint

register_endpoints()

__all__ = [
    "ENDPOINT_KINDS",
    "Generation",
    "ListenAddress",
    "OpenMetricsEndpoint",
    "SMTPEndpoint",
    "parse_listen_address",
    "register_endpoints",
]
