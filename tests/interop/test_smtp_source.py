"""Postfix's smtp-source, a real and demanding SMTP and LMTP client, against `mailmodule serve`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.endpoint_kit import delivered
from tests.serve_kit import MAILDIR_CONFIG, serving, write_config

CONFIG = (
    MAILDIR_CONFIG
    + """
[[endpoints]]
type = "lmtp"
listen = ["127.0.0.1:0"]
rdns = false
"""
)

WORKERS = [
    pytest.param((), id="one-process"),
    pytest.param(("--workers", "2"), id="two-workers"),
]


def source(program: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [program, "-f", "a@example.net", "-M", "client.test", *args, f"127.0.0.1:{port}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def header_of(data: bytes) -> list[bytes]:
    """The header fields of a stored message, each unfolded onto one line."""
    head = data.split(b"\r\n\r\n", 1)[0]
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def assert_stored_well(path: Path) -> None:
    """CRLF line endings only, and one Received field: ours."""
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b""), f"{path.name}: a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), f"{path.name}: a bare CR"
    received = [f for f in header_of(data) if f.lower().startswith(b"received:")]
    assert len(received) == 1, received
    assert b"by mx.test" in received[0]


@pytest.mark.parametrize("workers", WORKERS)
def test_200_messages_over_10_sessions_all_arrive_with_crlf_and_one_received_field(
    tmp_path: Path, smtp_source: str, workers: tuple[str, ...]
) -> None:
    with serving(write_config(tmp_path, CONFIG), *workers) as served:
        port = served.ports("smtp")[0]
        args = ["-s", "10", "-m", "200", "-l", "1024", "-t", "user@example.org"]
        result = source(smtp_source, port, *args)
        assert result.returncode == 0, result.stderr
        assert served.stop() == 0
    files = delivered(tmp_path / "mail")
    assert len(files) == 200
    for path in files:
        assert_stored_well(path)


def test_many_messages_over_kept_sessions_all_arrive(tmp_path: Path, smtp_source: str) -> None:
    with serving(write_config(tmp_path, CONFIG)) as served:
        port = served.ports("smtp")[0]
        args = ["-d", "-s", "5", "-m", "100", "-l", "4096", "-t", "user@example.org"]
        result = source(smtp_source, port, *args)
        assert result.returncode == 0, result.stderr
        assert served.stop() == 0
    files = delivered(tmp_path / "mail")
    assert len(files) == 100
    assert_stored_well(files[0])


def test_lmtp_with_three_recipients_a_message_reaches_each(
    tmp_path: Path, smtp_source: str
) -> None:
    with serving(write_config(tmp_path, CONFIG)) as served:
        port = served.ports("lmtp")[0]
        args = ["-L", "-s", "4", "-m", "20", "-r", "3", "-t", "user@example.org"]
        result = source(smtp_source, port, *args)
        assert result.returncode == 0, result.stderr
        assert served.stop() == 0
    for mailbox in ("user", "2user", "3user"):  # smtp-source numbers all but the first
        stored = sorted((tmp_path / "mail" / mailbox / "new").iterdir())
        assert len(stored) == 20
        assert_stored_well(stored[0])


def test_lines_starting_with_a_dot_are_stored_unstuffed(tmp_path: Path, smtp_source: str) -> None:
    message = tmp_path / "message.txt"
    message.write_text("Subject: dots\n\n.one dot\n..two dots\nend\n")
    with serving(write_config(tmp_path, CONFIG)) as served:
        port = served.ports("smtp")[0]
        result = source(smtp_source, port, "-F", str(message), "-t", "user@example.org")
        assert result.returncode == 0, result.stderr
        assert served.stop() == 0
    (path,) = delivered(tmp_path / "mail")
    assert b"\r\n\r\n.one dot\r\n..two dots\r\nend\r\n" in path.read_bytes()
    assert_stored_well(path)


def test_a_recipient_without_a_route_is_refused_with_550_5_1_2(
    tmp_path: Path, smtp_source: str
) -> None:
    with serving(write_config(tmp_path, CONFIG)) as served:
        port = served.ports("smtp")[0]
        result = source(smtp_source, port, "-t", "x@far.example")
        assert served.stop() == 0
    assert result.returncode != 0
    assert "550 5.1.2" in result.stderr + result.stdout
    assert delivered(tmp_path / "mail") == []
