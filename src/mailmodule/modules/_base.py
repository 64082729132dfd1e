"""What every reference module shares: the factory signature and its names."""

from __future__ import annotations

from collections.abc import Sequence

from mailmodule.config import ConfigMap
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

    def ref(self, cfg: ConfigMap, key: str, interface: type) -> object:
        """The module instance setting `key` names, or the first inline argument does.

        Raises:
            ConfigError: neither names an instance implementing `interface`.
        """
        if self.inline_args:
            found = cfg.module_ref(key, interface, self.inline_args[0])
        else:
            found = cfg.module_ref(key, interface)
        if not isinstance(found, interface):  # module_ref checked it; this narrows for mypy
            raise ConfigError(f"not a {interface.__name__}", module=cfg.module, key=key)
        return found
