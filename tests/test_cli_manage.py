"""`mailmodule creds`, `mailmodule table` and `mailmodule imap-acct` over real configurations:
users files, SQLite databases and Maildir trees on disk, and a real `mailmodule serve`."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pty
import select
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailmodule import ConfigError, PlainUserDB
from mailmodule._manage import EX_CANTCREAT, EX_NOUSER, EX_UNAVAILABLE
from mailmodule.cli import EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_REFUSED, EX_USAGE, main
from mailmodule.modules.pass_table import verify_password
from mailmodule.modules.storage import MaildirStorage
from mailmodule.server import Server
from tests.modules_kit import build, new_registry
from tests.serve_kit import serving, write_config

# Users in a table.file (reloaded at once, for the live server) behind an auth.pass_table
# the submission endpoint authenticates with; a table.sql; a read-only table.static; a
# storage.maildir; an unrelated broken instance and a taken port, that no management
# command may touch.
MANAGE_CONFIG = """
hostname = "mx.test"

[modules.users]
module = "table.file"
file = "{root}/users"
reload_interval = "0s"

[modules.authdb]
module = "auth.pass_table"
table = "&users"

[modules.routes]
module = "table.sql"
dsn = "{root}/routes.db"
init = ["CREATE TABLE IF NOT EXISTS routes (k TEXT PRIMARY KEY, v TEXT NOT NULL)"]
lookup = "SELECT v FROM routes WHERE k = :key"
list = "SELECT k FROM routes ORDER BY k"
set = "INSERT OR REPLACE INTO routes (k, v) VALUES (:key, :value)"
del = "DELETE FROM routes WHERE k = :key"

[modules.aliases]
module = "table.static"
entries = {{ "postmaster" = ["joe@example.org", "ann@example.org"] }}

[modules.mailboxes]
module = "storage.maildir"
root = "{root}/imap"

[modules.local]
module = "target.maildir"
root = "{root}/local"
autocreate = true
{extra}
[pipeline]
default = {{ targets = ["&local"] }}

[[endpoints]]
type = "submission"
listen = ["{listen}"]
rdns = false
auth = "&authdb"
auth_require_tls = false
"""

BROKEN = """
[modules.unrelated]
module = "table.file"
file = "/nonexistent/directory/users"
"""


def manage_config(directory: Path, *, extra: str = "", listen: str = "127.0.0.1:0") -> Path:
    (directory / "mail").mkdir(exist_ok=True)
    return write_config(directory, MANAGE_CONFIG, extra=extra, listen=listen)


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str


def cli(config: Path, *args: str, stdin: bytes = b"") -> Ran:
    """`mailmodule *args -c config` in this process, standard input a pipe holding `stdin`.

    `-c config` goes before a "--" in `args` (after which everything is an operand)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                end = args.index("--") if "--" in args else len(args)
                code = main([*args[:end], "-c", str(config), *args[end:]])
            except SystemExit as exc:  # argparse's usage errors
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved
        root.handlers[:], root.level = handlers, level
    return Ran(code, out.getvalue(), err.getvalue())


def run(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`mailmodule *args -c config` as an operator runs it: a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "mailmodule", *args, "-c", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_users(directory: Path) -> dict[str, str]:
    path = directory / "mail" / "users"
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)


def logs_in(port: int, user: str, password: str) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        try:
            s.login(user, password)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


# creds


def test_creds_create_stores_an_argon2id_hash_and_never_shows_the_password(
    tmp_path: Path,
) -> None:
    config = manage_config(tmp_path)
    created = cli(config, "creds", "create", "joe@example.org", stdin=b"s3cret!\n")
    assert (created.code, created.out, created.err) == (0, "", "")
    stored = stored_users(tmp_path)["joe@example.org"]
    assert stored.startswith("argon2:")
    assert verify_password("s3cret!", stored)
    listed = cli(config, "creds", "list")
    assert (listed.code, listed.out) == (0, "joe@example.org\n")
    assert "s3cret" not in listed.out + listed.err
    assert stored not in listed.out + listed.err


