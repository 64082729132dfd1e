"""The error raised when the application misuses the SMTP state machine."""

from __future__ import annotations

from mailmodule.errors import MailModuleError

__all__ = ["ProtocolError"]


class ProtocolError(MailModuleError):
    """Raised when the application misuses an SMTP state machine.

    For example: a reply sent when none is due, a reply of the wrong kind (a 250 to a DATA
    command, a 2xx to a message that was too big), the wrong number of LMTP replies, a
    reply text with CR or LF in it, or `tls_started()` when no STARTTLS was accepted.
    The peer's misbehaviour never raises: it is answered with SMTP replies.

    The caller should fix the application; the connection's state is unchanged by the call
    that raised.
    """
