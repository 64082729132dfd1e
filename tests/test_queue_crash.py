"""Crash safety: `mailmodule serve` killed with SIGKILL under load loses no accepted message.

Each round runs a real server (SMTP endpoint -> target.queue -> target.maildir) with a few
clients sending as fast as they can, and kills it at a moment drawn from a seeded random
generator. A last run restarts the server on the same directories and lets the queue
drain. Every message a client saw 250 for must then be in the mailbox, and the queue
directory must be empty: the leftovers of commits cut short are removed at start.

Delivery is at least once, not exactly once: a kill after the maildir committed a message
and before the queue removed it delivers that message again after the restart (the queue
cannot know the mailbox took it). The test counts such duplicates but does not fail on
them; it fails on a loss.
"""

from __future__ import annotations

import contextlib
import mailbox
import random
import smtplib
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from tests.serve_kit import serving, write_config

CONFIG = """
hostname = "mx.test"

[modules.local]
module = "target.maildir"
root = "{root}"
autocreate = true

[modules.outbound]
module = "target.queue"
target = "&local"
location = "{queue}"
post_init_delay = "0s"

[pipeline]
destinations = {{ "example.org" = {{ targets = ["&outbound"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
"""

ROUNDS = 3
CLIENTS = 4
SEED = 18


class Load:
    """Clients sending numbered messages until the server goes away."""

    def __init__(self, port: int, round_no: int) -> None:
        self.port = port
        self.round_no = round_no
        self.accepted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _client(self, index: int) -> None:
        n = 0
        with (
            contextlib.suppress(OSError, smtplib.SMTPException),
            smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client,
        ):
            while not self._stop.is_set():
                token = f"r{self.round_no}-c{index}-m{n}"
                n += 1
                msg = EmailMessage()
                msg["Subject"] = token
                msg["From"] = "ann@example.net"
                msg["To"] = "joe@example.org"
                msg.set_content(f"message {token}\n" * 20)
                client.send_message(msg)  # raises unless the server said 250
                with self._lock:
                    self.accepted.add(token)

    def join(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def delivered(root: Path) -> list[str]:
    box = root / "joe"
    if not box.exists():
        return []
    return [str(m["Subject"]) for m in mailbox.Maildir(box, create=False)]


def test_no_accepted_message_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    root, queue = tmp_path / "mail", tmp_path / "queue"
    config = write_config(tmp_path, CONFIG, queue=queue)
    rng = random.Random(SEED)
    accepted: set[str] = set()
    for round_no in range(ROUNDS):
        with serving(config) as served:
            [port] = served.ports()
            load = Load(port, round_no)
            load.start()
            time.sleep(rng.uniform(0.2, 1.5))  # the moment of the kill, not a timing claim
            served.proc.kill()
            served.proc.wait(30)
            load.join()
            accepted |= load.accepted
    assert accepted, "no message was accepted before the kills: the load did not run"

    with serving(config) as served:
        served.ports()
        deadline = time.monotonic() + 120
        while not (accepted <= set(delivered(root)) and not list(queue.iterdir())):
            assert time.monotonic() < deadline, (
                f"lost: {sorted(accepted - set(delivered(root)))[:10]}, "
                f"left in the queue: {sorted(p.name for p in queue.iterdir())[:10]}"
            )
            time.sleep(0.05)
        assert served.stop() == 0

    subjects = delivered(root)
    assert accepted <= set(subjects)
    assert sorted(p.name for p in queue.iterdir()) == []
    duplicates = len(subjects) - len(set(subjects))
    print(f"{len(accepted)} accepted, {len(set(subjects))} delivered, {duplicates} twice")