def test_a_created_user_logs_in_to_a_running_server_and_a_removed_one_cannot(
    tmp_path: Path,
) -> None:
    config = manage_config(tmp_path)
    with serving(config) as served:
        port = served.ports("submission")[0]
        assert not logs_in(port, "joe@example.org", "s3cret")
        created = run(config, "creds", "create", "joe@example.org", stdin="s3cret\n")
        assert created.returncode == 0, created.stderr
        assert logs_in(port, "joe@example.org", "s3cret")
        changed = cli(config, "creds", "password", "joe@example.org", "--stdin", stdin=b"n3w\n")
        assert changed.code == 0, changed.err
        assert not logs_in(port, "joe@example.org", "s3cret")
        assert logs_in(port, "joe@example.org", "n3w")
        removed = cli(config, "creds", "remove", "joe@example.org", "--yes")
        assert removed.code == 0, removed.err
        assert not logs_in(port, "joe@example.org", "n3w")


def test_creds_create_refuses_an_existing_user_and_keeps_their_password(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "creds", "create", "joe", stdin=b"first").code == 0
    again = cli(config, "creds", "create", "joe", stdin=b"second")
    assert again.code == EX_CANTCREAT
    assert again.err == "mailmodule: creds create: user 'joe' already exists\n"
    assert verify_password("first", stored_users(tmp_path)["joe"])


def test_creds_password_of_an_unknown_user_is_no_such_user(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    result = cli(config, "creds", "password", "nobody", stdin=b"x")
    assert result.code == EX_NOUSER
    assert "'nobody'" in result.err
    assert stored_users(tmp_path) == {}


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b"", EX_NOINPUT),
        (b"\n", EX_NOINPUT),
        (b"two\nlines\n", EX_DATAERR),
        (b"nul\0inside", EX_DATAERR),
        (b"\xff\xfe not UTF-8", EX_DATAERR),
        (b"x" * 5000, EX_DATAERR),
    ],
)
def test_creds_create_refuses_a_missing_or_malformed_password_and_stores_nothing(
    tmp_path: Path, stdin: bytes, code: int
) -> None:
    config = manage_config(tmp_path)
    result = cli(config, "creds", "create", "joe", stdin=stdin)
    assert result.code == code
    assert result.err.count("\n") == 1
    assert stored_users(tmp_path) == {}


def test_creds_remove_asks_first_and_a_pipe_cannot_answer_without_yes(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "creds", "create", "joe", stdin=b"pw").code == 0
    refused = cli(config, "creds", "remove", "joe", stdin=b"y\n")
    assert refused.code == EX_USAGE
    assert "--yes" in refused.err
    assert "joe" in stored_users(tmp_path)
    assert cli(config, "creds", "remove", "nobody", "--yes").code == EX_NOUSER


def test_creds_chooses_the_only_user_database_or_the_instance_given(tmp_path: Path) -> None:
    extra = (
        '[modules.staff]\nmodule = "table.file"\nfile = "{root}/staff"\n'
        '[modules.staffdb]\nmodule = "auth.pass_table"\ntable = "&staff"\n'
    ).format(root=tmp_path / "mail")
    config = manage_config(tmp_path, extra=extra)
    several = cli(config, "creds", "list")
    assert several.code == EX_USAGE
    assert "authdb, staffdb" in several.err
    assert "--instance" in several.err
    assert cli(config, "creds", "--instance", "staffdb", "create", "ann", stdin=b"pw").code == 0
    assert cli(config, "creds", "list", "--instance", "staffdb").out == "ann\n"
    assert cli(config, "creds", "list", "--instance", "authdb").out == ""


