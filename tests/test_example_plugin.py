"""examples/plugin, a separate installable project, is built, installed and tested."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "plugin"


def run(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The plugin built as a wheel and installed into a directory of its own."""
    work = tmp_path_factory.mktemp("plugin")
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(work / "dist"),
            str(PLUGIN),
        ]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("mailmodule_shout-*.whl")
    site = work / "site"
    done = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ]
    )
    assert done.returncode == 0, done.stderr
    return {**os.environ, "PYTHONPATH": str(site)}


def test_the_installed_plugin_is_found_through_its_entry_point(installed: dict[str, str]) -> None:
    code = (
        "import mailmodule\n"
        "check = mailmodule.get('check.shout')('check.shout', 's', [], [])\n"
        "print(isinstance(check, mailmodule.Check), mailmodule.get('target.outbox').__name__)\n"
    )
    result = run([sys.executable, "-c", code], env=installed)
    assert result.stdout.split() == ["True", "OutboxTarget"], result.stderr


def test_describe_says_a_plugin_without_declarations_has_its_settings_undeclared(
    installed: dict[str, str],
) -> None:
    result = run(
        [sys.executable, "-m", "mailmodule", "modules", "--describe", "check.shout"], env=installed
    )
    assert result.returncode == 0, result.stderr
    assert "settings not declared" in result.stdout


def test_the_plugins_own_tests_pass_the_conformance_suites(installed: dict[str, str]) -> None:
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        env=installed,
        cwd=PLUGIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Skips of optional interfaces the plugin does not offer are expected; warnings are not.
    assert re.match(r"^\d+ passed(, \d+ skipped)? in ", result.stdout.splitlines()[-1]), (
        result.stdout
    )


def test_the_plugin_type_checks_against_the_protocols() -> None:
    stdout, _, status = api.run(
        ["--strict", "--config-file", str(ROOT / "pyproject.toml"), str(PLUGIN / "src")]
    )
    assert status == 0, stdout


def test_the_authors_test_code_is_at_most_ten_lines() -> None:
    lines = (PLUGIN / "tests" / "test_shout.py").read_text().splitlines()
    assert len([line for line in lines if line.strip()]) <= 10
