from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from mailmodule import ConnState, Header, MemoryBuffer, MsgMetadata
from mailmodule.buffer import Buffer
from mailmodule.errors import ConfigError, FilterError, ModuleInitError
from mailmodule.interfaces import IMAPFilter
from mailmodule.modules import CommandFilter
from mailmodule.modules.imap_filters import OUTPUT_LIMIT, run_imap_filters
from tests.modules_kit import build, new_registry

BODY = b"Hello.\r\n"


def script(tmp_path: Path, text: str, name: str = "filter") -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{text}")
    path.chmod(0o700)
    return str(path)


def command_filter(command: object, **settings: object) -> CommandFilter:
    built = build(new_registry(), "imap.filter.command", "f", {"command": command, **settings})
    assert isinstance(built, CommandFilter)
    return built


def header(subject: str = "Hi") -> Header:
    return Header([("Subject", subject), ("From", "a@example.org")])


def run(
    f: IMAPFilter, meta: MsgMetadata | None = None, subject: str = "Hi"
) -> tuple[str, list[str]]:
    return f.imap_filter(
        "joe", "joe@example.org", meta or MsgMetadata(id="m1"), header(subject), MemoryBuffer(BODY)
    )


def test_the_command_filter_is_an_imap_filter(tmp_path: Path) -> None:
    assert isinstance(command_filter(["true"]), IMAPFilter)


def test_the_first_line_is_the_folder_and_the_rest_are_flags(tmp_path: Path) -> None:
    prog = script(tmp_path, "print('Lists.Python'); print('\\\\Seen'); print(''); print('$Label1')")
    assert run(command_filter([prog])) == ("Lists.Python", ["\\Seen", "$Label1"])


def test_an_empty_first_line_keeps_the_folder(tmp_path: Path) -> None:
    prog = script(tmp_path, "print(); print('\\\\Flagged')")
    assert run(command_filter([prog])) == ("", ["\\Flagged"])


def test_no_output_changes_nothing(tmp_path: Path) -> None:
    assert run(command_filter(["true"])) == ("", [])


def test_the_message_is_on_standard_input(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    prog = script(tmp_path, f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())")
    run(command_filter([prog]))
    assert out.read_bytes() == header().to_bytes() + BODY


def test_placeholders_are_replaced_in_arguments_never_through_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    prog = script(
        tmp_path, f"import sys, json; open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))"
    )
    meta = MsgMetadata(
        id="m1",
        original_from="a@example.org",
        original_rcpts={"joe@example.org": "alias@example.org"},
        conn=ConnState(remote_addr="192.0.2.1:25", hostname="mx.example.org", auth_user="ann"),
    )
    f = command_filter(
        [
            prog,
            "{account_name}",
            "to={rcpt_to}",
            "{original_rcpt_to}",
            "{sender}",
            "{subject}",
            "{msg_id}",
            "{auth_user}",
            "{source_ip}",
            "{source_host}",
            "{source_rdns}",
            "{unknown}",
        ]
    )
    run(f, meta, subject="$(touch pwned); `id` > x")
    assert out.read_text() == (
        '["joe", "to=joe@example.org", "alias@example.org", "a@example.org", '
        '"$(touch pwned); `id` > x", "m1", "ann", "192.0.2.1", "mx.example.org", "", '
        '"{unknown}"]'
    )
    assert not (tmp_path / "pwned").exists()


def test_the_program_name_is_not_expanded(tmp_path: Path) -> None:
    with pytest.raises(ModuleInitError) as info:
        command_filter(["{account_name}"])
    assert isinstance(info.value.__cause__, ConfigError)


def test_a_missing_program_is_refused_at_init(tmp_path: Path) -> None:
    with pytest.raises(ModuleInitError, match="not an executable"):
        command_filter([str(tmp_path / "nope")])
    with pytest.raises(ModuleInitError, match="missing"):
        command_filter([])


def test_the_command_may_be_given_inline_as_in_maddy(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys; print(sys.argv[1])")
    registry = new_registry()
    inline = registry.get("imap.filter.command")(
        "imap.filter.command", "f", [], [prog, "{account_name}"]
    )
    registry.register_instance(inline, {})
    built = registry.get_instance("f")
    assert isinstance(built, CommandFilter)
    assert run(built) == ("joe", [])


def test_the_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    prog = script(tmp_path, "import os; print(); print(*sorted(os.environ), sep='\\n')")
    _folder, names = run(command_filter([prog]))
    assert "SECRET_TOKEN" not in names
    assert set(names) <= {"PATH", "LC_ALL", "LC_CTYPE"}


def test_a_failing_command_raises_a_filter_error_with_its_stderr(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys; print('Junk'); sys.stderr.write('broken'); sys.exit(3)")
    with pytest.raises(FilterError, match="exit code 3: broken") as info:
        run(command_filter([prog]))
    assert info.value.filter_name == "f"


def test_a_command_that_outlives_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(
        tmp_path,
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n",
    )
    with pytest.raises(FilterError, match="timed out"):  # it would sleep 60 s, then exit 0
        run(command_filter([prog], timeout="300ms"))
    for pid in map(int, pids.read_text().split()):
        assert _gone(pid), pid


def test_output_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    prog = script(tmp_path, f"import sys; sys.stdout.write('x' * {OUTPUT_LIMIT * 4})")
    with pytest.raises(FilterError, match="more than"):
        run(command_filter([prog]))


def test_a_command_that_does_not_read_its_input_is_fine(tmp_path: Path) -> None:
    prog = script(tmp_path, "print('Archive')")
    big = MemoryBuffer(b"x" * (4 << 20))
    f = command_filter([prog])
    assert f.imap_filter("joe", "joe@example.org", MsgMetadata(), header(), big) == (
        "Archive",
        [],
    )


def test_output_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys; sys.stdout.buffer.write(b'\\xff\\n')")
    with pytest.raises(FilterError, match="UTF-8"):
        run(command_filter([prog]))


class _Fixed:
    def __init__(self, folder: str, flags: list[str], fail: bool = False) -> None:
        self.folder, self.flags, self.fail = folder, flags, fail

    def imap_filter(
        self, account_name: str, rcpt_to: str, meta: MsgMetadata, hdr: Header, body: Buffer
    ) -> tuple[str, list[str]]:
        if self.fail:
            raise FilterError("broken", "always")
        return self.folder, self.flags


def test_filters_combine_as_maddys_group() -> None:
    """The first non-empty folder wins, flags add up, a failing filter is skipped."""
    filters = [
        _Fixed("", ["\\Seen"]),
        _Fixed("", [], fail=True),
        _Fixed("Lists", ["\\Flagged"]),
        _Fixed("Other", ["$X"]),
    ]
    got = run_imap_filters(
        filters, "joe", "joe@example.org", MsgMetadata(), header(), MemoryBuffer(BODY)
    )
    assert got == ("Lists", ["\\Seen", "\\Flagged", "$X"])


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child (a zombie) reaped by nobody: read its state
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return False
