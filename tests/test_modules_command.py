"""`check.command` against real programs: limits, output, arguments, environment."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmodule import ConnState, Header, MailModuleError, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.modules import CommandCheck
from mailmodule.pipeline import Destination, Pipeline
from tests.modules_kit import build, new_registry
from tests.pipeline_kit import MemoryTarget

# A program that starts a grandchild holding its standard output, records both pids, and
# sleeps: `sh -c "sleep 37; true"` in a portable form.
FAMILY = """
import os, signal, subprocess, sys, time
here = sys.argv[1]
grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[2]])
with open(os.path.join(here, "pids.tmp"), "w") as out:
    out.write(f"{os.getpid()} {grandchild.pid}")
os.rename(os.path.join(here, "pids.tmp"), os.path.join(here, "pids"))
time.sleep(30)
"""
SLEEPER = "import time; time.sleep(30)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"


def command(tmp_path: Path, argv: object, **extra: object) -> CommandCheck:
    check = build(new_registry(), "check.command", "filter", {"command": argv, **extra})
    assert isinstance(check, CommandCheck)
    return check


def printing(tmp_path: Path, output: bytes, **extra: object) -> CommandCheck:
    """A command that reads its input, prints `output` and exits 0."""
    script = tmp_path / "print.py"
    script.write_text(f"import sys\nsys.stdin.buffer.read()\nsys.stdout.buffer.write({output!r})\n")
    return command(tmp_path, [sys.executable, str(script)], **extra)


async def send(
    check: CommandCheck, body: bytes = b"hi\r\n", sender: str = "a@example.org"
) -> Header:
    """Deliver one message through `check`; the header as the target stored it."""
    target = MemoryTarget()
    pipeline = Pipeline(checks=[check], default=Destination(targets=[target]))
    delivery = await pipeline.start(MsgMetadata(id="m", conn=ConnState()), sender)
    await delivery.add_rcpt("b@example.org")
    try:
        await delivery.body(Header([("Subject", "x")]), MemoryBuffer(body))
    except SMTPError:
        await delivery.abort()
        raise
    await delivery.commit()
    return Header.parse(target.messages[0].header)


async def refused(
    check: CommandCheck, body: bytes = b"hi\r\n", sender: str = "a@x.org"
) -> SMTPError:
    with pytest.raises(SMTPError) as info:
        await asyncio.wait_for(send(check, body, sender), 20)
    return info.value


def running(pid: int) -> bool:
    """True while `pid` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def until(condition: Callable[[], bool], attempts: int = 200) -> bool:
    for _ in range(attempts):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def pids_of(here: Path) -> tuple[int, int]:
    assert await until(lambda: (here / "pids").exists(), 1000)
    child, grandchild = (here / "pids").read_text().split()
    return int(child), int(grandchild)


# The time limit


@pytest.mark.parametrize("grandchild", [SLEEPER, STUBBORN], ids=["sleeping", "ignoring-sigterm"])
async def test_the_time_limit_kills_the_whole_process_group_promptly(
    tmp_path: Path, grandchild: str
) -> None:
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    check = command(
        tmp_path, [sys.executable, str(script), str(tmp_path), grandchild], timeout="500ms"
    )
    error = await refused(check)
    assert (error.code, error.enhanced_code, error.check_name) == (451, (4, 7, 0), "filter")
    assert "filter" in error.message
    child, grandchild_pid = await pids_of(tmp_path)
    assert not Path(f"/proc/{child}").exists()  # exited and reaped: no zombie
    assert await until(lambda: not running(grandchild_pid))


async def test_a_shell_whose_sleep_outlives_it_answers_at_the_limit(tmp_path: Path) -> None:
    """The measured case: `sh -c "sleep 37; true"` with a 1s limit answered after 37 s."""
    error = await refused(command(tmp_path, ["sh", "-c", "sleep 37; true"], timeout="1s"))
    assert (error.code, error.enhanced_code) == (451, (4, 7, 0))


async def test_cancelling_the_check_kills_the_process_group(tmp_path: Path) -> None:
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    check = command(tmp_path, [sys.executable, str(script), str(tmp_path), STUBBORN])
    state = await check.check_state_for_msg(MsgMetadata(id="m"))
    task = asyncio.create_task(state.check_body(Header(), MemoryBuffer(b"hi")))
    child, grandchild = await pids_of(tmp_path)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)  # not once the grandchild gives up
    assert task in done
    assert task.cancelled()
    assert await until(lambda: not Path(f"/proc/{child}").exists())
    assert await until(lambda: not running(grandchild))


# What the command prints


