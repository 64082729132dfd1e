"""The `mailmodule` command line, run as operators run it: in a subprocess."""

from __future__ import annotations

import json
import logging
import os
import signal
import smtplib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from mailmodule.cli import EX_DATAERR, EX_NOINPUT, EX_USAGE, _JSONFormatter
from tests.serve_kit import write_config


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


def serve_and_send(config: Path, *args: str) -> list[str]:
    """Run `mailmodule *args` (a serve command), send one message, stop it; its stderr lines."""
    with subprocess.Popen(
        [sys.executable, "-m", "mailmodule", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            with smtplib.SMTP("127.0.0.1", port) as s:
                s.sendmail("a@example.net", ["joe@example.org"], b"Subject: q\r\n\r\nx\r\n")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            return proc.stderr.read().splitlines()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_log_options_may_come_before_or_after_the_command_and_json_is_one_object_a_line(
    tmp_path: Path,
) -> None:
    config = str(write_config(tmp_path))
    lines = serve_and_send(
        tmp_path, "--log-format", "json", "serve", "-c", config, "--log-level", "debug"
    )
    entries = [json.loads(line) for line in lines]
    assert entries
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert {"DEBUG", "INFO"} <= {e["level"] for e in entries}
    assert any(e["logger"] == "mailmodule.endpoint" for e in entries)


def test_serve_logs_at_the_level_given_after_the_command(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    assert serve_and_send(tmp_path, "serve", "-c", config, "--log-level", "warning") == []
    assert serve_and_send(tmp_path, "serve", "-c", config, "-q") == []


def test_an_option_given_before_the_command_is_kept_when_the_command_does_not_repeat_it(
    tmp_path: Path,
) -> None:
    config = str(write_config(tmp_path))
    assert serve_and_send(tmp_path, "--log-level", "error", "serve", "-c", config) == []


@pytest.mark.parametrize(
    "args", [["-q", "modules", "-v"], ["--log-level", "info", "modules", "-q"]]
)
def test_two_loudness_choices_on_either_side_of_the_command_are_a_usage_error(
    args: list[str],
) -> None:
    result = run(*args)
    assert result.returncode == EX_USAGE
    assert "choose one of -v, -q and --log-level" in result.stderr


def test_json_log_lines_carry_the_exception_text() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "mailmodule.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    entry = json.loads(_JSONFormatter().format(record))
    assert entry["message"] == "failed here"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "mailmodule.x"
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_config_defaults_to_mailmodule_config_then_the_etc_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {**os.environ, "MAILMODULE_CONFIG": str(config)}
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK" in result.stdout
    env.pop("MAILMODULE_CONFIG")
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "check-config", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "$MAILMODULE_CONFIG, else /etc/mailmodule/mailmodule.toml" in " ".join(
        result.stdout.split()
    )


def test_meta_show_of_a_missing_file_is_no_input_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.meta"
    result = run("meta", "show", str(path))
    assert result.returncode == EX_NOINPUT
    assert str(path) in result.stderr


@pytest.mark.parametrize(
    "content", [b'{"To": 5}', b"{not json", b'{"x": 1}', b"{}", b"[1]", b"null"]
)
def test_meta_show_of_a_file_that_is_not_queue_metadata_is_a_data_error_naming_it(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad.meta"
    path.write_bytes(content)
    result = run("meta", "show", str(path))
    assert result.returncode == EX_DATAERR
    assert result.stderr.startswith(f"mailmodule: {path}: ")
    assert result.stdout == ""


def test_meta_show_reads_a_queue_file_whose_keys_differ_in_case(tmp_path: Path) -> None:
    path = tmp_path / "a.meta"
    path.write_bytes(b'{"from": "a@example.org"}')
    result = run("meta", "show", str(path))
    assert result.returncode == 0, result.stderr
    assert '"From": "a@example.org"' in result.stdout
