"""One delivery attempt of a queued message to the queue's target, recipient by recipient."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import final

from mailmodule.errors import SMTPError
from mailmodule.interfaces import Delivery, DeliveryTarget, PartialDelivery
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.queue._protocol import StoredMessage

__all__ = ["ABORT_TIMEOUT", "attempt", "to_smtp_error"]

_log = logging.getLogger("mailmodule.modules.queue")

#: Seconds an abort of the target's delivery may take when an attempt is cut short.
ABORT_TIMEOUT = 30.0


def to_smtp_error(err: BaseException) -> SMTPError:
    """The error as a queue file keeps it and a report shows it: an `SMTPError` as it is
    (without its cause), anything else as maddy's 451 4.0.0 "Internal server error"
    (temporary: an error that does not say it is permanent is taken to be temporary)."""
    if isinstance(err, SMTPError):
        return SMTPError(err.code, err.enhanced_code, err.message)
    return SMTPError(451, (4, 0, 0), "Internal server error")


@final
class _Collector:
    """The `StatusCollector` of one `body_non_atomic` call."""

    def __init__(self, rcpts: Sequence[str]) -> None:
        self._rcpts = frozenset(rcpts)
        self.errors: dict[str, Exception] = {}
        self.open = True

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        if err is not None and self.open and rcpt_to in self._rcpts:
            self.errors.setdefault(rcpt_to, err)


def _target_meta(message: StoredMessage, now: float) -> MsgMetadata:
    """The metadata the target sees: a copy, with maddy's attempt ID (queue ID, "-", the
    attempt's Unix time in hex) and the recipients' DSN options under their final
    addresses, so an outbound target can pass NOTIFY and ORCPT on."""
    base = message.meta.msg_meta
    meta = MsgMetadata() if base is None else base.deep_copy()
    meta.id = f"{message.id}-{int(now):x}"
    originals = meta.original_rcpts or {}
    for rcpt in message.meta.to or ():
        opts = meta.rcpt_opts.get(originals.get(rcpt, rcpt))
        if opts is not None:
            meta.rcpt_opts[rcpt] = opts
    return meta


async def attempt(
    target: DeliveryTarget, message: StoredMessage, *, now: float
) -> dict[str, Exception]:
    """Try to deliver `message` to the recipients still to be tried (`meta.to`).

    As maddy's queue: a failed `start` or `body` fails every recipient; a failed
    `add_rcpt` its recipient; a `PartialDelivery` reports per recipient; the delivery is
    committed when any recipient is left, else aborted.

    Returns:
        The error of each recipient that failed; a recipient not in it was delivered.

    Raises:
        asyncio.CancelledError: the attempt was cancelled; the target's delivery was
            aborted first (within `ABORT_TIMEOUT`), so nothing was committed by it.
    """
    rcpts = list(dict.fromkeys(message.meta.to or ()))
    meta = _target_meta(message, now)
    try:
        delivery = await target.start(meta, message.meta.from_)
    except Exception as exc:
        _log.info("queue msg %s: target refused to start: %s", message.id, exc)
        return dict.fromkeys(rcpts, exc)
    run = _Run(delivery, message)
    try:
        return await run.deliver(rcpts)
    except BaseException:
        if not run.committing:  # a commit under way runs to its end, shielded
            await _abort(delivery, message.id)
        raise


@final
class _Run:
    def __init__(self, delivery: Delivery, message: StoredMessage) -> None:
        self.delivery = delivery
        self.message = message
        self.committing = False

    async def deliver(self, rcpts: list[str]) -> dict[str, Exception]:
        delivery, message = self.delivery, self.message
        errors: dict[str, Exception] = {}
        accepted = []
        for rcpt in rcpts:
            try:
                await delivery.add_rcpt(rcpt)
            except Exception as exc:
                errors[rcpt] = exc
            else:
                accepted.append(rcpt)
        if not accepted:
            await _abort(delivery, message.id)
            return errors
        header = message.header.copy()
        if isinstance(delivery, PartialDelivery):
            collector = _Collector(accepted)
            try:
                await delivery.body_non_atomic(collector, header, message.body)
            except Exception as exc:  # the contract says it must not; fail what is left
                for rcpt in accepted:
                    collector.errors.setdefault(rcpt, exc)
            finally:
                collector.open = False
            errors.update(collector.errors)
        else:
            try:
                await delivery.body(header, message.body)
            except Exception as exc:
                errors.update(dict.fromkeys(accepted, exc))
        left = [rcpt for rcpt in accepted if rcpt not in errors]
        if not left:
            await _abort(delivery, message.id)
            return errors
        self.committing = True
        try:
            await asyncio.shield(delivery.commit())
        except Exception as exc:
            errors.update(dict.fromkeys(left, exc))
        return errors


async def _abort(delivery: Delivery, message_id: str) -> None:
    try:
        async with asyncio.timeout(ABORT_TIMEOUT):
            await asyncio.shield(delivery.abort())
    except (Exception, TimeoutError) as exc:
        _log.error("queue msg %s: the target failed to abort: %s", message_id, exc)
