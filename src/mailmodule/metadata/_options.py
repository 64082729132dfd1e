"""The MAIL FROM and RCPT TO parameters: go-smtp's `MailOptions` and `RcptOptions`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import final

import attrs

__all__ = ["BODY_TYPES", "DSN_NOTIFY", "DSN_RETURN", "MailOptions", "RcptOptions"]

#: Values of the BODY= parameter ("" when absent).
BODY_TYPES = frozenset({"", "7BIT", "8BITMIME", "BINARYMIME"})
#: Values of the RET= parameter ("" when absent).
DSN_RETURN = frozenset({"", "FULL", "HDRS"})
#: Values of the NOTIFY= parameter.
DSN_NOTIFY = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})


def _one_of(allowed: frozenset[str]) -> Callable[[object, attrs.Attribute[str], str], None]:
    def check(inst: object, attr: attrs.Attribute[str], value: str) -> None:
        if value not in allowed:
            raise ValueError(
                f"{type(inst).__name__}.{attr.name} must be one of {sorted(allowed)}, got {value!r}"
            )

    return check


def _non_negative(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    # Go's int64 bounds it: a larger size would be written to a queue file and not read back.
    if not 0 <= value < 1 << 63:
        raise ValueError(
            f"{type(inst).__name__}.{attr.name} must be from 0 to 2**63 - 1, got {value!r}"
        )


@final
@attrs.frozen(kw_only=True)
class MailOptions:
    """The MAIL FROM parameters (go-smtp's `MailOptions`).

    `size` is what the client announced (SIZE=), header included; never use it as the body
    size. `auth` is the AUTH= identity: None when absent, "" for `AUTH=<>`.
    """

    body: str = attrs.field(default="", validator=_one_of(BODY_TYPES))
    size: int = attrs.field(default=0, validator=_non_negative)
    require_tls: bool = False
    utf8: bool = False
    return_: str = attrs.field(default="", validator=_one_of(DSN_RETURN))
    envelope_id: str = ""
    auth: str | None = None


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _notify(inst: object, attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    bad = [v for v in value if v not in DSN_NOTIFY]
    if bad:
        raise ValueError(f"RcptOptions.notify values must be in {sorted(DSN_NOTIFY)}, got {bad}")
    if "NEVER" in value and len(value) > 1:
        raise ValueError("RcptOptions.notify: NEVER cannot be combined with other values")


@final
@attrs.frozen(kw_only=True)
class RcptOptions:
    """The RCPT TO parameters of one recipient (go-smtp's `RcptOptions`, RFC 3461 DSN).

    `notify` is empty when NOTIFY= is absent; `original_recipient_type` and
    `original_recipient` come from ORCPT= (type such as "rfc822", address decoded).
    """

    notify: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_notify)
    original_recipient_type: str = ""
    original_recipient: str = ""
