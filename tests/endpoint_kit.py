"""A real endpoint on loopback, for tests that talk to it with smtplib or a socket."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from mailmodule import ConfigMap
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.modules import MaildirTarget
from mailmodule.pipeline import Destination, Pipeline


def free_port(*, udp: bool = False) -> int:
    """A loopback TCP port free right now (with `udp`, free for UDP too: a DNS server's),
    for a server a test starts on it next."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                try:
                    dgram.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def maildir(root: Path) -> MaildirTarget:
    target = MaildirTarget("target.maildir", "local")
    target.init(ConfigMap({"root": str(root), "autocreate": True}))
    return target


def endpoint(kind: str, pipeline: Pipeline, **settings: object) -> SMTPEndpoint:
    ep = SMTPEndpoint(kind, ["127.0.0.1:0"])
    ep.init(ConfigMap({"hostname": "mx.test", **settings}))
    ep.pipeline = pipeline
    return ep


def to_maildir(root: Path) -> Pipeline:
    return Pipeline(destinations={"example.org": Destination(targets=[maildir(root)])})


def delivered(root: Path) -> list[Path]:
    return sorted(root.glob("*/new/*")) + sorted(root.glob("*/.*/new/*"))


def leftovers(root: Path) -> list[Path]:
    return sorted(root.glob("*/tmp/*"))


class LineClient:
    """A raw SMTP/LMTP client: send lines, read whole replies."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data + b"\r\n")

    def command(self, line: str) -> str:
        self.send(line)
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def greeted(host: str, port: int) -> LineClient:
    """A client past the greeting and EHLO."""
    c = LineClient(host, port)
    c.reply()
    c.command("EHLO client")
    return c


def self_signed(directory: Path, name: str = "localhost") -> tuple[str, str]:
    """A certificate and key for `name`, made by the openssl command."""
    cert, key = directory / f"{name}.cert.pem", directory / f"{name}.key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"]
    command += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return str(cert), str(key)
