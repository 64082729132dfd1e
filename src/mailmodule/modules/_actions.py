"""Per-outcome actions in module settings (maddy's `fail_action`-style directives)."""

from __future__ import annotations

import re
from typing import Final, Literal

from mailmodule.config import ConfigMap
from mailmodule.errors import ConfigError
from mailmodule.pipeline import FailAction

__all__ = ["action_setting"]

_WORDS: Final[dict[str, Literal["reject", "quarantine", "ignore"]]] = {
    "reject": "reject",
    "quarantine": "quarantine",
    "ignore": "ignore",
}
_REPLY: Final = re.compile(r"reject\s+([45])(\d\d)\s+([45])\.(\d{1,3})\.(\d{1,3})\s+(\S.*)")


def action_setting(cfg: ConfigMap, key: str, default: str) -> FailAction:
    """The action the setting `key` names: "reject", "quarantine", "ignore", or
    "reject 550 5.7.23 text" (a reply of its own, the enhanced code of the reply's class).

    Raises:
        ConfigError: anything else; names the module and the key.
    """
    value = cfg.string(key, default).strip()
    if value in _WORDS:
        return FailAction(action=_WORDS[value])
    match = _REPLY.fullmatch(value)
    if match is None or match[1] != match[3]:
        raise ConfigError(
            "expected reject, quarantine, ignore or 'reject <code> <enhanced code> <text>', "
            f"got {value!r}",
            module=cfg.module or None,
            key=key,
        )
    code, klass, subject, detail = int(match[1] + match[2]), *map(int, match.group(3, 4, 5))
    return FailAction(
        action="reject", code=code, enhanced_code=(klass, subject, detail), message=match[6]
    )
