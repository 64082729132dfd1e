"""The events a `ClientConnection` gives the application: the server's replies.

Every reply answers something the client sent (or the connection's start); the event says
what. When the connection ends, `ConnectionClosed` (shared with the server side) is given.
"""

from __future__ import annotations

from typing import final

import attrs

from mailmodule.smtp._client_state import ClientTrigger
from mailmodule.smtp._events import Event
from mailmodule.smtp._replies import Reply

__all__ = ["BodyReply", "CommandReply", "Greeting"]


@final
@attrs.frozen
class Greeting(Event):
    """The server's first reply: 220 to go on; anything else refuses the session."""

    reply: Reply


@final
@attrs.frozen(kw_only=True)
class CommandReply(Event):
    """The reply to one command line: `command` is its verb (a `Verb`), `argument` the
    recipient of a RCPT ("" for other commands)."""

    command: ClientTrigger
    reply: Reply
    argument: str = ""


@final
@attrs.frozen(kw_only=True)
class BodyReply(Event):
    """The reply to the end of a body (DATA's final dot, or BDAT LAST).

    In SMTP there is one and `recipient` is "". In LMTP there is one per recipient the
    server accepted, in RCPT order, `recipient` naming it (RFC 2033 section 4.2).
    """

    reply: Reply
    recipient: str = ""
