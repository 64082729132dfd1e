"""swaks, the SMTP "swiss army knife", against `mailmodule serve`: STARTTLS, PIPELINING,
AUTH PLAIN on submission, and the refusals around them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmodule.modules.pass_table import hash_password
from tests.endpoint_kit import delivered, self_signed
from tests.serve_kit import Served, serving, write_config

CONFIG = """
hostname = "mx.test"

[modules.certs]
module = "tls.loader.file"
certs = [["{cert}", "{key}"]]

[modules.users]
module = "table.static"
entries = {{ "joe@example.org" = "{hash}" }}

[modules.authdb]
module = "auth.pass_table"
table = "&users"

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
tls = "&certs"

[[endpoints]]
type = "submission"
listen = ["127.0.0.1:0"]
rdns = false
tls = "&certs"
auth = "&authdb"
"""

# swaks exit codes (its manual, EXIT CODES)
SWAKS_RCPT_REFUSED = 24
SWAKS_MAIL_REFUSED = 23
SWAKS_AUTH_FAILED = 28


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """One server for the module (starting one costs a second): smtp and submission."""
    directory = tmp_path_factory.mktemp("swaks")
    cert, key = self_signed(directory)
    config = write_config(directory, CONFIG, cert=cert, key=key, hash=hash_password("s3cret"))
    with serving(config) as served:
        yield served, directory / "mail"
        assert served.stop() == 0


def run(swaks: str, port: int, *args: str, to: str = "user@example.org") -> tuple[int, str]:
    command = [swaks, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.test"]
    command += ["--from", "joe@example.org", "--to", to, "--timeout", "20", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, result.stdout + result.stderr


def stored_for(mail: Path, mailbox: str, marker: str) -> list[bytes]:
    """The stored messages for `mailbox` whose text holds `marker`."""
    found = [p.read_bytes() for p in delivered(mail) if p.parent.parent.name == mailbox]
    return [data for data in found if marker.encode() in data]


def test_starttls_delivers_and_the_received_field_says_esmtps(
    server: tuple[Served, Path], swaks: str
) -> None:
    served, mail = server
    code, out = run(swaks, served.ports("smtp")[0], "-tls", "--header", "Subject: tls-1")
    assert code == 0, out
    assert "STARTTLS" in out
    (data,) = stored_for(mail, "user", "tls-1")
    assert b"with ESMTPS" in data


def test_pipelined_recipients_one_accepted_one_refused_with_550(
    server: tuple[Served, Path], swaks: str
) -> None:
    served, mail = server
    code, out = run(
        swaks,
        served.ports("smtp")[0],
        "--pipeline",
        "--header",
        "Subject: pipe-1",
        to="user@example.org,x@far.example",
    )
    assert code == 0, out
    assert "PIPELINING" in out
    assert "550 5.1.2" in out
    lines = out.splitlines()
    mail_at = next(i for i, line in enumerate(lines) if "-> MAIL FROM" in line)
    assert "-> RCPT TO" in lines[mail_at + 1], "swaks did not pipeline: " + out
    assert len(stored_for(mail, "user", "pipe-1")) == 1


def test_a_pipelined_transaction_with_every_recipient_refused_stores_nothing(
    server: tuple[Served, Path], swaks: str
) -> None:
    served, mail = server
    before = len(delivered(mail))
    code, out = run(swaks, served.ports("smtp")[0], "--pipeline", to="x@far.example")
    assert code == SWAKS_RCPT_REFUSED, out
    assert "550 5.1.2" in out
    assert len(delivered(mail)) == before


def test_auth_plain_after_starttls_on_submission_delivers(
    server: tuple[Served, Path], swaks: str
) -> None:
    served, mail = server
    port = served.ports("submission")[0]
    auth = ["--auth", "PLAIN", "--auth-user", "joe@example.org", "--auth-password", "s3cret"]
    code, out = run(swaks, port, "-tls", *auth, "--header", "Subject: auth-1")
    assert code == 0, out
    assert "235" in out
    (data,) = stored_for(mail, "user", "auth-1")
    assert b"with ESMTPSA" in data


def test_a_wrong_password_is_refused_with_535(server: tuple[Served, Path], swaks: str) -> None:
    served, _ = server
    port = served.ports("submission")[0]
    auth = ["--auth", "PLAIN", "--auth-user", "joe@example.org", "--auth-password", "wrong"]
    code, out = run(swaks, port, "-tls", *auth)
    assert code == SWAKS_AUTH_FAILED, out
    assert "535" in out


def test_auth_is_not_offered_before_starttls(server: tuple[Served, Path], swaks: str) -> None:
    served, _ = server
    port = served.ports("submission")[0]
    auth = ["--auth", "PLAIN", "--auth-user", "joe@example.org", "--auth-password", "s3cret"]
    code, out = run(swaks, port, *auth)
    assert code == SWAKS_AUTH_FAILED, out
    assert "did not advertise authentication" in out


def test_mail_on_submission_without_auth_is_refused_with_530(
    server: tuple[Served, Path], swaks: str
) -> None:
    served, _ = server
    code, out = run(swaks, served.ports("submission")[0], "-tls")
    assert code == SWAKS_MAIL_REFUSED, out
    assert "530" in out


def test_bdat_chunking_delivers(server: tuple[Served, Path], swaks: str) -> None:
    help_text = subprocess.run([swaks, "--help"], capture_output=True, text=True, timeout=60)
    if "bdat" not in help_text.stdout.lower() and "chunking" not in help_text.stdout.lower():
        version = subprocess.run([swaks, "--version"], capture_output=True, text=True, timeout=60)
        first = (version.stdout or version.stderr).strip().splitlines()[0]
        pytest.skip(
            f"BDAT/CHUNKING: no installed peer sends BDAT (this swaks, {first}, has no "
            "option for it; smtp-source and Postfix's smtp client speak only DATA)"
        )
    served, mail = server
    code, out = run(swaks, served.ports("smtp")[0], "--bdat", "--header", "Subject: bdat-1")
    assert code == 0, out
    assert len(stored_for(mail, "user", "bdat-1")) == 1
