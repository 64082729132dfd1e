"""`mailmodule serve --workers N`: the supervisor of worker processes, and the real thing."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mailmodule import cli
from mailmodule._workers import EX_SOFTWARE, Supervisor
from tests.endpoint_kit import delivered
from tests.serve_kit import Served, serving, write_config

ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# The supervisor, with fake workers (tests/workers_kit.py) in a process of their own


@pytest.fixture
def fake_workers(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[subprocess.Popen[str]] = []

    def start(behaviour: str, *args: str) -> Served:
        command = [sys.executable, "-m", "tests.workers_kit", behaviour, *args]
        command += ["--marker", str(tmp_path / "marker")]
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        started.append(proc)
        return Served(proc)

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def started(n: int) -> Callable[[Sequence[str]], bool]:
    return lambda lines: sum(" started (pid " in line for line in lines) >= n


def test_supervisor_refuses_fewer_than_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Supervisor(lambda index: 0, workers=0)


def test_the_cli_and_the_supervisor_agree_on_the_exit_code_of_failed_workers() -> None:
    assert cli.EX_SOFTWARE == EX_SOFTWARE == 70


def test_sigterm_stops_every_worker_and_exits_0(fake_workers: Callable[..., Served]) -> None:
    served = fake_workers("graceful", "--workers", "3")
    served.wait_for(started(3))
    pids = served.worker_pids()
    assert all(parent_of(pid) == served.proc.pid for pid in pids)
    assert served.stop(timeout=10) == 0
    assert not any(alive(pid) for pid in pids)


def test_sigint_stops_the_workers_too(fake_workers: Callable[..., Served]) -> None:
    served = fake_workers("graceful")
    served.wait_for(started(2))
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(10) == 0


def test_a_killed_worker_is_replaced(fake_workers: Callable[..., Served]) -> None:
    served = fake_workers("graceful")
    served.wait_for(started(2))
    victim = served.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    served.wait_for(started(3))
    assert any("exited unexpectedly with exit code 137" in line for line in served.lines)
    pids = served.worker_pids()
    assert all(alive(pid) for pid in pids[1:])
    assert served.stop(timeout=10) == 0


def test_a_worker_dying_once_is_restarted_and_the_run_still_ends_cleanly(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("flaky")
    served.wait_for(started(3))
    assert any("restarting worker 0" in line for line in served.lines)
    assert served.stop(timeout=10) == 0


def test_workers_that_keep_dying_make_the_supervisor_give_up_with_their_exit_code(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("fail", "--max-restarts", "3")
    assert served.proc.wait(20) == 1
    served.wait_for(lambda lines: any("giving up: too many restarts" in x for x in lines))
    assert sum("restarting worker" in line for line in served.lines) == 3


def test_a_worker_with_a_configuration_error_is_not_restarted(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("config", "--workers", "1")
    assert served.proc.wait(20) == cli.EX_CONFIG
    served.wait_for(lambda lines: any("giving up: it cannot run" in x for x in lines))
    assert not any("restarting" in line for line in served.lines)


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("stubborn", "--grace", "0.5")
    served.wait_for(started(2))
    begin = time.monotonic()
    assert served.stop(timeout=10) == EX_SOFTWARE
    assert time.monotonic() - begin < 5
    assert any("still busy after 0.5s: killed" in line for line in served.lines)


def test_a_worker_that_fails_while_stopping_makes_the_exit_code_say_so(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("fail-on-stop")
    served.wait_for(started(2))
    assert served.stop(timeout=10) == EX_SOFTWARE


def test_workers_stop_when_their_supervisor_is_killed(
    fake_workers: Callable[..., Served],
) -> None:
    served = fake_workers("graceful")
    served.wait_for(started(2))
    pids = served.worker_pids()
    served.proc.kill()
    served.proc.wait(10)
    assert eventually(lambda: not any(alive(pid) for pid in pids))


# The command line


def test_serve_refuses_fewer_than_one_worker(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "serve", "-c", "x.toml", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == cli.EX_USAGE
    assert "at least 1" in result.stderr


def test_serve_with_workers_refuses_a_bad_configuration_before_forking(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[modules.x]\nmodule = 'table.statik'\n")
    result = subprocess.run(
        [sys.executable, "-m", "mailmodule", "serve", "-c", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == cli.EX_CONFIG
    assert "modules.x" in result.stderr
    assert "started" not in result.stdout


# The real thing: `mailmodule serve --workers 2`


def send(port: int, count: int, threads: int = 8) -> None:
    """`count` messages, one connection each, from `threads` threads."""

    def one(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail("a@example.net", [f"user{n % 4}@example.org"], f"Subject: {n}\r\n\r\nx\r\n")

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))


def served_by(root: Path) -> set[int]:
    """The pids that wrote the messages in the maildirs under `root` (their names say)."""
    return {int(p.name.split("P", 1)[1].split("Q", 1)[0]) for p in delivered(root)}


def test_two_workers_share_the_sockets_and_both_deliver_messages(tmp_path: Path) -> None:
    with serving(write_config(tmp_path), "--workers", "2") as served:
        (port,) = served.ports()
        served.wait_for(started(2))
        pids = served.worker_pids()
        assert len(pids) == 2
        assert all(alive(pid) and parent_of(pid) == served.proc.pid for pid in pids)
        send(port, 40)
        assert len(delivered(tmp_path / "mail")) == 40
        sent = 40
        while len(served_by(tmp_path / "mail")) < 2 and sent < 200:
            send(port, 20)  # the kernel chose one worker for all so far: rare, but not wrong
            sent += 20
        assert len(delivered(tmp_path / "mail")) == sent
        assert served_by(tmp_path / "mail") == set(pids)
        assert served.stop() == 0


def test_sigterm_stops_every_worker_within_seconds_with_exit_code_0(tmp_path: Path) -> None:
    with serving(write_config(tmp_path), "--workers", "2") as served:
        (port,) = served.ports()
        served.wait_for(started(2))
        send(port, 2)
        pids = served.worker_pids()
        begin = time.monotonic()
        assert served.stop(timeout=10) == 0
        assert time.monotonic() - begin < 5
        assert not any(alive(pid) for pid in pids)
        assert sum("shutting down" in line for line in served.lines) == 2, served.lines


def test_a_killed_worker_is_replaced_by_one_that_serves(tmp_path: Path) -> None:
    with serving(write_config(tmp_path), "--workers", "2") as served:
        (port,) = served.ports()
        served.wait_for(started(2))
        first, second = served.worker_pids()
        os.kill(first, signal.SIGKILL)
        served.wait_for(started(3))
        replacement = served.worker_pids()[2]
        assert alive(replacement)
        assert parent_of(replacement) == served.proc.pid
        os.kill(second, signal.SIGSTOP)  # only the replacement can accept now
        try:
            send(port, 4, threads=2)
        finally:
            os.kill(second, signal.SIGCONT)
        assert served_by(tmp_path / "mail") == {replacement}
        assert served.stop() == 0
