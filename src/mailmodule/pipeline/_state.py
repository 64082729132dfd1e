"""The life of one message in a pipeline, as data: its states and the legal steps between.

Every call on a `PipelineDelivery` takes one step here before it does anything, so an
illegal call (a recipient after the body, a commit without one, a call while another is
still running) is refused with a `DeliveryStateError` and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from mailmodule.errors import DeliveryStateError

__all__ = ["AFTER", "TRANSITIONS", "DeliveryState", "Step", "advance"]


class DeliveryState(enum.Enum):
    """Where a message stands in its pipeline."""

    # Members are singletons: hash them by identity, in C, not by name in Python (every
    # call on a delivery looks a step up in the table).
    __hash__ = object.__hash__

    OPEN = "open"  #: taking recipients
    ADDING = "adding a recipient"
    IN_BODY = "taking the body"
    READY = "ready to commit"  #: every recipient still accepted has the body
    FAILED = "failed"  #: the body failed: only abort is left
    COMMITTED = "committed"
    ABORTED = "aborted"


class Step(enum.Enum):
    """What a call on the delivery asks for."""

    __hash__ = object.__hash__

    ADD_RCPT = "add_rcpt"
    RCPT_DONE = "recipient done"
    BODY = "body"
    BODY_OK = "body delivered"
    BODY_FAILED = "body failed"
    COMMIT = "commit"
    ABORT = "abort"


_S, _E = DeliveryState, Step

_TABLE: Final[dict[tuple[DeliveryState, Step], DeliveryState]] = {
    (_S.OPEN, _E.ADD_RCPT): _S.ADDING,
    (_S.OPEN, _E.BODY): _S.IN_BODY,
    (_S.OPEN, _E.ABORT): _S.ABORTED,
    (_S.ADDING, _E.RCPT_DONE): _S.OPEN,
    (_S.ADDING, _E.ABORT): _S.ABORTED,
    (_S.IN_BODY, _E.BODY_OK): _S.READY,
    (_S.IN_BODY, _E.BODY_FAILED): _S.FAILED,
    (_S.IN_BODY, _E.ABORT): _S.ABORTED,
    (_S.READY, _E.COMMIT): _S.COMMITTED,
    (_S.READY, _E.ABORT): _S.ABORTED,
    (_S.FAILED, _E.ABORT): _S.ABORTED,
    # Closing what is closed does nothing: abort() and aclose() are idempotent.
    (_S.COMMITTED, _E.ABORT): _S.COMMITTED,
    (_S.ABORTED, _E.ABORT): _S.ABORTED,
}
#: (state, step) -> the state after the step; every pair not listed is illegal.
TRANSITIONS: Final[Mapping[tuple[DeliveryState, Step], DeliveryState]] = MappingProxyType(_TABLE)
#: The same table by step: step -> {state: the state after the step}. For hot paths that
#: know their step: `AFTER[step].get(state) or advance(state, step)` (which raises).
AFTER: Final[Mapping[Step, Mapping[DeliveryState, DeliveryState]]] = {
    step: {state: new for (state, s), new in _TABLE.items() if s is step} for step in Step
}

_WHY: Final[Mapping[tuple[DeliveryState, Step], str]] = MappingProxyType(
    {
        (_S.READY, _E.ADD_RCPT): "a recipient after the body",
        (_S.FAILED, _E.ADD_RCPT): "a recipient after the body",
        (_S.READY, _E.BODY): "a second body",
        (_S.FAILED, _E.BODY): "a second body",
        (_S.OPEN, _E.COMMIT): "commit without a delivered body",
        (_S.FAILED, _E.COMMIT): "commit after a failed body",
    }
)


def advance(state: DeliveryState, step: Step) -> DeliveryState:
    """The state after `step`.

    Raises:
        DeliveryStateError: `step` is not legal in `state`.
    """
    new = _TABLE.get((state, step))
    if new is not None:
        return new
    why = _WHY.get((state, step))
    if why is None:
        if state in (_S.ADDING, _S.IN_BODY):
            why = f"{step.value} while {state.value}: another call is still running"
        else:
            why = f"{step.value} once the message is {state.value}"
    raise DeliveryStateError(state.value, step.value, why)
