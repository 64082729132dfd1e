"""The Protocols catch contract mistakes: mypy must report exactly the marked errors.

Each file in tests/typing/bad/ marks the lines mypy must flag with `# E: code: text`, where
text appears in the error or one of its notes. A Protocol that stops catching a mistake, or
starts flagging a correct line, fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((ROOT / "tests" / "typing" / "bad").glob("*.py"))
MARK = re.compile(r"#\s*E:\s*([\w-]+):\s*(.+?)\s*$")
LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*?)"
    r"(?:  \[(?P<code>[\w-]+)\])?$"
)


def expected_errors(path: Path) -> dict[int, tuple[str, str]]:
    marks: dict[int, tuple[str, str]] = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        m = MARK.search(text)
        if m:
            marks[number] = (m.group(1), m.group(2))
    return marks


@pytest.fixture(scope="module")
def mypy_output() -> dict[str, dict[int, list[tuple[str, str, str]]]]:
    stdout, stderr, _ = api.run(
        ["--strict", "--config-file", str(ROOT / "pyproject.toml"), *map(str, BAD)]
    )
    assert not stderr
    found: dict[str, dict[int, list[tuple[str, str, str]]]] = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            by_line = found.setdefault(Path(m["file"]).name, {})
            by_line.setdefault(int(m["line"]), []).append((m["kind"], m["code"] or "", m["msg"]))
    return found


def test_there_are_bad_examples_for_each_kind_of_mistake() -> None:
    names = {p.stem for p in BAD}
    assert {"missing_method", "sync_not_async", "wrong_return", "wrong_argument"} <= names


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_mypy_reports_exactly_the_marked_errors(
    path: Path, mypy_output: dict[str, dict[int, list[tuple[str, str, str]]]]
) -> None:
    expected = expected_errors(path)
    assert expected, f"{path.name} marks no error"
    found = mypy_output.get(path.name, {})
    error_lines = {n for n, items in found.items() if any(k == "error" for k, _, _ in items)}
    assert error_lines == set(expected)
    for number, (code, text) in expected.items():
        items = found[number]
        assert any(k == "error" and c == code for k, c, _ in items), items
        assert any(text in msg for _, _, msg in items), (text, items)


def test_the_correct_implementations_type_check() -> None:
    stdout, _, status = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tests" / "typing" / "implementations.py"),
        ]
    )
    assert status == 0, stdout
