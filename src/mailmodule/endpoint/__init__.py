"""SMTP, submission and LMTP endpoints on aiosmtpd, driving a Pipeline."""

from __future__ import annotations

from mailmodule.endpoint._commands import parse_mail as parse_mail
from mailmodule.endpoint._commands import parse_rcpt as parse_rcpt
from mailmodule.endpoint._endpoint import SMTPEndpoint as SMTPEndpoint
from mailmodule.endpoint._endpoint import parse_listen_address as parse_listen_address
from mailmodule.endpoint._endpoint import register_endpoints as register_endpoints

register_endpoints()

__all__ = [
    "SMTPEndpoint",
    "parse_listen_address",
    "parse_mail",
    "parse_rcpt",
    "register_endpoints",
]
