"""Build reference modules the way a server does: through a registry, from settings."""

from __future__ import annotations

from collections.abc import Mapping

from mailmodule import Module, Registry
from mailmodule.modules import register_reference_modules


def new_registry() -> Registry:
    registry = Registry(discover_plugins=False)
    register_reference_modules(registry)
    return registry


def build(registry: Registry, module: str, name: str, settings: Mapping[str, object]) -> Module:
    """Create `name` from the factory registered as `module`, initialized with `settings`."""
    instance = registry.get(module)(module, name, [], [])
    registry.register_instance(instance, settings)
    return registry.get_instance(name)
