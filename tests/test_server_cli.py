"""The server composed from TOML, and the command line around it."""

from __future__ import annotations

import asyncio
import random
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mailmodule import ConfigError, QueueMetadata, SMTPError
from mailmodule.cli import EX_CONFIG, EX_DATAERR, EX_REFUSED, EX_USAGE, main
from mailmodule.server import Server, parse_reply

CONFIG = """
hostname = "mx.test"

[modules.aliases]
module = "table.static"
entries = {{ "team@example.org" = ["joe@example.org", "ann@example.org"] }}

[modules.rewrite]
module = "modify.replace_rcpt"
table = "&aliases"

[modules.local]
module = "target.maildir"
autocreate = true
root = "{root}"

[pipeline]
modifiers = ["&rewrite"]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
"""


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "mail.toml"
    path.write_text(text.format(root=tmp_path / "mail"))
    return path


async def test_a_server_from_toml_delivers_through_its_pipeline(tmp_path: Path) -> None:
    server = Server.from_file(str(write_config(tmp_path)))
    server.initialize()
    ((name, host, port),) = await server.start()
    assert name == "smtp"

    def client() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port) as s:
            try:
                return s.sendmail(
                    "a@example.net",
                    ["team@example.org", "x@far.example"],
                    b"Subject: hi\r\n\r\nhi\r\n",
                )
            except smtplib.SMTPRecipientsRefused as exc:
                return exc.recipients

    refused = await asyncio.to_thread(client)
    await server.stop()
    assert refused == {"x@far.example": (550, b"5.1.2 No relaying")}
    assert len(list((tmp_path / "mail" / "joe" / "new").iterdir())) == 1
    assert len(list((tmp_path / "mail" / "ann" / "new").iterdir())) == 1


