"""Building slotted instances whose values were already checked, at C speed.

For the hot paths of reading a queue file: no `__init__`, no validators, and for frozen
types the slots' own setters, which skip the name lookup of `object.__setattr__`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MemberDescriptorType

__all__ = ["slot_setters"]


def slot_setters(cls: type, *names: str) -> tuple[Callable[[object, object], None], ...]:
    """The setters of the slots `names` of `cls`, in order: `set_x(instance, value)`."""
    descriptors: list[MemberDescriptorType] = [vars(cls)[name] for name in names]
    return tuple(d.__set__ for d in descriptors)