async def test_only_the_header_part_of_the_output_becomes_fields(tmp_path: Path) -> None:
    output = b"X-Verdict: clean\n\nX-Body-Line: yes\nAuthentication-Results: mx; dkim=pass\n"
    stored = await send(printing(tmp_path, output))
    assert [f.name for f in stored] == ["X-Verdict", "Subject"]


async def test_cat_turns_no_body_line_into_a_field(tmp_path: Path) -> None:
    """The measured case: a body line `Authentication-Results: ...` became a field."""
    body = b"Authentication-Results: mx.example.org; dkim=pass\r\n"
    stored = await send(command(tmp_path, ["cat"]), body=body)
    assert "Authentication-Results" not in stored
    assert stored.values("subject") == ["x", "x"]  # cat gives the header back, once


@pytest.mark.parametrize(
    "name",
    [
        "Authentication-Results",
        "Received",
        "Return-Path",
        "DKIM-Signature",
        "ARC-Seal",
        "arc-message-signature",
        "ARC-Authentication-Results",
    ],
)
async def test_trace_and_authentication_fields_from_a_command_are_dropped(
    tmp_path: Path, name: str
) -> None:
    output = f"X-Before: 1\n{name}: mx.example.org; dkim=pass\nX-After: 2\n".encode()
    stored = await send(printing(tmp_path, output))
    assert name not in stored
    assert [f.name for f in stored] == ["X-Before", "X-After", "Subject"]


async def test_folded_output_fields_are_read_whole(tmp_path: Path) -> None:
    stored = await send(printing(tmp_path, b"X-Report: first\n\tsecond\nX-Next: n\n"))
    assert stored.get("x-report") == "first\tsecond"
    assert stored.get("x-next") == "n"


async def test_output_fields_get_crlf_also_without_a_final_newline(tmp_path: Path) -> None:
    stored = await send(printing(tmp_path, b"X-A: 1\nX-B: 2"))
    assert stored.to_bytes() == b"X-A: 1\r\nX-B: 2\r\nSubject: x\r\n\r\n"


@pytest.mark.parametrize(
    "output",
    [
        b"no colon here\n",
        b"Bad Name: x\n",
        b" starts folded\n",
        b"X-A: one\rX-Smuggled: yes\n",
        b"X-A: nul\0\n",
        b"X-A: 1\n: empty name\n\nbody\n",
    ],
)
async def test_a_malformed_header_part_is_a_temporary_failure(
    tmp_path: Path, output: bytes
) -> None:
    error = await refused(printing(tmp_path, output))
    assert (error.code, error.enhanced_code) == (451, (4, 7, 0))


async def test_a_header_part_over_the_limit_is_a_temporary_failure(tmp_path: Path) -> None:
    check = printing(tmp_path, b"X-Filler: " + b"y" * 2000 + b"\n\n", max_header_size="1K")
    error = await refused(check)
    assert (error.code, error.enhanced_code) == (451, (4, 7, 0))
    assert await send(printing(tmp_path, b"X-Small: y\n\n", max_header_size="1K"))