@pytest.mark.parametrize(
    ("change", "section", "key"),
    [
        (('module = "table.static"', 'module = "table.statik"'), "modules.aliases", "module"),
        (('table = "&aliases"', 'table = "&nothing"'), "modules.rewrite", "table"),
        (('root = "', 'rot = "'), "modules.local", "rot"),  # did you mean 'root'?
        (('modifiers = ["&rewrite"]', 'modifiers = ["&local"]'), "pipeline", "modifiers"),
        (('reject = "550 5.1.2 No relaying"', 'reject = "no"'), "pipeline.default", "reject"),
        (('listen = ["127.0.0.1:0"]', 'listen = ["nowhere"]'), "endpoints[0]", None),
        (('type = "smtp"', 'type = "pop3"'), "endpoints[0]", "type"),
    ],
)
def test_a_configuration_error_names_file_section_and_key(
    tmp_path: Path, change: tuple[str, str], section: str, key: str | None
) -> None:
    path = write_config(tmp_path, CONFIG.replace(*change))
    with pytest.raises(ConfigError) as info:
        Server.from_file(str(path)).initialize()
    assert info.value.file == str(path)
    assert info.value.section == section
    if key is not None:
        assert info.value.key == key
    assert str(path) in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[modules\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        Server.from_file(str(path))
    assert info.value.file == str(path)


def test_replies_parse_from_configuration_text() -> None:
    assert parse_reply("550 5.7.1 Go away") == SMTPError(550, (5, 7, 1), "Go away")
    with pytest.raises(ValueError, match=r"550 5\.7\.1 text"):
        parse_reply("nope")


# The command line


def test_cli_modules_lists_modules_by_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    assert "target.*" in out
    assert "  target.maildir" in out
    assert "endpoints" in out
    assert "  lmtp" in out


def test_cli_check_config_succeeds_or_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    assert main(["check-config", "-c", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write_config(tmp_path, CONFIG.replace('table = "&aliases"', 'table = "&gone"'))
    assert main(["check-config", "-c", str(bad)]) == EX_CONFIG
    assert "modules.rewrite" in capsys.readouterr().err


def test_cli_deliver_runs_one_message_without_smtp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)

    class Stdin:
        buffer = __import__("io").BytesIO(b"Subject: cli\r\n\r\nfrom the cli\r\n")

    monkeypatch.setattr(sys, "stdin", Stdin)
    code = main(
        [
            "deliver",
            "-c",
            str(path),
            "--from",
            "a@example.net",
            "--to",
            "team@example.org",
            "--to",
            "x@far.example",
        ]
    )
    out = capsys.readouterr().out
    assert code == EX_REFUSED
    assert "x@far.example: 550 5.1.2 No relaying" in out
    assert "team@example.org: 250" in out
    assert len(list((tmp_path / "mail" / "joe" / "new").iterdir())) == 1


def test_cli_meta_show_pretty_prints_a_queue_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.meta"
    QueueMetadata(from_="a@example.org", to=["b@example.org"]).write(path)
    assert main(["meta", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"From": "a@example.org"' in out
    path.write_bytes(b'{"To": 5}')
    assert main(["meta", "show", str(path)]) == EX_DATAERR


def test_cli_help_works_everywhere() -> None:
    for args in (
        ["--help"],
        ["serve", "--help"],
        ["deliver", "--help"],
        ["meta", "show", "--help"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "mailmodule", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0
        assert "usage: mailmodule" in result.stdout


def test_cli_usage_errors_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "serve", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2


def test_serve_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-m", "mailmodule", "serve", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "smtp listening on 127.0.0.1:" in line, line
            port = int(line.rsplit(":", 1)[1])
            with smtplib.SMTP("127.0.0.1", port) as s:
                s.sendmail("a@example.net", ["joe@example.org"], b"Subject: stop\r\n\r\nx\r\n")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert "shutting down" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert len(list((tmp_path / "mail" / "joe" / "new").iterdir())) == 1


ROUTING = """
[modules.trusted]
module = "table.static"
entries = {{ "boss@example.net" = "yes" }}

[modules.policy]
module = "check.iprev"

[pipeline.sources."example.net"]
checks = [{{ check = "&policy", fail_action = "reject 550 5.7.25 No rDNS" }}]
modifiers = ["&rewrite"]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
destination_tables = [{{ table = "&aliases", targets = ["&local"] }}]
default = {{ reject = "550 5.7.1 Not from there" }}

[pipeline.sources."spammer.example"]
reject = "554 5.7.1 Go away"

[pipeline.sources.""]
default = {{ targets = ["&local"], checks = ["&policy"] }}

[[pipeline.source_tables]]
table = "&trusted"
destinations = {{ "postmaster" = {{ targets = ["&local"] }} }}
default = {{ targets = ["&local"] }}
"""


def _mutate(doc: object, rng: random.Random) -> object:
    junk: list[object] = [
        None,
        True,
        0,
        -1,
        1.5,
        "",
        "x",
        "&",
        "&nothing",
        [],
        {},
        [1, "a"],
        {"a": None},
        [[]],
    ]
    if isinstance(doc, dict) and doc and rng.random() < 0.05:
        key = rng.choice(list(doc))  # a typo in a key
        return {(k + "x" if k == key else k): v for k, v in doc.items()}
    if isinstance(doc, dict) and doc and rng.random() < 0.75:
        key = rng.choice(list(doc))
        return {**doc, key: _mutate(doc[key], rng)}
    if isinstance(doc, list) and doc and rng.random() < 0.75:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutate(doc[i], rng), *doc[i + 1 :]]
    return rng.choice(junk)


def test_any_broken_configuration_gives_only_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    monkeypatch.chdir(tmp_path)  # a mutated path lands here, nowhere else
    bases = [
        tomllib.loads(CONFIG.format(root=tmp_path / "mail")),
        tomllib.loads((CONFIG + ROUTING).format(root=tmp_path / "mail")),
    ]
    rng = random.Random(20261125)
    files: list[str | None] = []
    keyless: list[ConfigError] = []
    accepted = 0
    for i in range(600):
        data = _mutate(bases[i % 2], rng)
        if not isinstance(data, dict):
            continue
        try:
            Server(data, source="fuzz.toml").initialize()
            accepted += 1
        except ConfigError as err:
            files.append(err.file)
            if (err.section or "").startswith("pipeline") and err.key is None:
                keyless.append(err)
    assert len(files) > 200
    assert set(files) == {"fuzz.toml"}  # every error names the file
    assert keyless == []  # and, in the pipeline, the key
    assert accepted > 0


def test_serve_quiet_logs_no_line_per_message(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-m", "mailmodule", "-q", "serve", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            with smtplib.SMTP("127.0.0.1", port) as s:
                s.sendmail("a@example.net", ["joe@example.org"], b"Subject: q\r\n\r\nx\r\n")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
    assert len(list((tmp_path / "mail" / "joe" / "new").iterdir())) == 1


def test_quiet_and_verbose_together_are_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "-q", "-v", "modules"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EX_USAGE


def test_a_second_signal_ends_a_message_under_way_at_once(tmp_path: Path) -> None:
    """The first SIGTERM lets a message in DATA finish (30 s of grace); the second does not
    wait for it, and nothing of the message is left delivered."""
    path = write_config(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-m", "mailmodule", "serve", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            port = int(line.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                reader = sock.makefile("rb")
                reader.readline()  # the greeting
                sock.sendall(b"HELO c.example\r\nMAIL FROM:<a@example.net>\r\n")
                sock.sendall(b"RCPT TO:<joe@example.org>\r\nDATA\r\n")
                replies = [reader.readline() for _ in range(4)]
                assert replies[-1].startswith(b"354"), replies
                sock.sendall(b"Subject: slow\r\n\r\nhalf a body")
                proc.send_signal(signal.SIGTERM)
                assert "shutting down" in proc.stdout.readline()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0  # the grace alone would take 30 s
                assert reader.readline().startswith(b"421")
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not list((tmp_path / "mail").glob("*/new/*"))
