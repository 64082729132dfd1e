"""How the pipeline turns what modules raise into replies for the SMTP client."""

from __future__ import annotations

from mailmodule.errors import SMTPError

__all__ = ["as_smtp", "fresh", "named_check", "own_failure"]


def as_smtp(exc: BaseException, *, target: str | None = None, what: str = "delivery") -> SMTPError:
    """An error for the SMTP client: SMTPErrors keep their reply (named after `target` when
    they name no target yet), anything else becomes 451 4.0.0, its cause chained."""
    if isinstance(exc, SMTPError):
        if target is None or exc.target_name is not None:
            return exc
        err = SMTPError(
            exc.code,
            exc.enhanced_code,
            exc.message,
            check_name=exc.check_name,
            target_name=target,
            misc=exc.misc,
        )
    else:
        err = SMTPError(451, (4, 0, 0), f"Temporary failure in {what}", target_name=target)
    err.__cause__ = exc
    return err


def named_check(err: SMTPError, check: str) -> SMTPError:
    """`err` naming `check` as the check that refused."""
    named = SMTPError(
        err.code,
        err.enhanced_code,
        err.message,
        check_name=check,
        target_name=err.target_name,
        misc=err.misc,
    )
    named.__cause__ = err.__cause__
    return named


def own_failure(exc: BaseException) -> Exception:
    """A target's own cancellation (under a shield), as an ordinary failure."""
    if isinstance(exc, Exception):
        return exc
    failure = RuntimeError(f"the target's own {type(exc).__name__}")
    failure.__cause__ = exc
    return failure


def fresh(err: SMTPError) -> SMTPError:
    """A new SMTPError with `err`'s reply and names, to raise where `err` is configured or
    shared: raising one exception object for every message would grow its traceback."""
    copy = SMTPError(
        err.code,
        err.enhanced_code,
        err.message,
        check_name=err.check_name,
        target_name=err.target_name,
        misc=err.misc,
    )
    copy.__cause__ = err.__cause__
    return copy