def test_creds_over_an_instance_that_is_no_user_database_says_so(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    result = cli(config, "creds", "list", "--instance", "aliases")
    assert result.code == EX_UNAVAILABLE
    assert result.err == (
        "mailmodule: creds list: instance 'aliases' (table.static) is not a PlainUserDB: "
        "it cannot do that\n"
    )
    unknown = cli(config, "creds", "list", "--instance", "nosuch")
    assert unknown.code == EX_USAGE
    assert "no instance 'nosuch'" in unknown.err


def test_commands_initialize_only_their_instance_and_open_no_socket(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        config = manage_config(tmp_path, extra=BROKEN, listen=f"{host}:{port}")
        assert cli(config, "creds", "create", "joe", stdin=b"pw").code == 0
        assert cli(config, "table", "set", "routes", "k", "v").code == 0
        assert cli(config, "imap-acct", "create", "joe").code == 0
    broken = cli(config, "table", "list", "unrelated")
    assert broken.code == EX_CONFIG
    assert "modules.unrelated" in broken.err


def test_server_instance_initializes_one_instance_and_what_it_refers_to(tmp_path: Path) -> None:
    server = Server.from_file(str(manage_config(tmp_path, extra=BROKEN)))
    kinds = server.register_modules()
    assert kinds["authdb"] == "auth.pass_table"
    assert kinds["unrelated"] == "table.file"
    assert isinstance(server.instance("authdb"), PlainUserDB)
    ready = {name for name, done in server.registry.initialized().items() if done}
    assert ready == {"authdb", "users"}
    with pytest.raises(ConfigError) as info:
        server.instance("unrelated")
    assert (info.value.section, info.value.key) == ("modules.unrelated", "file")
    server.registry.close_all()


def test_a_missing_configuration_file_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    result = run(tmp_path / "none.toml", "creds", "list")
    assert result.returncode == EX_CONFIG
    assert result.stderr.endswith("none.toml': cannot read: No such file or directory\n"), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1


def test_every_management_command_documents_its_exit_codes() -> None:
    for args in (
        ["creds", "--help"],
        ["creds", "create", "--help"],
        ["table", "set", "--help"],
        ["imap-acct", "remove", "--help"],
    ):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
        text = " ".join(out.getvalue().split())
        assert "67 no such user, account or key" in text
        assert "73 the user or account exists already" in text


# On a terminal


class Terminal:
    """A `mailmodule` process whose standard input is a pseudo-terminal, as a person's is."""

    def __init__(self, config: Path, *args: str) -> None:
        self._master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailmodule", *args, "-c", str(config)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # no controlling terminal: getpass reads standard input
        )
        os.close(slave)
        self.said = b""

    def answer(self, prompt: bytes, text: bytes) -> None:
        """Wait for `prompt` on standard error, then type `text` and Enter."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while prompt not in self.said:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                assert chunk, f"ended before asking {prompt!r}: {self.said!r}"
                self.said += chunk
            assert time.monotonic() < deadline, f"never asked {prompt!r}: {self.said!r}"
        self.said = self.said.split(prompt, 1)[1]
        os.write(self._master, text + b"\n")

    def close(self) -> tuple[int, str]:
        """The exit code and the rest of standard error."""
        assert self.proc.stderr is not None
        rest = self.proc.stderr.read()
        code = self.proc.wait(timeout=60)
        os.close(self._master)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, (self.said + rest).decode()


def test_creds_create_on_a_terminal_asks_twice_without_echo(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    typed = Terminal(config, "creds", "create", "joe")
    typed.answer(b"New password: ", b"s3cret")
    typed.answer(b"Once more: ", b"s3cret")
    assert typed.close()[0] == 0
    assert verify_password("s3cret", stored_users(tmp_path)["joe"])
    mistyped = Terminal(config, "creds", "password", "joe")
    mistyped.answer(b"New password: ", b"n3w")
    mistyped.answer(b"Once more: ", b"new")
    code, said = mistyped.close()
    assert code == EX_DATAERR
    assert "the two passwords differ" in said
    assert verify_password("s3cret", stored_users(tmp_path)["joe"])


def test_creds_says_a_user_exists_before_asking_for_a_password(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "creds", "create", "joe", stdin=b"pw").code == 0
    typed = Terminal(config, "creds", "create", "joe")
    code, said = typed.close()
    assert code == EX_CANTCREAT
    assert said == "mailmodule: creds create: user 'joe' already exists\n"
    unknown = Terminal(config, "creds", "password", "ann")
    assert unknown.close() == (EX_NOUSER, "mailmodule: creds password: no such user: 'ann'\n")


def test_a_closed_standard_input_is_an_empty_one(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    command = [sys.executable, "-m", "mailmodule", "creds", "create", "joe", "-c", str(config)]
    closed = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" <&-', *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == EX_NOINPUT
    assert closed.stderr == "mailmodule: creds create: no password on standard input\n"


def test_creds_remove_on_a_terminal_removes_only_after_yes(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "creds", "create", "joe", stdin=b"pw").code == 0
    declined = Terminal(config, "creds", "remove", "joe")
    declined.answer(b"[y/N] ", b"n")
    assert declined.close()[0] == EX_REFUSED
    assert "joe" in stored_users(tmp_path)
    confirmed = Terminal(config, "creds", "remove", "joe")
    confirmed.answer(b"[y/N] ", b"y")
    assert confirmed.close()[0] == 0
    assert stored_users(tmp_path) == {}


# table


@pytest.mark.parametrize("table", ["users", "routes"])
def test_table_set_get_list_remove_round_trip_through_a_real_table(
    tmp_path: Path, table: str
) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "table", "set", table, "joe@example.org", "joe@mx.test").code == 0
    assert (
        cli(config, "table", "set", table, "ann@example.org", "--stdin", stdin=b"ann\n").code == 0
    )
    assert cli(config, "table", "get", table, "joe@example.org").out == "joe@mx.test\n"
    assert cli(config, "table", "get", table, "ann@example.org").out == "ann\n"
    assert cli(config, "table", "list", table).out == "ann@example.org\njoe@example.org\n"
    assert cli(config, "table", "remove", table, "joe@example.org").code == 0
    missing = cli(config, "table", "get", table, "joe@example.org")
    assert missing.code == EX_NOUSER
    assert missing.err == (f"mailmodule: table get: no key 'joe@example.org' in table {table!r}\n")
    assert cli(config, "table", "remove", table, "joe@example.org").code == EX_NOUSER


def test_table_get_never_prints_a_password_hash(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "creds", "create", "joe", stdin=b"pw").code == 0
    shown = cli(config, "table", "get", "users", "joe")
    assert shown.code == 0
    assert shown.out == "(a password hash, not shown: manage it with mailmodule creds)\n"
    assert stored_users(tmp_path)["joe"] not in shown.out + shown.err


def test_table_set_reaches_the_database_a_server_would_read(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "table", "set", "routes", "k", "v\nw").code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "mail" / "routes.db")) as db:
        assert db.execute("SELECT k, v FROM routes").fetchall() == [("k", "v\nw")]


def test_a_read_only_table_reads_but_refuses_changes(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    read = cli(config, "table", "get", "aliases", "postmaster")
    assert (read.code, read.out) == (0, "joe@example.org\nann@example.org\n")
    for args in (["set", "aliases", "k", "v"], ["remove", "aliases", "k"], ["list", "aliases"]):
        refused = cli(config, "table", *args)
        assert refused.code == EX_UNAVAILABLE
        assert "'aliases' (table.static) is not a MutableTable" in refused.err


def test_table_set_takes_its_value_from_argv_or_stdin_not_both(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "table", "set", "routes", "k").code == EX_USAGE
    assert cli(config, "table", "set", "routes", "k", "v", "--stdin", stdin=b"w").code == EX_USAGE
    assert cli(config, "table", "set", "routes", "k", "--stdin").code == EX_NOINPUT
    assert cli(config, "table", "get", "routes", "k").code == EX_NOUSER


def test_a_table_without_the_query_a_change_needs_names_the_missing_setting(
    tmp_path: Path,
) -> None:
    extra = (
        '[modules.lookups]\nmodule = "table.sql"\ndsn = "{root}/routes.db"\n'
        'lookup = "SELECT v FROM routes WHERE k = :key"\n'
    ).format(root=tmp_path / "mail")
    config = manage_config(tmp_path, extra=extra)
    assert cli(config, "table", "set", "routes", "k", "v").code == 0  # creates the table
    assert cli(config, "table", "get", "lookups", "k").out == "v\n"
    refused = cli(config, "table", "set", "lookups", "k", "w")
    assert refused.code == EX_CONFIG
    assert "module 'lookups', key 'set'" in refused.err


# imap-acct


def test_imap_acct_create_list_mboxes_remove(tmp_path: Path) -> None:
    config = manage_config(tmp_path)
    assert cli(config, "imap-acct", "create", "joe@example.org").code == 0
    exists = cli(config, "imap-acct", "create", "joe@example.org")
    assert exists.code == EX_CANTCREAT
    assert exists.err == "mailmodule: imap-acct create: user 'joe@example.org' already exists\n"
    assert cli(config, "imap-acct", "list").out == "joe@example.org\n"
    storage = build(new_registry(), "storage.maildir", "s", {"root": str(tmp_path / "mail/imap")})
    assert isinstance(storage, MaildirStorage)
    storage.get_imap_acct("joe@example.org").create_mailbox_sync("Archive.2026")
    assert cli(config, "imap-acct", "mboxes", "joe@example.org").out == (
        "INBOX\nArchive\nArchive.2026\n"
    )
    assert cli(config, "imap-acct", "mboxes", "ann@example.org").code == EX_NOUSER
    assert cli(config, "imap-acct", "remove", "joe@example.org").code == EX_USAGE
    assert cli(config, "imap-acct", "remove", "joe@example.org", "-y").code == 0
    assert cli(config, "imap-acct", "list").out == ""
    assert cli(config, "imap-acct", "remove", "joe@example.org", "-y").code == EX_NOUSER


# Any input: a faithful round trip or a typed refusal


_NAMES = st.one_of(
    st.text(min_size=0, max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=250, max_size=300),
    st.sampled_from(
        ["joe\nx", "a\0b", "\u202eevil", " joe", "joe\r", "ü@exämple.org", ".", "../x", "a/b"]
    ),
)
_ROUND_TRIP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _refused(result: Ran) -> bool:
    """Whether `result` is a typed refusal: bad data, one line naming the command."""
    return (
        result.code == EX_DATAERR
        and result.out == ""
        and result.err.count("\n") == 1
        and result.err.startswith("mailmodule: ")
    )


@_ROUND_TRIP
@given(name=_NAMES)
@example(name="-joe")  # an operand, not an option
def test_any_imap_account_name_round_trips_or_is_refused(name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = manage_config(Path(folder))
        created = cli(config, "imap-acct", "create", "--", name)
        if created.code == 0:
            assert cli(config, "imap-acct", "list").out == name + "\n"
        else:
            assert _refused(created), created
            assert cli(config, "imap-acct", "list").out == ""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_NAMES)
def test_any_user_name_gets_a_user_or_a_typed_refusal(name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        config = manage_config(directory)
        created = cli(config, "creds", "create", "--", name, stdin=b"pw")
        if created.code == 0:
            assert cli(config, "creds", "list").out == name + "\n"
            assert verify_password("pw", stored_users(directory)[name])
        else:
            assert _refused(created), created
            assert stored_users(directory) == {}


@contextlib.contextmanager
def _config() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield manage_config(Path(folder))


@_ROUND_TRIP
@given(
    table=st.sampled_from(["users", "routes"]),
    key=_NAMES,
    value=st.one_of(st.text(max_size=40), st.text(min_size=1000, max_size=2000)),
    through_stdin=st.booleans(),
)
@example(table="routes", key="-k", value="-:", through_stdin=False)  # not options
def test_any_table_key_and_value_round_trip_or_are_refused(
    table: str, key: str, value: str, through_stdin: bool
) -> None:
    with _config() as config:
        if through_stdin:
            data = value.encode("utf-8", "surrogatepass")
            written = cli(config, "table", "set", "--stdin", "--", table, key, stdin=data + b"\n")
        else:
            written = cli(config, "table", "set", "--", table, key, value)
        read = cli(config, "table", "get", "--", table, key)
        if written.code == 0:
            assert read.out == value + "\n"
        else:
            assert _refused(written) or (written.code == EX_NOINPUT and value == ""), written
            assert read.code in (EX_NOUSER, EX_DATAERR), read
