"""Servers in processes of their own and a load generator in another: what the endpoint
benchmarks share.

The load comes from Postfix's smtp-source where it is installed (C, so the client is not
what is measured), else from `python benchmarks/_load.py client ...`, an asyncio client.
Either way the clients run in another process than the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
SMTP_SOURCE = shutil.which("smtp-source") or next(
    (p for p in ("/usr/sbin/smtp-source", "/usr/lib/postfix/smtp-source") if os.access(p, os.X_OK)),
    None,
)
BODY_LINE = b"x" * 78 + b"\r\n"


#: `mailmodule serve` delivering every recipient to one maildir, on a free port (`{root}`).
CONFIG = """
hostname = "mx.bench"

[modules.local]
module = "target.maildir"
root = "{root}"

[pipeline]
default = {{ targets = ["&local"] }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
"""


def message(size: int) -> bytes:
    """A message of about `size` bytes, CRLF lines of 80 octets."""
    head = b"From: <a@example.net>\r\nTo: <user@example.org>\r\nSubject: bench\r\n\r\n"
    return head + BODY_LINE * max(1, (size - len(head)) // len(BODY_LINE))


@contextlib.contextmanager
def server(command: Sequence[str], *, log: Path) -> Iterator[int]:
    """Run `command` (a server that prints "... listening on HOST:PORT" first) in a process
    group of its own; yields the port; SIGTERM on the way out, SIGKILL to the group if it
    lingers."""
    with (
        log.open("w") as err,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "listening on" not in line:
                raise RuntimeError(f"{command[:4]} did not start: {line!r}; see {log}")
            yield int(line.rsplit(":", 1)[1])
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # workers it may have left


def count(maildir: Path) -> int:
    new = maildir / "new"
    return sum(1 for _ in os.scandir(new)) if new.is_dir() else 0


def empty(root: Path) -> None:
    """Remove the delivered messages under `root`, keeping the Maildirs."""
    for sub in root.glob("**/new"):
        for entry in os.scandir(sub):
            os.unlink(entry.path)


def load(
    port: int, *, messages: int, sessions: int, size: int, keep_sessions: bool
) -> tuple[float, str]:
    """Send `messages` of `size` bytes over `sessions` concurrent sessions to 127.0.0.1:port,
    one connection per message or (`keep_sessions`) many per connection; returns the
    seconds it took and the client's name."""
    if SMTP_SOURCE is not None:
        command = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
        command += ["-f", "a@example.net", "-t", "user@example.org", "-M", "client.bench"]
        command += [*(["-d"] if keep_sessions else []), f"127.0.0.1:{port}"]
        client = "smtp-source"
    else:
        command = [PYTHON, str(HERE / "_load.py"), "client", str(port), str(messages)]
        command += [str(sessions), str(size), "keep" if keep_sessions else "connect"]
        client = "an asyncio client"
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{client} failed: {result.stderr.strip()[-500:]}")
    return elapsed, client


# The fallback client: `python _load.py client PORT MESSAGES SESSIONS SIZE connect|keep`


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            if not line.startswith((b"2", b"3")):
                raise RuntimeError(f"refused: {line!r}")
            return line


async def _session(port: int, n: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO client.bench\r\n")
    await _reply(reader)
    for _ in range(n):
        writer.write(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n")
        for _ in range(3):  # pipelined: MAIL, RCPT, DATA
            await _reply(reader)
        writer.write(data + b".\r\n")
        await _reply(reader)
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()
    await writer.wait_closed()


async def _client(port: int, messages: int, sessions: int, size: int, keep: bool) -> None:
    data = message(size)
    queue = list(range(messages))

    async def worker(share: int) -> None:
        if keep:
            await _session(port, share, data)
        else:
            for _ in range(share):
                await _session(port, 1, data)

    shares = [len(queue[i::sessions]) for i in range(sessions)]
    async with asyncio.TaskGroup() as group:
        for share in shares:
            group.create_task(worker(share))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client")
    for name in ("port", "messages", "sessions", "size"):
        client.add_argument(name, type=int)
    client.add_argument("mode", choices=["connect", "keep"])
    args = parser.parse_args()
    asyncio.run(_client(args.port, args.messages, args.sessions, args.size, args.mode == "keep"))


if __name__ == "__main__":
    main()
