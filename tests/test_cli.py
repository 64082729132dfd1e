"""The `mailmodule` command line, run as operators run it: in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailmodule", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_prints_the_installed_version_and_exits_0() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout == f"mailmodule {version('mailmodule')}\n"
