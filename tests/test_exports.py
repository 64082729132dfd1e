"""Every public module has a sorted `__all__` that covers what it defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mailmodule

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mailmodule.__path__, "mailmodule.")
    if not any(part.startswith("_") for part in m.name.split("."))
)


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", ["mailmodule", *MODULES])
def test_all_is_sorted_and_unique(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", MODULES)
def test_all_covers_every_public_class_and_function(name: str) -> None:
    module = importlib.import_module(name)
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert defined <= set(module.__all__)


@pytest.mark.parametrize("name", ["mailmodule", *MODULES])
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    for n in module.__all__:
        assert hasattr(module, n), n
