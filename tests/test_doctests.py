"""The examples in module docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mailmodule.header",
    "mailmodule.buffer",
    "mailmodule.address",
    "mailmodule.config",
    "mailmodule.dummy",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
