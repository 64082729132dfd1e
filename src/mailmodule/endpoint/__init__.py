"""SMTP, submission and LMTP endpoints: an asyncio shell around `mailmodule.smtp`,
driving a Pipeline."""

from __future__ import annotations

from mailmodule.endpoint._endpoint import ENDPOINT_KINDS as ENDPOINT_KINDS
from mailmodule.endpoint._endpoint import SMTPEndpoint as SMTPEndpoint
from mailmodule.endpoint._endpoint import register_endpoints as register_endpoints
from mailmodule.endpoint._listen import ListenAddress as ListenAddress
from mailmodule.endpoint._listen import parse_listen_address as parse_listen_address

register_endpoints()

__all__ = [
    "ENDPOINT_KINDS",
    "ListenAddress",
    "SMTPEndpoint",
    "parse_listen_address",
    "register_endpoints",
]
