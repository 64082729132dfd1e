"""IMAP filters: `imap.filter.command` (maddy's), and maddy's rule for running several.

A filter chooses, at delivery, the folder a message goes to and the flags it gets. maddy
has one filter module, `imap.filter.command`, and combines several filters as its
`imap_filters` group does: the first non-empty folder wins, flags add up, a failing filter
is logged and skipped (`run_imap_filters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Generator, Iterator, Sequence
from typing import ClassVar, Final, final

from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, FilterError
from mailmodule.header import Header
from mailmodule.interfaces import IMAPFilter
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["OUTPUT_LIMIT", "CommandFilter", "run_imap_filters"]

_log = logging.getLogger("mailmodule.modules.imap_filters")
_PLACEHOLDER: Final = re.compile(r"\{[a-zA-Z0-9_]+?\}")
#: The environment of a filter command: nothing of ours leaks into it.
_ENV: Final = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
#: The most a filter command may print on standard output, in bytes.
OUTPUT_LIMIT: Final = 64 * 1024
_STDERR_LIMIT: Final = 4096
_CHUNK: Final = 1 << 16


def run_imap_filters(
    filters: Sequence[IMAPFilter],
    account_name: str,
    rcpt_to: str,
    meta: MsgMetadata,
    hdr: Header,
    body: Buffer,
) -> tuple[str, list[str]]:
    """Run `filters` in order as maddy's `imap_filters` group does.

    Blocks (filters may run commands): call it through `asyncio.to_thread`.

    Returns:
        The first non-empty folder a filter chose ("" when none did) and the flags of
        every filter, in order. A filter that raises is logged and skipped.
    """
    folder = ""
    flags: list[str] = []
    for f in filters:
        try:
            chosen, extra = f.imap_filter(account_name, rcpt_to, meta, hdr, body)
        except Exception as exc:  # the contract: any failure is logged, delivery goes on
            _log.error("msg %s: IMAP filter %r failed: %s", meta.id, f, exc)
            continue
        if chosen and not folder:
            folder = chosen
        flags.extend(extra)
    return folder, flags


def _original_rcpt(meta: MsgMetadata, rcpt_to: str) -> str:
    """The recipient as the client gave it, before every rewrite (maddy's loop)."""
    seen = {rcpt_to}
    current = rcpt_to
    while meta.original_rcpts and current in meta.original_rcpts:
        current = meta.original_rcpts[current]
        if current in seen:  # a cycle: stop where it closes
            break
        seen.add(current)
    return current


def _rdns(meta: MsgMetadata) -> str:
    """The client's reverse DNS name when it is already known; a thread cannot wait for it."""
    pending = meta.conn.rdns_name if meta.conn else None
    if (
        isinstance(pending, asyncio.Future)
        and pending.done()
        and not pending.cancelled()
        and pending.exception() is None
    ):
        value = pending.result()
        return value if isinstance(value, str) else ""
    return ""


_COMMAND: Final = Setting.raw(
    "command",
    "the program and its arguments, with placeholders such as {account_name}",
    "list of strings, or one string split as a shell would (no shell runs)",
    default=None,
    default_doc="required (in code: the inline arguments)",
)
_TIMEOUT: Final = Setting.duration(
    "timeout", "the program's time limit", datetime.timedelta(seconds=30), positive=True
)


@final
class CommandFilter(ModuleBase):
    """`imap.filter.command`: runs a program that chooses the folder and flags.

    Settings: `command`, the program and its arguments (a list, or a string split as a
    shell would, without running a shell), or the inline arguments as in maddy
    (`imap.filter.command /etc/mail/sieve.sh {account_name}`); `timeout` (default 30s).
    The program is looked up when the module is initialized. In the arguments (never in
    the program name) maddy's placeholders are replaced: {account_name}, {rcpt_to},
    {original_rcpt_to}, {sender}, {subject}, {msg_id}, {auth_user}, {source_ip},
    {source_host}, {source_rdns}; unknown ones stay as written. Each argument stays one
    argument whatever a placeholder's value holds: no shell ever runs.

    The program gets the message (header and body) on standard input, an environment of
    PATH and LC_ALL only, and its own process group, which is killed when it outlives
    `timeout`. Its output, at most `OUTPUT_LIMIT` bytes of UTF-8, is read as maddy
    documents it: the first line, if not empty, is the folder; every further non-empty
    line is a flag. A program that exits non-zero, times out or prints too much changes
    nothing (`FilterError`, logged by the caller).
    """

    def __init__(
        self,
        mod_name: str = "imap.filter.command",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.argv: list[str] = list(inline_args)
        self.timeout = 30.0

    SETTINGS: ClassVar = (_COMMAND, _TIMEOUT)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        raw = cfg.value(_COMMAND, self.argv)
        if isinstance(raw, str):
            argv = shlex.split(raw)
        elif isinstance(raw, list | tuple) and all(isinstance(a, str) for a in raw):
            argv = list(raw)
        else:
            raise ConfigError("expected a command line", module=cfg.module, key="command")
        if not argv:
            raise ConfigError("required key is missing", module=cfg.module, key="command")
        found = shutil.which(argv[0], path=_ENV["PATH"]) if "/" not in argv[0] else argv[0]
        if found is None or not os.access(found, os.X_OK) or os.path.isdir(found):
            raise ConfigError(
                f"{argv[0]!r} is not an executable program", module=cfg.module, key="command"
            )
        self.argv = [found, *argv[1:]]
        self.timeout = cfg.value(_TIMEOUT).total_seconds()

    def expand(self, account_name: str, rcpt_to: str, meta: MsgMetadata, hdr: Header) -> list[str]:
        """The command line for one message: placeholders replaced in the arguments."""
        conn = meta.conn
        values = {
            "account_name": account_name,
            "rcpt_to": rcpt_to,
            "original_rcpt_to": _original_rcpt(meta, rcpt_to),
            "sender": meta.original_from,
            "subject": hdr.get("Subject", ""),
            "msg_id": meta.id,
            "auth_user": conn.auth_user if conn else "",
            "source_ip": str(conn.remote_ip or "") if conn else "",
            "source_host": conn.hostname if conn else "",
            "source_rdns": _rdns(meta),
        }

        def replace(m: re.Match[str]) -> str:
            return values.get(m.group(0)[1:-1], m.group(0))

        return [self.argv[0], *(_PLACEHOLDER.sub(replace, a) for a in self.argv[1:])]

    def imap_filter(
        self, account_name: str, rcpt_to: str, meta: MsgMetadata, hdr: Header, body: Buffer
    ) -> tuple[str, list[str]]:
        argv = self.expand(account_name, rcpt_to, meta, hdr)
        _log.debug("msg %s: running %r", meta.id, argv)
        out = self._run(argv, _message(hdr, body))
        try:
            text = out.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FilterError(self._label(), "its output is not UTF-8") from exc
        lines = text.splitlines()
        folder = lines[0].strip("\r") if lines else ""
        flags = [line.strip() for line in lines[1:] if line.strip()]
        return folder, flags

    def _label(self) -> str:
        return self.instance_name() or self.name()

    def _run(self, argv: list[str], stdin: Iterator[bytes]) -> bytes:
        try:
            proc = subprocess.Popen(  # an argv: no shell ever runs
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_ENV,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise FilterError(self._label(), f"cannot run {argv[0]!r}: {exc}") from exc
        try:
            return self._communicate(proc, stdin)
        finally:
            if proc.returncode is None:  # not reaped: its group id is still ours to kill
                _kill_group(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            if isinstance(stdin, Generator):
                stdin.close()  # closes the body's reader

    def _communicate(self, proc: subprocess.Popen[bytes], stdin: Iterator[bytes]) -> bytes:
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:
            raise FilterError(self._label(), "no pipes to the command")  # Popen made them
        streams = {s.fileno(): s for s in (proc.stdin, proc.stdout, proc.stderr)}
        stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        out, err = bytearray(), bytearray()
        pending = b""
        os.set_blocking(stdin_fd, False)
        with selectors.DefaultSelector() as sel:
            for fd in streams:
                sel.register(fd, selectors.EVENT_WRITE if fd == stdin_fd else selectors.EVENT_READ)

            def done(fd: int) -> None:
                sel.unregister(fd)
                with contextlib.suppress(OSError):
                    streams[fd].close()

            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FilterError(self._label(), f"timed out after {self.timeout}s")
                for key, _events in sel.select(left):
                    if key.fd == stdin_fd:
                        pending = pending or next(stdin, b"")
                        if not pending:
                            done(key.fd)
                            continue
                        try:
                            pending = pending[os.write(key.fd, pending) :]
                        except BlockingIOError:
                            pass
                        except BrokenPipeError:  # it does not read the whole message: fine
                            done(key.fd)
                        continue
                    data = os.read(key.fd, _CHUNK)
                    if not data:
                        done(key.fd)
                    elif key.fd == stdout_fd:
                        out += data
                        if len(out) > OUTPUT_LIMIT:
                            raise FilterError(
                                self._label(), f"printed more than {OUTPUT_LIMIT} bytes"
                            )
                    else:
                        err += data[: max(0, _STDERR_LIMIT - len(err))]
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise FilterError(self._label(), f"timed out after {self.timeout}s") from exc
        if code != 0:
            said = err.decode("utf-8", "replace").strip()
            raise FilterError(self._label(), f"exit code {code}" + (f": {said}" if said else ""))
        return bytes(out)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _message(hdr: Header, body: Buffer) -> Iterator[bytes]:
    """The message as the filter reads it: header, then body, in chunks."""
    yield hdr.to_bytes()
    with body.open() as reader:
        while chunk := reader.read(_CHUNK):
            yield chunk
