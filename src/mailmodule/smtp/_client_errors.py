"""The error raised when the server breaks the SMTP protocol."""

from __future__ import annotations

from mailmodule.errors import SMTPError

__all__ = ["RemoteProtocolError"]


class RemoteProtocolError(SMTPError):
    """Raised when the server breaks the protocol: a garbled reply, a reply line or a
    reply too long, a reply nobody asked for, a reply of a kind the command cannot take
    (a 250 to DATA), or bytes sent ahead of the TLS handshake after STARTTLS.

    `detail` says what the server did. As an `SMTPError` it reads 451 4.5.0: temporary,
    another try (or another server) may do. The connection cannot be used any more:
    every later `next_event` raises it again; close the transport.
    """

    detail: str

    def __init__(self, detail: str) -> None:
        super().__init__(451, (4, 5, 0), f"Upstream protocol error: {detail}")
        self.detail = detail