# A program that prints argv[2], then argv[3] lines in ten batches; before each batch it
# asks the socket at argv[1] for a tick: it can finish only if the loop keeps ticking.
TICKED = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sys.stdin.buffer.read()
out = sys.stdout.buffer
out.write(sys.argv[2].encode().decode("unicode_escape").encode())
for _ in range(10):
    sock.sendall(b"?")
    assert sock.recv(1)
    out.write(b"X-Line: 1\\n" * (int(sys.argv[3]) // 10))
out.flush()
"""


@pytest.mark.parametrize(
    ("head", "fields"), [("X-First: 1\\n\\n", ["X-First", "Subject"]), ("", None)]
)
async def test_a_million_lines_give_a_bounded_result_while_the_loop_keeps_ticking(
    tmp_path: Path, head: str, fields: list[str] | None
) -> None:
    """With an empty line first the rest is discarded; without, the header is too large."""
    script = tmp_path / "ticked.py"
    script.write_text(TICKED)
    path = str(tmp_path / "tick.sock")
    ticks = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ticks
        while await reader.read(1):  # a request: answered one tick of the loop later
            await asyncio.sleep(0.01)
            ticks += 1
            writer.write(b"t")
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path)
    async with server:
        check = command(
            tmp_path, [sys.executable, str(script), path, head, "1000000"], timeout="60s"
        )
        if fields is None:
            error = await refused(check)
            assert (error.code, error.enhanced_code) == (451, (4, 7, 0))
        else:
            stored = await asyncio.wait_for(send(check), 60)
            assert [f.name for f in stored] == fields
            assert ticks >= 10  # every batch of output waited for a tick of the loop
        server.close()


# Arguments


@pytest.mark.parametrize(
    "argv",
    [
        "sh -c 'touch {sender}'",
        ["sh", "-c", "echo {rcpts}"],
        ["prog", "--from={sender}"],
        ["{sender}"],
        [sys.executable, "-c", "print('{auth_user}')"],
    ],
)
def test_a_placeholder_inside_an_argument_is_refused_at_configuration(
    tmp_path: Path, argv: object
) -> None:
    with pytest.raises(MailModuleError, match="whole argument"):
        command(tmp_path, argv)


def test_braces_that_name_no_placeholder_are_kept() -> None:
    check = CommandCheck()
    check.argv = ["awk", "{print}", "{nope}", "--", "{sender}"]
    assert check.expand({"sender": "-x@y"}) == ["awk", "{print}", "{nope}", "--", "-x@y"]


async def test_a_shell_gets_placeholders_as_positional_parameters_unexpanded(
    tmp_path: Path,
) -> None:
    sender = f'"$(touch {tmp_path}/pwned)"@example.com'
    argv = ["sh", "-c", 'printf "X-Got: %s\\n" "$1"', "sh", "{sender}"]
    stored = await send(command(tmp_path, argv), sender=sender)
    assert stored.get("x-got") == sender
    assert not (tmp_path / "pwned").exists()


ECHO_ARGS = """
import sys
sys.stdin.buffer.read()
print("X-Args:", " | ".join(sys.argv[1:]))
open(sys.argv[0] + ".ran", "w").close()
"""


@pytest.mark.parametrize(
    "sender", ["--output=/etc/x@example.com", "-x@example.com", "-@example.org"]
)
async def test_a_value_that_looks_like_an_option_is_refused_before_anything_runs(
    tmp_path: Path, sender: str
) -> None:
    script = tmp_path / "echo.py"
    script.write_text(ECHO_ARGS)
    error = await refused(
        command(tmp_path, [sys.executable, str(script), "{sender}"]), sender=sender
    )
    assert (error.code, error.enhanced_code) == (550, (5, 7, 1))
    assert not (tmp_path / "echo.py.ran").exists()


async def test_a_value_after_double_dash_may_start_with_a_dash(tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text(ECHO_ARGS)
    check = command(tmp_path, [sys.executable, str(script), "-v", "--", "{sender}", "{rcpts}"])
    stored = await send(check, sender="-x@example.com")
    assert stored.get("x-args") == "-v | -- | -x@example.com | b@example.org"


placeholder_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["sender", "rcpts", "msg_id"]), placeholder_values))
def test_expansion_keeps_the_argument_count_and_passes_no_option(
    values: Mapping[str, str],
) -> None:
    full = {"sender": "", "rcpts": "", "msg_id": "", **values}
    check = CommandCheck()
    check.argv = ["prog", "-f", "{sender}", "{rcpts}", "--", "{msg_id}"]
    argv = check.expand(full)
    unsafe = any("\0" in v for v in full.values()) or any(
        full[k].startswith("-") for k in ("sender", "rcpts")
    )
    if argv is None:
        assert unsafe
        return
    assert not unsafe
    assert argv == ["prog", "-f", full["sender"], full["rcpts"], "--", full["msg_id"]]


# The environment


ENV = """
import os, sys
sys.stdin.buffer.read()
print("X-Env:", ",".join(sorted(os.environ)))
print("X-Foo:", os.environ.get("FOO", ""))
print("X-Fd-Open:", "yes" if os.path.exists(f"/proc/self/fd/{sys.argv[1]}") else "no")
"""


async def test_the_command_gets_a_minimal_environment_and_no_other_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "s3cret")
    script = tmp_path / "env.py"
    script.write_text(ENV)
    fd = os.open(tmp_path / "env.py", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        check = command(tmp_path, [sys.executable, str(script), str(fd)], env={"FOO": "bar"})
        stored = await send(check)
    finally:
        os.close(fd)
    names = set(stored.get("x-env", "").split(",")) - {"LC_CTYPE"}  # Python may set it
    assert names == {
        "PATH",
        "LANG",
        "LC_ALL",
        "FOO",
        "MAILMODULE_SENDER",
        "MAILMODULE_RCPTS",
        "MAILMODULE_MSG_ID",
        "MAILMODULE_AUTH_USER",
        "MAILMODULE_REMOTE_IP",
        "MAILMODULE_SOURCE_IP",
        "MAILMODULE_SOURCE_HOST",
    }
    assert stored.get("x-foo") == "bar"
    assert stored.get("x-fd-open") == "no"


@pytest.mark.parametrize("env", [["FOO=bar"], {"BAD NAME": "x"}, {"FOO": 1}, {"FOO": "a\0b"}])
def test_a_malformed_env_setting_is_refused(tmp_path: Path, env: object) -> None:
    with pytest.raises(MailModuleError, match=r"NAME = .value.|holds a NUL"):
        command(tmp_path, ["true"], env=env)
