"""Running modifiers by their contract: a state per message, calls strictly in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import final

from mailmodule.buffer import Buffer
from mailmodule.errors import SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Modifier, ModifierState
from mailmodule.metadata import MsgMetadata
from mailmodule.pipeline._checks import name_of
from mailmodule.pipeline._errors import as_smtp

__all__ = ["ModifierRunner"]

_log = logging.getLogger("mailmodule.pipeline")


def _bad_rewrite(rcpt: str, new: object) -> SMTPError:
    return as_smtp(
        TypeError(f"rewrite_rcpt({rcpt!r}) returned {new!r}"), what="a recipient modifier"
    )


@final
class ModifierRunner:
    """The modifier states of one message, in groups (the pipeline's own, a source's, a
    destination's); every state it made is closed exactly once by `close`.

    Every method raises `SMTPError` for what a modifier did wrong: its own SMTPError as it
    is, anything else (an exception, a malformed return) as 451 naming what failed.
    """

    __slots__ = ("_meta", "_states")

    def __init__(self, meta: MsgMetadata) -> None:
        self._meta = meta
        self._states: list[ModifierState] = []

    async def open(
        self, modifiers: Sequence[Modifier], sender: str
    ) -> tuple[list[ModifierState], str]:
        """A fresh state of each modifier, in order, and what they make of `sender`."""
        states: list[ModifierState] = []
        for mod in modifiers:
            try:
                state = await mod.mod_state_for_msg(self._meta)
            except Exception as exc:
                raise as_smtp(exc, what=f"modifier {name_of(mod)}") from exc
            self._states.append(state)
            states.append(state)
        for state in states:
            try:
                sender = await state.rewrite_sender(sender)
            except Exception as exc:
                raise as_smtp(exc, what="a sender modifier") from exc
            if type(sender) is not str:
                raise as_smtp(
                    TypeError(f"rewrite_sender returned {sender!r}"), what="a sender modifier"
                )
        return states, sender

    @staticmethod
    async def rewrite_rcpt(states: Sequence[ModifierState], rcpt: str) -> list[str]:
        """What the states make of `rcpt`: one address or more, each once, in order."""
        rcpts = [rcpt]
        for state in states:
            out: list[str] = []
            for r in rcpts:
                try:
                    new = await state.rewrite_rcpt(r)
                except Exception as exc:
                    raise as_smtp(exc, what="a recipient modifier") from exc
                ModifierRunner.add_rcpts(out, r, new)
            rcpts = out
        return rcpts

    @staticmethod
    def add_rcpts(out: list[str], rcpt: str, new: object) -> None:
        """Add to `out` the addresses a state's `rewrite_rcpt(rcpt)` returned, each once.

        Raises:
            SMTPError: 451, `new` is not a non-empty list of addresses.
        """
        if type(new) is list and len(new) == 1 and type(new[0]) is str and new[0]:
            if new[0] not in out:  # the common case: one address in, one out
                out.append(new[0])
            return
        if not new or not isinstance(new, (list, tuple)):
            raise _bad_rewrite(rcpt, new)
        for n in new:
            if type(n) is not str or not n:
                raise _bad_rewrite(rcpt, new)
            if n not in out:
                out.append(n)

    @staticmethod
    async def rewrite_body(states: Sequence[ModifierState], header: Header, body: Buffer) -> None:
        for state in states:
            try:
                await state.rewrite_body(header, body)
            except Exception as exc:
                raise as_smtp(exc, what="a header modifier") from exc

    def close(self) -> None:
        """Close every state made, once; errors are logged, not raised."""
        states, self._states = self._states, []
        for state in states:
            try:
                state.close()
            except Exception as exc:
                _log.error(
                    "message %s: closing modifier state %r failed: %r", self._meta.id, state, exc
                )
