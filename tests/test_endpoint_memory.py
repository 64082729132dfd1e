"""Memory per message is bounded by the spill buffer's threshold, not by the message size:
a server in a subprocess, measured by its peak RSS."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MiB = 1 << 20
LIMIT = 16 * MiB

SERVER = r"""
import asyncio, resource, sys
from mailmodule import ConfigMap
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.modules import MaildirTarget
from mailmodule.pipeline import Destination, Pipeline

async def main():
    target = MaildirTarget("target.maildir", "local")
    target.init(ConfigMap({"root": sys.argv[1], "autocreate": True}))
    ep = SMTPEndpoint("smtp", ["127.0.0.1:0"])
    ep.init(ConfigMap({"hostname": "mx.test", "max_message_size": "64M", "rdns": False}))
    ep.pipeline = Pipeline(destinations={"example.org": Destination(targets=[target])})
    ((_, port),) = await ep.start()
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    while (line := (await loop.run_in_executor(None, sys.stdin.readline)).strip()):
        if line == "reset":  # start the peak again from now (Linux), and say what is used
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                print(status("VmRSS"), flush=True)
            except OSError:
                print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, flush=True)
        else:  # the peak since the last reset
            try:
                print(status("VmHWM"), flush=True)
            except OSError:
                print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, flush=True)
    await ep.stop()

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(key)

asyncio.run(main())
"""


class Server:
    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def ask(self, what: str) -> int:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()


def send(port: int, pieces: Iterator[bytes]) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        f = sock.makefile("rb")

        def reply() -> str:
            while (line := f.readline().decode())[3:4] == "-":
                pass
            return line

        reply()
        for command in ("EHLO client", "MAIL FROM:<a@example.net>", "RCPT TO:<joe@example.org>"):
            sock.sendall(command.encode() + b"\r\n")
            reply()
        sock.sendall(b"DATA\r\n")
        reply()
        for piece in pieces:
            sock.sendall(piece)
        sock.sendall(b".\r\n")
        answer = reply()
        sock.sendall(b"QUIT\r\n")
        f.close()
        return answer


def big_body(size: int) -> Iterator[bytes]:
    yield b"From: a@example.net\r\nSubject: big\r\n\r\n"
    piece = (b"x" * 1022 + b"\r\n") * 64
    for _ in range(size // len(piece)):
        yield piece


def tiny_header_lines(size: int) -> Iterator[bytes]:
    chunk = b"a:b\r\n" * 8192
    for _ in range(size // len(chunk)):
        yield chunk


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "mail")
    try:
        yield srv
    finally:
        srv.close()


def measure(server: Server, pieces: Iterator[bytes]) -> tuple[str, int]:
    send(server.port, iter([b"Subject: warm-up\r\n\r\nhello\r\n"]))
    before = server.ask("reset")
    answer = send(server.port, pieces)
    added = server.ask("peak") - before
    print(f"peak RSS {before / MiB:.1f} MiB before, +{added / MiB:.1f} MiB")
    return answer, added


@pytest.mark.timeout(300)
async def test_a_50_mib_message_adds_at_most_16_mib_to_peak_memory(
    server: Server, tmp_path: Path
) -> None:
    answer, added = await asyncio.to_thread(measure, server, big_body(50 * MiB))
    assert answer.startswith("250 2.0.0"), answer
    assert added <= LIMIT, f"peak RSS grew by {added / MiB:.1f} MiB"
    # The warm-up message is stored too; maildir names do not sort by arrival.
    sizes = [p.stat().st_size for p in (tmp_path / "mail" / "joe" / "new").iterdir()]
    assert max(sizes) > 50 * MiB - 4096


@pytest.mark.timeout(300)
async def test_32_mb_of_tiny_header_lines_add_at_most_16_mib_and_are_refused(
    server: Server,
) -> None:
    answer, added = await asyncio.to_thread(measure, server, tiny_header_lines(32_000_000))
    assert answer.startswith("552 5.3.4"), answer
    assert "header" in answer
    assert added <= LIMIT, f"peak RSS grew by {added / MiB:.1f} MiB"
