"""The events a `ServerConnection` gives the application, and the two "no event" values.

Events that are `Command`s must be answered: the connection gives no further event (it
returns `PAUSED`) until the application has passed the reply to `ServerConnection.send`.
Other events need no answer.
"""

from __future__ import annotations

import enum
from typing import Final, final

import attrs

from mailmodule.metadata import MailOptions, RcptOptions
from mailmodule.smtp._replies import Reply

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthCredentials",
    "ChunkEnd",
    "ChunkStart",
    "Command",
    "ConnectionClosed",
    "DataChunk",
    "DataEnd",
    "Event",
    "Hello",
    "MailFrom",
    "NoEvent",
    "ProtocolReply",
    "RcptTo",
    "Reset",
    "StartData",
    "StartTLS",
]


@final
class NoEvent(enum.Enum):
    """What `next_event` returns when it has no event to give."""

    #: Every buffered byte is used: feed more with `receive_data`.
    NEED_DATA = "NEED_DATA"
    #: A reply is due from the application (the greeting, or a `Command`'s answer), or
    #: the TLS handshake is under way: call `send` (or `tls_started`) first.
    PAUSED = "PAUSED"


NEED_DATA: Final = NoEvent.NEED_DATA
PAUSED: Final = NoEvent.PAUSED


@attrs.frozen
class Event:
    """Something that happened on an SMTP connection."""


@attrs.frozen
class Command(Event):
    """An event the application must answer with exactly one `send` (in LMTP, a `DataEnd`
    with one reply per accepted recipient)."""


@final
@attrs.frozen(kw_only=True)
class Hello(Command):
    """HELO, EHLO or LHLO (`verb`); `name` is the client's argument as sent.

    `valid` says whether `name` is a domain or an address literal (`[192.0.2.1]`,
    `[IPv6:2001:db8::1]`) as RFC 5321 section 4.1.3 asks; the application decides what an
    invalid name means. A 2xx answer to EHLO or LHLO gets the enabled extensions appended.
    """

    verb: str
    name: str
    valid: bool


@final
@attrs.frozen
class StartTLS(Command):
    """STARTTLS. After a 2xx answer, do the TLS handshake, then call `tls_started`."""


@final
@attrs.frozen(kw_only=True)
class AuthCredentials(Command):
    """The credentials of an AUTH PLAIN or LOGIN exchange, for the application to verify.

    Answer 235 2.7.0 to accept, 535 5.7.8 to refuse. `authorization_id` is "" when the
    client gave none. The password never appears in `repr`.
    """

    mechanism: str
    authorization_id: str
    username: str
    password: str = attrs.field(repr=False)


@final
@attrs.frozen
class MailFrom(Command):
    """MAIL FROM: `sender` ("" for the null sender `<>`) and its parameters."""

    sender: str
    options: MailOptions


@final
@attrs.frozen
class RcptTo(Command):
    """RCPT TO: `recipient` and its parameters. A 2xx answer accepts the recipient."""

    recipient: str
    options: RcptOptions


@final
@attrs.frozen
class StartData(Command):
    """DATA, with at least one accepted recipient: answer 354 to receive the body."""


@final
@attrs.frozen
class Reset(Command):
    """RSET: the transaction is gone whatever the answer, which must be 2xx."""


@final
@attrs.frozen(kw_only=True)
class ChunkStart(Event):
    """A BDAT command was accepted: `size` bytes of body follow as `DataChunk`s.

    `last` is true for `BDAT <size> LAST`. The first ChunkStart of a transaction is where
    its body begins.
    """

    size: int
    last: bool


@final
@attrs.frozen
class DataChunk(Event):
    """A piece of the message body, dot-unstuffed, with CRLF line endings only."""

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


@final
@attrs.frozen
class ChunkEnd(Command):
    """The end of a BDAT chunk that was not the LAST one.

    Answer 2xx (such as 250 2.0.0) to take the next chunk, or 4xx/5xx to end the
    transaction. `too_big` is true once the body went past the size limit.
    """

    too_big: bool


@final
@attrs.frozen
class DataEnd(Command):
    """The end of the body (DATA's final dot, or the LAST BDAT chunk).

    `recipients` are the accepted recipients in order. In SMTP answer once; in LMTP answer
    once per recipient, in that order. `too_big` is true when the body went past the size
    limit: the body was not all given, and only 4xx/5xx answers (552 5.3.4) are accepted.
    """

    too_big: bool
    recipients: tuple[str, ...]


@final
@attrs.frozen
class ProtocolReply(Event):
    """The connection answered the client itself (a syntax error, NOOP, a 334 challenge,
    QUIT's 221, ...): write `data` to the peer. `reply` is what it says."""

    reply: Reply
    data: bytes = attrs.field(repr=False)


@final
@attrs.frozen
class ConnectionClosed(Event):
    """The connection is over: the peer closed it, or a 221 or 421 was sent. Close the
    transport; every later `next_event` gives this again."""
