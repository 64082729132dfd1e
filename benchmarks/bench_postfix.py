"""`mailmodule serve --workers 2` against a real Postfix, under the same smtp-source load:
20 concurrent sessions, 2000 messages of 2 KiB, one connection per message.

Both store every message durably into a Maildir before it counts: ours answers 250 once
the message is fsynced in the Maildir; Postfix answers 250 once it is fsynced in its
queue, and its virtual(8) agent then writes it to the Maildir. So Postfix's rate is taken
at the moment the last message is in the Maildir (its rate at 250 is printed too). Ours
and Postfix alternate, in one run. Skipped, saying why, without smtp-source or Postfix,
or when not root (a Postfix instance needs it).
"""

from __future__ import annotations

import contextlib
import math
import socket
import statistics
import tempfile
import time
from pathlib import Path

import _postfix
from _load import CONFIG, PYTHON, SMTP_SOURCE, count, empty, load, server

SESSIONS = 20
SIZE = 2048
MESSAGES = 2000
ROUNDS = 3
WORKERS = 2
GOAL = 0.9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(maildir: Path, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while count(maildir) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Postfix delivered {count(maildir)} of {n} in {timeout}s")
        time.sleep(0.005)


def main() -> None:
    why = "smtp-source is not installed" if SMTP_SOURCE is None else _postfix.why_not()
    if why is not None:
        print(f"postfix: skipped: {why} (bash .ci/install-peers installs Postfix)")
        return
    with tempfile.TemporaryDirectory(prefix="mailmodule-bench-postfix-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # Postfix's daemons run as the postfix user
        ours_box = base / "ours" / "user"
        for sub in ("new", "cur", "tmp"):
            (ours_box / sub).mkdir(parents=True)
        config = base / "mail.toml"
        config.write_text(CONFIG.format(root=base / "ours"))
        command = [PYTHON, "-m", "mailmodule", "serve", "-c", str(config)]
        command += ["--workers", str(WORKERS)]
        postfix_port = free_port()
        rates: dict[str, list[float]] = {"ours": [], "postfix": [], "postfix-250": []}
        with contextlib.ExitStack() as stack:
            try:
                postfix_box = stack.enter_context(_postfix.running(base / "postfix", postfix_port))
            except RuntimeError as exc:
                print(f"postfix: skipped: could not start a Postfix instance: {exc}")
                return
            ours_port = stack.enter_context(server(command, log=base / "ours.log"))
            for i in range(ROUNDS + 1):  # the first round warms both up
                n = MESSAGES if i else 200
                for kind in ("ours", "postfix") if i % 2 == 0 else ("postfix", "ours"):
                    if kind == "ours":
                        empty(ours_box.parent)
                        elapsed, _ = load(
                            ours_port, messages=n, sessions=SESSIONS, size=SIZE, keep_sessions=False
                        )
                        if count(ours_box) != n:
                            raise RuntimeError(f"ours: {count(ours_box)} of {n} stored")
                        if i:
                            rates["ours"].append(n / elapsed)
                        continue
                    empty(postfix_box.parent)
                    start = time.perf_counter()
                    accepted, _ = load(
                        postfix_port, messages=n, sessions=SESSIONS, size=SIZE, keep_sessions=False
                    )
                    wait_until(postfix_box, n)
                    delivered = time.perf_counter() - start
                    if i:
                        rates["postfix"].append(n / delivered)
                        rates["postfix-250"].append(n / accepted)
        ours = statistics.median(rates["ours"])
        theirs = statistics.median(rates["postfix"])
        at_250 = statistics.median(rates["postfix-250"])
        ratio = math.floor(ours / theirs * 100) / 100  # as printed: 0.899 is no 0.90
        verdict = "MET" if ratio >= GOAL else "NOT MET"
        print(
            f"postfix: smtp-source -s {SESSIONS} -l {SIZE} -m {MESSAGES}, mailmodule serve "
            f"--workers {WORKERS} (Maildir, fsync, 250 when stored) vs Postfix "
            f"{_postfix.version()} (smtpd, queue, virtual(8) into a Maildir; timed until the "
            f"last is in the Maildir): {ratio:.2f}x Postfix's rate ({ours:.0f} vs "
            f"{theirs:.0f} msg/s; Postfix at 250: {at_250:.0f} msg/s, so {ours / at_250:.2f}x; "
            f"goal: >= {GOAL}x) {verdict}",
            flush=True,
        )


if __name__ == "__main__":
    main()
