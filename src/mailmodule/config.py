"""Module configuration: `ConfigMap`, the twin of maddy's `*config.Map` that `init` receives.

A ConfigMap is a read-only view of one module's settings with typed accessors. Modules that
compose in code build one from a plain mapping: `ConfigMap({"path": "/var/mail"})`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import final

__all__ = ["ConfigMap"]


@final
class ConfigMap(Mapping[str, object]):
    """A module's settings, read-only.

    Args:
        values: the settings by key.
        module: the name of the module they configure, for error messages.
    """

    __slots__ = ("_module", "_values")

    def __init__(self, values: Mapping[str, object] | None = None, *, module: str = "") -> None:
        self._values = dict(values or {})
        self._module = module

    @property
    def module(self) -> str:
        """The module these settings configure ("" when unknown)."""
        return self._module

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ConfigMap({self._values!r}, module={self._module!r})"
