"""What every reference module shares: the factory signature and its names."""

from __future__ import annotations

from collections.abc import Sequence

from mailmodule.config import REQUIRED, ConfigMap, Setting
from mailmodule.errors import ConfigError

__all__ = ["ModuleBase"]


class ModuleBase:
    """Names and the `ModuleFactory` signature: `cls(mod_name, inst_name, aliases, args)`.

    `inline_args` are the values written after the module name in an inline definition;
    each module documents what it takes from them.
    """

    def __init__(
        self,
        mod_name: str,
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        self._mod_name = mod_name
        self._inst_name = inst_name
        self.inline_args = tuple(inline_args)

    def name(self) -> str:
        return self._mod_name

    def instance_name(self) -> str:
        return self._inst_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._mod_name!r}, {self._inst_name!r})"

    def inline_default(self) -> str | None:
        """The first inline argument, the default of a module's main setting; else None."""
        return self.inline_args[0] if self.inline_args else None

    def ref(self, cfg: ConfigMap, setting: Setting[object]) -> object:
        """The module instance a module-reference `setting` names, or the first inline
        argument does.

        Raises:
            ConfigError: neither names an instance implementing the setting's interface.
        """
        interface = setting.interface or object
        found = cfg.value(setting, self.inline_default() or REQUIRED)
        if not isinstance(found, interface):  # value checked it; this narrows for mypy
            raise ConfigError(f"not a {interface.__name__}", module=cfg.module, key=setting.name)
        return found
