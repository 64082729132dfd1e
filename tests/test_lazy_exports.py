"""`mailmodule` re-exports lazily: every name resolves to its submodule's object, on first use."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mailmodule

INIT = Path(mailmodule.__file__)


def _type_checking_imports() -> dict[str, str]:
    """The names the TYPE_CHECKING block imports, and from where."""
    tree = ast.parse(INIT.read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        if node.module == "typing":
            continue
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
            found[alias.name] = f"{node.module}.{alias.name}"
    return found


def _fresh_modules(code: str) -> set[str]:
    """The mailmodule modules a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(*sorted(m for m in sys.modules if 'mailmodule' in m))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("name", mailmodule.__all__)
def test_every_exported_name_is_the_object_of_its_submodule(name: str) -> None:
    value = getattr(mailmodule, name)
    source = mailmodule._SUBMODULE[name]
    module = importlib.import_module(source)
    assert value is (module if source == f"mailmodule.{name}" else getattr(module, name))


def test_the_lazy_table_the_type_checking_imports_and_all_name_the_same_names() -> None:
    typed = _type_checking_imports()
    assert set(mailmodule._SUBMODULE) == set(mailmodule.__all__) == set(typed)


def test_the_type_checking_imports_come_from_the_submodules_of_the_lazy_table() -> None:
    typed = _type_checking_imports()
    for name, source in mailmodule._SUBMODULE.items():
        expected = source if source == f"mailmodule.{name}" else f"{source}.{name}"
        assert typed[name] == expected


def test_an_unknown_name_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        _ = mailmodule.Nonesuch


def test_import_mailmodule_imports_no_submodule() -> None:
    assert _fresh_modules("import mailmodule") == {"mailmodule"}


def test_one_name_imports_only_what_it_needs() -> None:
    loaded = _fresh_modules("from mailmodule import SMTPError")
    assert loaded == {"mailmodule", "mailmodule.errors"}


def test_the_command_line_parser_imports_nothing_of_the_server() -> None:
    loaded = _fresh_modules("import mailmodule.cli\nmailmodule.cli._parser().format_help()")
    assert loaded == {"mailmodule", "mailmodule.cli"}
