"""A real `mailmodule serve` process on loopback, for tests that talk to it from outside."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

MAILDIR_CONFIG = """
hostname = "mx.test"

[modules.local]
module = "target.maildir"
root = "{root}"
autocreate = true

[pipeline]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
"""


def write_config(directory: Path, text: str = MAILDIR_CONFIG, **values: object) -> Path:
    """`text` with `{root}` (the maildir, `directory`/mail) and `values` filled in."""
    path = directory / "mail.toml"
    path.write_text(text.format(root=directory / "mail", **values))
    return path


class Served:
    """A `mailmodule serve` subprocess: its output lines, read as they come, and its ports."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, found: Callable[[Sequence[str]], bool], timeout: float = 30.0) -> None:
        """Wait until `found(lines)` holds; AssertionError (with the output) if it does not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not found(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"not seen in time; output so far: {self.lines}")
                self._changed.wait(min(left, 0.5))

    def ports(self, name: str = "smtp") -> list[int]:
        """The ports the endpoint `name` listens on, from its "listening on" lines."""
        prefix = f"{name} listening on "
        self.wait_for(lambda lines: any(line.startswith(prefix) for line in lines))
        return [int(line.rsplit(":", 1)[1]) for line in self.lines if line.startswith(prefix)]

    def worker_pids(self) -> list[int]:
        """The pids of the workers started so far, from "worker N started (pid P)" lines."""
        with self._changed:
            return [
                int(line.rsplit("pid ", 1)[1].rstrip(")"))
                for line in self.lines
                if " started (pid " in line
            ]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (within `timeout` seconds)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code


@contextlib.contextmanager
def serving(config: Path, *args: str, cwd: Path | None = None) -> Iterator[Served]:
    """Run `mailmodule serve -c config *args`; killed on the way out if it is still running,
    with its workers (it leads a process group of its own).

    Its standard error goes to `serve.log` beside the configuration file.
    """
    log = (config.parent / "serve.log").open("w")
    command = [sys.executable, "-m", "mailmodule", "serve", "-c", str(config), *args]
    with (
        log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=cwd or config.parent,
            start_new_session=True,
        ) as proc,
    ):
        try:
            yield Served(proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # its workers too
                proc.wait(30)
