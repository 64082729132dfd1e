"""Real SMTP peers (Postfix's smtp-source, swaks) against a real `mailmodule serve`.

A test whose peer is not installed is skipped with the reason (`.ci/install-peers`
installs them), and the run ends with a summary of the peers and features not run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Where Debian's postfix package puts its test programs, beyond $PATH.
_POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix", "/usr/lib/postfix/sbin")
_INSTALL = "install it with `bash .ci/install-peers` (apt-get install postfix swaks)"


def find_peer(name: str) -> str | None:
    """The path of the program `name`, in $PATH or where Postfix keeps its tools."""
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _POSTFIX_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def require_peer(name: str) -> str:
    """The path of `name`; skips the test, saying why, when it is not installed."""
    path = find_peer(name)
    if path is None:
        pytest.skip(f"peer {name} not found in $PATH or {', '.join(_POSTFIX_DIRS)}: {_INSTALL}")
    return path


@pytest.fixture
def smtp_source() -> str:
    return require_peer("smtp-source")


@pytest.fixture
def swaks() -> str:
    return require_peer("swaks")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which interop tests could not run and why, or that every peer ran."""
    rootpath = terminalreporter.config.rootpath
    prefix = Path(__file__).parent.relative_to(rootpath).as_posix() + "/"
    ran: set[str] = set()
    skipped: dict[str, str] = {}
    for kind in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(kind, []):
            nodeid = str(getattr(report, "nodeid", ""))
            if not nodeid.startswith(prefix):
                continue
            if kind != "skipped":
                ran.add(nodeid)
                continue
            longrepr = getattr(report, "longrepr", None)
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
            skipped[nodeid] = reason.removeprefix("Skipped: ")
    if not ran and not skipped:
        return
    terminalreporter.write_sep("-", "interop peers")
    if not skipped:
        terminalreporter.write_line(f"interop: all {len(ran)} test(s) ran against real peers")
        return
    terminalreporter.write_line(f"interop: {len(ran)} ran; {len(skipped)} could not run:")
    for nodeid, reason in sorted(skipped.items()):
        terminalreporter.write_line(f"  {nodeid.removeprefix(prefix)}: {reason}")
