"""Worker processes for `mailmodule serve --workers N`: fork, watch, restart, stop.

The supervisor is synchronous and owns no event loop: it forks before any loop exists, so a
worker starts from a clean process and builds its own modules (they are not fork-safe). It
waits for signals with `sigtimedwait` (SIGCHLD, SIGTERM, SIGINT and SIGHUP are blocked), so
no handler runs at an awkward moment and no signal is lost between two waits. SIGHUP is
passed on to every worker (`mailmodule serve` reloads its configuration on it).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection
from typing import Final, TextIO, final

__all__ = ["EX_SOFTWARE", "FORWARDED_SIGNALS", "STOP_SIGNALS", "Supervisor"]

#: The exit code when workers failed: they died too often, or did not stop cleanly.
EX_SOFTWARE: Final = 70
#: The signals that ask the workers to stop gracefully.
STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})
#: The signals passed on to every worker as they are.
FORWARDED_SIGNALS: Final = frozenset({signal.SIGHUP})
_WAITED: Final = STOP_SIGNALS | FORWARDED_SIGNALS | {signal.SIGCHLD}
_FOREVER: Final = 3600.0


def _exit_code(status: int) -> int:
    """A `waitpid` status as an exit code: the code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


@final
class Supervisor:
    """Run `workers` forked processes of `target` until a stop signal, restarting the dead.

    `target(index)` runs in the child, with index 0 to workers - 1, and returns its exit
    code. It starts with SIGTERM, SIGINT and SIGHUP blocked, so a stop (or reload)
    requested while it sets up is held, not lost: it must unblock them
    (`signal.pthread_sigmask`) once it handles them, and then stop gracefully on SIGTERM or
    SIGINT. It must not return into the caller: the child ends with `os._exit` whatever
    `target` does.

    Callers may assume: `run()` returns only once every worker has exited; on SIGTERM or
    SIGINT it sends SIGTERM to every worker, waits up to `grace` seconds, then SIGKILLs the
    rest. SIGHUP goes on to every live worker. A worker that exits while no stop was asked
    for is restarted after a back-off (`backoff` seconds, doubled for each restart in the
    last `window` seconds, at most `max_backoff`); after `max_restarts` restarts within
    `window`, or when a worker exits with a code in `fatal` (a configuration error will not
    mend by itself), the supervisor stops the others and gives up.

    Returns of `run()`: 0 when a stop was asked for and every worker exited with 0;
    the fatal code, or the failing worker's exit code (`EX_SOFTWARE` if a signal killed it),
    when it gave up; `EX_SOFTWARE` when a worker did not stop cleanly.

    A worker whose supervisor is gone (even killed with SIGKILL) gets SIGTERM.

    Implementers (of `target`) must: not rely on anything the parent opened but the
    listening sockets it hands over; flush their own output.
    """

    def __init__(
        self,
        target: Callable[[int], int],
        *,
        workers: int,
        grace: float = 40.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_restarts: int = 5,
        window: float = 60.0,
        fatal: Collection[int] = (),
        out: TextIO | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._target = target
        self.workers = workers
        self.grace = grace
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_restarts = max_restarts
        self.window = window
        self.fatal = frozenset(fatal)
        self._out = out if out is not None else sys.stdout
        self._pids: dict[int, int] = {}  # pid -> worker index
        self._due: dict[int, float] = {}  # worker index -> when to start it again
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        self._kill_at: float | None = None
        self._code = 0
        self._lifeline: tuple[int, int] | None = None  # a pipe the workers watch

    @property
    def pids(self) -> dict[int, int]:
        """The live workers: pid -> index (a copy)."""
        return dict(self._pids)

    def _say(self, text: str) -> None:
        # One write, so that the workers' lines on the same stream never split this one.
        self._out.write(f"mailmodule: {text}\n")
        self._out.flush()

    def run(self) -> int:
        """Start the workers and supervise them until all have exited; returns the exit code.

        Not reentrant, and meant for the main thread of a process with no event loop.
        """
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        self._lifeline = os.pipe()
        try:
            for index in range(self.workers):
                self._spawn(index, old)
            while self._pids or (self._due and not self._stopping):
                self._step(old)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            for fd in self._lifeline:
                os.close(fd)
            self._lifeline = None
        return self._code

    def _watch_parent(self) -> None:
        """In a worker: SIGTERM itself when the supervisor is gone, even SIGKILLed (the
        write end of the lifeline closes with it), so no worker outlives it."""
        assert self._lifeline is not None
        read, write = self._lifeline
        os.close(write)

        def watch() -> None:
            with contextlib.suppress(OSError):
                while os.read(read, 1):
                    pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="mailmodule-lifeline", daemon=True).start()

    def _spawn(self, index: int, old_mask: Collection[int]) -> None:
        for stream in (sys.stdout, sys.stderr, self._out):
            stream.flush()  # or the child writes the parent's buffered text once more
        pid = os.fork()
        if pid == 0:  # the child
            code = EX_SOFTWARE
            try:
                signal.pthread_sigmask(
                    signal.SIG_SETMASK,
                    (set(old_mask) | STOP_SIGNALS | FORWARDED_SIGNALS) - {signal.SIGCHLD},
                )
                self._watch_parent()
                code = self._target(index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else EX_SOFTWARE
            except BaseException:  # a forked child must never unwind into the parent's stack
                traceback.print_exc()
            finally:
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        self._pids[pid] = index
        self._say(f"worker {index} started (pid {pid})")

    def _step(self, old_mask: Collection[int]) -> None:
        now = time.monotonic()
        deadlines = [] if self._stopping else list(self._due.values())
        if self._kill_at is not None:
            deadlines.append(self._kill_at)
        timeout = max(0.0, min(deadlines) - now) if deadlines else _FOREVER
        info = signal.sigtimedwait(_WAITED, timeout)
        if info is not None and info.si_signo in STOP_SIGNALS:
            self._stop(signal.Signals(info.si_signo).name)
        elif info is not None and info.si_signo in FORWARDED_SIGNALS and not self._stopping:
            self._forward(signal.Signals(info.si_signo))
        self._reap()
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            for pid in self._pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._say(f"{len(self._pids)} worker(s) still busy after {self.grace}s: killed")
            self._kill_at = None
            self._fail(EX_SOFTWARE)
        if not self._stopping:
            for index, when in list(self._due.items()):
                if when <= now:
                    del self._due[index]
                    self._spawn(index, old_mask)

    def _stop(self, why: str) -> None:
        if not self._stopping:
            self._say(f"{why}: stopping {len(self._pids)} worker(s)")
            self._stopping = True
            self._due.clear()
            self._kill_at = time.monotonic() + self.grace
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _forward(self, sig: signal.Signals) -> None:
        self._say(f"{sig.name}: passed on to {len(self._pids)} worker(s)")
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _fail(self, code: int) -> None:
        if self._code == 0:
            self._code = code

    def _reap(self) -> None:
        while self._pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self._pids.pop(pid, None)
            if index is None:
                continue  # not one of ours
            code = _exit_code(status)
            if self._stopping:
                if code != 0:
                    self._say(f"worker {index} (pid {pid}) stopped with exit code {code}")
                    self._fail(EX_SOFTWARE)
                continue
            self._died(index, pid, code)

    def _died(self, index: int, pid: int, code: int) -> None:
        self._say(f"worker {index} (pid {pid}) exited unexpectedly with exit code {code}")
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - self.window:
            self._restarts.popleft()
        if code in self.fatal or len(self._restarts) >= self.max_restarts:
            reason = "it cannot run" if code in self.fatal else "too many restarts"
            self._say(f"giving up: {reason}")
            self._fail(code if 0 < code < 128 else EX_SOFTWARE)
            self._stop("giving up")
            return
        delay = min(self.max_backoff, self.backoff * 2 ** len(self._restarts))
        self._restarts.append(now)
        self._due[index] = now + delay
        self._say(f"restarting worker {index} in {delay:.1f}s")
