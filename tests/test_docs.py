"""The Python examples in docs/ run, and their modules satisfy the Protocols they claim."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from mypy import api

from mailmodule import Check, CheckState, Header, MemoryBuffer, Module, MsgMetadata

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.DOTALL)


def test_the_check_example_in_interfaces_md_works() -> None:
    (code,) = python_blocks("interfaces.md")
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/interfaces.md", "exec"), namespace)
    factory = namespace["ShoutCheck"]
    assert callable(factory)
    check = factory("check.shout", "shout", [], [])
    assert isinstance(check, Module)
    assert isinstance(check, Check)

    async def run(subject: str) -> tuple[bool, bool]:
        state = await check.check_state_for_msg(MsgMetadata())
        assert isinstance(state, CheckState)
        result = await state.check_body(Header([("Subject", subject)]), MemoryBuffer(b""))
        state.close()
        return result.quarantine, result.reject

    assert asyncio.run(run("HELLO EVERYONE!")) == (True, False)
    assert asyncio.run(run("Lunch?")) == (False, False)


def test_the_check_example_is_at_most_15_lines() -> None:
    (code,) = python_blocks("interfaces.md")
    assert len([line for line in code.splitlines() if line.strip()]) <= 15


def test_the_check_example_type_checks_against_the_protocols(tmp_path: Path) -> None:
    (code,) = python_blocks("interfaces.md")
    source = code + "\n\nfrom mailmodule import Check\n_: Check = ShoutCheck('c', 'c', [], [])\n"
    (tmp_path / "example.py").write_text(source)
    stdout, _, status = api.run(
        ["--strict", "--config-file", str(DOCS.parent / "pyproject.toml"), str(tmp_path)]
    )
    assert status == 0, stdout


def test_api_md_is_what_the_generator_writes() -> None:
    import runpy

    generator = runpy.run_path(str(DOCS.parent / "scripts" / "gen_api.py"), run_name="gen_api")
    render = generator["render"]
    assert callable(render)
    assert (DOCS / "api.md").read_text() == render(), "run: python scripts/gen_api.py"
