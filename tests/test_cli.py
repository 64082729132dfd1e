"""The `mailmodule` command line, run as operators run it: in a subprocess."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import smtplib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from mailmodule.cli import EX_DATAERR, EX_NOINPUT, EX_USAGE, _json_formatter
from tests.serve_kit import MAILDIR_CONFIG, write_config


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
    entry = json.loads(_json_formatter().format(record))
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


JUNK_CONFIG = MAILDIR_CONFIG.replace(
    "[pipeline]",
    """[modules.junk]
module = "check.command"
command = [{python}, "-c", "import sys; sys.exit(2)"]

[pipeline]
checks = ["&junk"]""",
)


def deliver(config: Path, stdin: str, *rcpts: str) -> subprocess.CompletedProcess[str]:
    to = [arg for rcpt in rcpts for arg in ("--to", rcpt)]
    return run("deliver", "-c", str(config), "--from", "a@example.net", *to, stdin=stdin)


def delivered(tmp_path: Path, folder: str = "new") -> list[bytes]:
    directory = tmp_path / "mail" / "joe" / folder
    return [f.read_bytes() for f in directory.iterdir()] if directory.exists() else []


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_deliver_refuses_empty_input_and_stores_nothing(tmp_path: Path, stdin: str) -> None:
    result = deliver(write_config(tmp_path), stdin, "joe@example.org")
    assert result.returncode == EX_DATAERR
    assert "empty" in result.stderr
    assert delivered(tmp_path) == []


def test_deliver_stores_crlf_line_endings_under_a_received_field(tmp_path: Path) -> None:
    result = deliver(
        write_config(tmp_path), "Subject: lf\n\nline one\nline two\n", "joe@example.org"
    )
    assert result.returncode == 0, result.stderr
    (stored,) = delivered(tmp_path)
    assert stored.count(b"\n") == stored.count(b"\r\n") > 0
    head, body = stored.split(b"\r\n\r\n", 1)
    received, subject = re.sub(rb"\r\n(?=[ \t])", b"", head).split(b"\r\n")
    assert re.fullmatch(
        rb"Received: from local \(mailmodule deliver\) by mx\.test with LOCAL id [0-9a-f]+;"
        rb"\s+\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
        received,
    )
    assert subject == b"Subject: lf"
    assert body == b"line one\r\nline two\r\n"


def test_deliver_names_the_address_it_delivered_to(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        MAILDIR_CONFIG.replace(
            "[pipeline]",
            """[modules.aliases]
module = "table.static"
entries = {{ "team@example.org" = ["joe@example.org"] }}

[modules.rewrite]
module = "modify.replace_rcpt"
table = "&aliases"

[pipeline]
modifiers = ["&rewrite"]""",
        ),
    )
    result = deliver(config, "Subject: x\r\n\r\nx\r\n", "team@example.org")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"team@example\.org: 250 2\.0\.0 delivered to joe@example\.org \(id [0-9a-f]+\)\n",
        result.stdout,
    )


def test_deliver_says_when_a_check_quarantined_the_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, JUNK_CONFIG, python=json.dumps(sys.executable))
    result = deliver(config, "Subject: x\r\n\r\nx\r\n", "joe@example.org")
    assert result.returncode == 0, result.stderr
    assert "delivered to joe@example.org (quarantined: Junk)" in result.stdout
    assert delivered(tmp_path) == []
    assert len(delivered(tmp_path, ".Junk/new")) == 1


# What serving mail needs and `--help` does not (benchmarks/bench_cli.py).
HEAVY = (
    "asyncio",
    "socket",
    "ssl",
    "json",
    "tomllib",
    "email.utils",
    "importlib.metadata",
    "mailmodule.server",
    "mailmodule.pipeline",
    "mailmodule.endpoint",
    "mailmodule.modules",
    "mailmodule.metadata",
)


def imported_by(*args: str) -> set[str]:
    """The modules a `mailmodule *args` process imports, from `-X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mailmodule", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def test_the_command_line_module_adds_nothing_heavy_to_the_package_for_help() -> None:
    code = (
        "import sys, mailmodule; before = set(sys.modules); import mailmodule.cli\n"
        "try: mailmodule.cli.main(['--help'])\n"
        "except SystemExit: pass\n"
        "print(*sorted(set(sys.modules) - before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    added = set(result.stdout.splitlines()[-1].split())
    assert "mailmodule.cli" in added
    assert added.isdisjoint(HEAVY)
