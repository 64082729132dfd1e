"""The states of an SMTP server session and its legal transitions, written as data.

A transition is triggered by a command (a `Verb`) or by a `Step` of the session. Which
commands are legal in a state is exactly the keys of `TRANSITIONS`: a command with no entry
for the current state is out of sequence (503). The target is the state after the
command or step succeeds (its reply is positive, or it needs none); a refusal leaves the
state as it was, except where `ON_REFUSAL` says otherwise. A 421 from the application and
the peer's close lead to `CLOSED` from anywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from mailmodule.smtp._commands import Verb

__all__ = ["ON_REFUSAL", "TRANSITIONS", "State", "Step", "Trigger"]


class State(enum.Enum):
    """Where an SMTP server session is."""

    #: The application has not sent the greeting yet.
    GREETING = "GREETING"
    #: The greeting was 554: only QUIT is served (RFC 5321 3.1).
    REFUSED = "REFUSED"
    #: Waiting for EHLO, HELO or LHLO (at the start, and again after STARTTLS).
    NEED_HELLO = "NEED_HELLO"
    #: Greeted, no mail transaction.
    READY = "READY"
    #: In an AUTH exchange: lines are SASL responses, not commands.
    AUTH = "AUTH"
    #: MAIL FROM accepted: RCPT TO, then DATA or BDAT.
    MAIL = "MAIL"
    #: Reading the body after DATA's 354.
    DATA = "DATA"
    #: Reading the raw bytes of a BDAT chunk.
    CHUNK = "CHUNK"
    #: Between the chunks of a BDAT transaction: only BDAT goes on.
    CHUNKED = "CHUNKED"
    #: STARTTLS accepted: waiting for the application's `tls_started`.
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: Over: after 221, 421 or the peer's close.
    CLOSED = "CLOSED"


class Step(enum.Enum):
    """A transition that is not a client command."""

    GREETED = "GREETED"
    AUTH_DONE = "AUTH_DONE"
    CHUNK_END = "CHUNK_END"
    BODY_END = "BODY_END"
    TLS_STARTED = "TLS_STARTED"


Trigger = Verb | Step

_S = State
_V = Verb
# Commands that keep the state and are legal wherever commands are read after a greeting.
_ANYTIME: Final = (_V.NOOP, _V.HELP, _V.VRFY)
_HELLOS: Final = (_V.HELO, _V.EHLO, _V.LHLO)


def _table() -> dict[tuple[State, Trigger], State]:
    table: dict[tuple[State, Trigger], State] = {
        (_S.GREETING, Step.GREETED): _S.NEED_HELLO,
        (_S.REFUSED, _V.QUIT): _S.CLOSED,
        (_S.READY, _V.MAIL): _S.MAIL,
        (_S.READY, _V.STARTTLS): _S.TLS_HANDSHAKE,
        (_S.READY, _V.AUTH): _S.AUTH,
        (_S.AUTH, Step.AUTH_DONE): _S.READY,
        (_S.MAIL, _V.RCPT): _S.MAIL,
        (_S.MAIL, _V.DATA): _S.DATA,
        (_S.MAIL, _V.BDAT): _S.CHUNK,
        (_S.CHUNKED, _V.BDAT): _S.CHUNK,
        (_S.DATA, Step.BODY_END): _S.READY,
        (_S.CHUNK, Step.CHUNK_END): _S.CHUNKED,
        (_S.CHUNK, Step.BODY_END): _S.READY,
        (_S.TLS_HANDSHAKE, Step.TLS_STARTED): _S.NEED_HELLO,
    }
    for state in (_S.NEED_HELLO, _S.READY, _S.MAIL, _S.CHUNKED):
        table[state, _V.QUIT] = _S.CLOSED
        table[state, _V.RSET] = _S.NEED_HELLO if state is _S.NEED_HELLO else _S.READY
        for verb in _HELLOS:
            table[state, verb] = _S.READY
        for verb in _ANYTIME:
            table[state, verb] = state
    return table


#: (state, trigger) -> the state after the trigger succeeds.
TRANSITIONS: Final[Mapping[tuple[State, Trigger], State]] = MappingProxyType(_table())

#: (state, trigger) -> the state after the trigger is refused, where it is not the same.
ON_REFUSAL: Final[Mapping[tuple[State, Trigger], State]] = MappingProxyType(
    {
        (_S.GREETING, Step.GREETED): _S.REFUSED,
        (_S.AUTH, Step.AUTH_DONE): _S.READY,
        (_S.DATA, Step.BODY_END): _S.READY,
        (_S.CHUNK, Step.CHUNK_END): _S.READY,
        (_S.CHUNK, Step.BODY_END): _S.READY,
    }
)
