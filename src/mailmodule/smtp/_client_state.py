"""The states of an SMTP client session and its legal transitions, written as data.

Two tables. `SEND` says which commands the client may send in a state and where sending
one leads (optimistically: a pipelined RCPT does not wait for MAIL's reply). `ON_REPLY`
says where a reply leads, by the state when it arrives, the command it answers and
whether it is positive (2xx, or 3xx where one is asked for); a reply with no entry leaves
the state as it is. A 421 reply and the server's close lead to `CLOSED` from anywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from mailmodule.smtp._commands import Verb

__all__ = ["MUST_WAIT", "ON_REPLY", "SEND", "ClientState", "ClientStep", "ClientTrigger"]


class ClientState(enum.Enum):
    """Where an SMTP client session is."""

    #: Waiting for the server's greeting.
    GREETING = "GREETING"
    #: The greeting was not 220: only QUIT may be sent.
    REFUSED = "REFUSED"
    #: Greeted (again after STARTTLS): EHLO, LHLO or HELO is due.
    NEED_HELLO = "NEED_HELLO"
    #: EHLO, LHLO or HELO sent, its reply awaited.
    HELLO = "HELLO"
    #: Greeted, no mail transaction.
    READY = "READY"
    #: STARTTLS sent, its reply awaited.
    STARTTLS = "STARTTLS"
    #: STARTTLS accepted: the application does the handshake, then `tls_started`.
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: AUTH sent, its reply awaited.
    AUTH = "AUTH"
    #: MAIL FROM sent: recipients may follow.
    MAIL = "MAIL"
    #: DATA sent, its 354 awaited.
    DATA = "DATA"
    #: DATA's 354 received: the body is being sent.
    BODY = "BODY"
    #: A BDAT chunk that was not the last sent, its reply awaited.
    CHUNK = "CHUNK"
    #: Between BDAT chunks: the next one may be sent.
    CHUNKED = "CHUNKED"
    #: The end of the body sent (the final dot, or BDAT LAST): its reply (one per
    #: recipient in LMTP) awaited.
    BODY_SENT = "BODY_SENT"
    #: QUIT sent.
    QUIT = "QUIT"
    #: Over: after QUIT's reply, a 421, or the server's close.
    CLOSED = "CLOSED"


class ClientStep(enum.Enum):
    """A trigger that is not a command line: the greeting, the end of the body (the
    final dot; `BDAT_LAST` for the last chunk) and the TLS handshake."""

    GREETING = "GREETING"
    BODY_END = "BODY_END"
    BDAT_LAST = "BDAT_LAST"
    TLS_STARTED = "TLS_STARTED"


ClientTrigger = Verb | ClientStep

#: Commands sent only when no reply is awaited (RFC 2920: they end a pipelined group, or
#: change what the session is).
MUST_WAIT: Final = frozenset(
    {
        Verb.EHLO,
        Verb.LHLO,
        Verb.HELO,
        Verb.STARTTLS,
        Verb.AUTH,
        Verb.MAIL,
        Verb.DATA,
        Verb.BDAT,
        ClientStep.BDAT_LAST,
    }
)

_S = ClientState
_V = Verb
_HELLOS: Final = (_V.EHLO, _V.LHLO, _V.HELO)


def _send() -> dict[tuple[ClientState, ClientTrigger], ClientState]:
    table: dict[tuple[ClientState, ClientTrigger], ClientState] = {
        (_S.TLS_HANDSHAKE, ClientStep.TLS_STARTED): _S.NEED_HELLO,
        (_S.READY, _V.STARTTLS): _S.STARTTLS,
        (_S.READY, _V.AUTH): _S.AUTH,
        (_S.READY, _V.MAIL): _S.MAIL,
        (_S.MAIL, _V.RCPT): _S.MAIL,
        (_S.MAIL, _V.DATA): _S.DATA,
        (_S.MAIL, _V.BDAT): _S.CHUNK,
        (_S.MAIL, ClientStep.BDAT_LAST): _S.BODY_SENT,
        (_S.CHUNKED, _V.BDAT): _S.CHUNK,
        (_S.CHUNKED, ClientStep.BDAT_LAST): _S.BODY_SENT,
        (_S.BODY, ClientStep.BODY_END): _S.BODY_SENT,
        (_S.REFUSED, _V.QUIT): _S.QUIT,
    }
    for verb in _HELLOS:
        table[_S.NEED_HELLO, verb] = _S.HELLO
        table[_S.READY, verb] = _S.HELLO
    for state in (_S.NEED_HELLO, _S.READY, _S.MAIL, _S.CHUNKED):
        table[state, _V.QUIT] = _S.QUIT
        table[state, _V.NOOP] = state
        table[state, _V.RSET] = _S.NEED_HELLO if state is _S.NEED_HELLO else _S.READY
    return table


#: (state, command or step) -> the state after sending it.
SEND: Final[Mapping[tuple[ClientState, ClientTrigger], ClientState]] = MappingProxyType(_send())


def _on_reply() -> dict[tuple[ClientState, ClientTrigger, bool], ClientState]:
    table: dict[tuple[ClientState, ClientTrigger, bool], ClientState] = {
        (_S.GREETING, ClientStep.GREETING, True): _S.NEED_HELLO,
        (_S.GREETING, ClientStep.GREETING, False): _S.REFUSED,
        (_S.STARTTLS, _V.STARTTLS, True): _S.TLS_HANDSHAKE,
        (_S.STARTTLS, _V.STARTTLS, False): _S.READY,
        (_S.AUTH, _V.AUTH, True): _S.READY,
        (_S.AUTH, _V.AUTH, False): _S.READY,
        # A refused MAIL ends the transaction, unless an RSET sent since ended it first.
        (_S.MAIL, _V.MAIL, False): _S.READY,
        (_S.DATA, _V.DATA, True): _S.BODY,
        (_S.DATA, _V.DATA, False): _S.READY,
        (_S.CHUNK, _V.BDAT, True): _S.CHUNKED,
        (_S.CHUNK, _V.BDAT, False): _S.READY,
        (_S.BODY_SENT, ClientStep.BODY_END, True): _S.READY,
        (_S.BODY_SENT, ClientStep.BODY_END, False): _S.READY,
        (_S.BODY_SENT, ClientStep.BDAT_LAST, True): _S.READY,
        (_S.BODY_SENT, ClientStep.BDAT_LAST, False): _S.READY,
        (_S.QUIT, _V.QUIT, True): _S.CLOSED,
        (_S.QUIT, _V.QUIT, False): _S.CLOSED,
    }
    for verb in _HELLOS:
        table[_S.HELLO, verb, True] = _S.READY
        table[_S.HELLO, verb, False] = _S.NEED_HELLO
    return table


#: (state when the reply arrives, the command or step it answers, positive) -> the state
#: after it; missing: unchanged.
ON_REPLY: Final[Mapping[tuple[ClientState, ClientTrigger, bool], ClientState]] = MappingProxyType(
    _on_reply()
)
