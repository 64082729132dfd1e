"""`target.queue` with `store = "&pgqueue"` and `mailmodule queue` over it, on a real
PostgreSQL, as a configuration file builds them."""

from __future__ import annotations

import asyncio
import logging
import mailbox
import os
import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mailmodule.buffer import MemoryBuffer
from mailmodule.cli import main
from mailmodule.header import Header
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.queue import QueueTarget
from mailmodule.server import Server
from tests.interop.postgres_kit import Postgres, postgres
from tests.interop.test_pgqueue import enqueue, fs_blobs, pg_store
from tests.serve_kit import serving

__all__ = ["postgres"]

CONFIG = """
[modules.bodies]
module = "storage.blob.fs"
root = "{root}/bodies"

[modules.pgqueue]
module = "queue.postgres"
dsn = "{dsn}"
blobs = "&bodies"
lease = "2s"
poll = "1s"

[modules.local]
module = "target.maildir"
root = "{root}/mail"
autocreate = true

[modules.outbound]
module = "target.queue"
target = "&local"
store = "&pgqueue"
post_init_delay = "0s"
"""


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """main() points the root logger at this test's captured stderr: put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def dsn(postgres: Postgres, tmp_path: Path) -> str:
    return postgres.create_database(f"cli{abs(hash(tmp_path)) % 10**9}")


@pytest.fixture
def config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "mail.toml"
    path.write_text(CONFIG.format(root=tmp_path, dsn=dsn))
    return path


def queued(dsn: str, tmp_path: Path, message_id: str) -> str:
    store = pg_store(dsn, fs_blobs(tmp_path / "bodies"))
    try:
        return enqueue(store, message_id)
    finally:
        store.close()


def test_queue_list_show_flush_and_remove_work_over_postgres(
    config: Path, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queued(dsn, tmp_path, "m1")
    assert main(["queue", "-c", str(config), "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()[1:]
    assert line.startswith(f"{message_id}\t")
    assert main(["queue", "-c", str(config), "show", message_id]) == 0
    assert "Subject: hi" in capsys.readouterr().out
    assert main(["queue", "-c", str(config), "flush", message_id]) == 0
    store = pg_store(dsn, fs_blobs(tmp_path / "bodies"))
    try:
        request = store.take_flush()
        assert request is not None
        assert request.ids == {message_id}
    finally:
        store.close()
    assert main(["queue", "-c", str(config), "remove", message_id]) == 0
    assert main(["queue", "-c", str(config), "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ID\tARRIVAL\tTRIES\tFROM\tTO"


def test_removing_a_message_another_server_holds_is_refused(
    config: Path, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queued(dsn, tmp_path, "m1")
    store = pg_store(dsn, fs_blobs(tmp_path / "bodies"))
    try:
        claim = store.claim(message_id)
        assert claim is not None
        assert main(["queue", "-c", str(config), "remove", message_id]) != 0
        assert "being delivered" in capsys.readouterr().err
        claim.release()
    finally:
        store.close()


def test_a_queue_on_postgres_delivers_what_it_accepts(config: Path, tmp_path: Path) -> None:
    server = Server.from_file(str(config))
    try:
        server.register_modules()
        outbound = server.instance("outbound")
        assert isinstance(outbound, QueueTarget)

        async def send() -> None:
            delivery = await outbound.start(
                MsgMetadata(id="m1", original_from="ann@example.net"), "ann@example.net"
            )
            await delivery.add_rcpt("joe@example.org")
            await delivery.body(Header([("Subject", "queued")]), MemoryBuffer(b"Hello.\r\n"))
            await delivery.commit()

        asyncio.run(send())
        box = tmp_path / "mail" / "joe"
        deadline = time.monotonic() + 30
        while not (box.exists() and len(mailbox.Maildir(box, create=False)) == 1):
            assert time.monotonic() < deadline, "never delivered"
            time.sleep(0.05)
    finally:
        server.registry.close_all()


HUNG_SERVER = """
hostname = "mx1.test"

[modules.bodies]
module = "storage.blob.fs"
root = "{root}/bodies"

[modules.pgqueue]
module = "queue.postgres"
dsn = "{dsn}"
blobs = "&bodies"
lease = "1s"
poll = "1s"

[modules.stuck]                    # an upstream that takes connections and never greets
module = "target.smtp"
targets = ["tcp://127.0.0.1:{hung_port}"]

[modules.outbound]
module = "target.queue"
target = "&stuck"
store = "&pgqueue"
post_init_delay = "0s"

[pipeline]
default = {{ targets = ["&outbound"] }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
"""


def test_a_killed_serve_s_message_is_delivered_by_another_server_after_the_lease(
    dsn: str, tmp_path: Path
) -> None:
    """A real `mailmodule serve` accepts a message, claims it, hangs on its upstream and is
    killed with SIGKILL; another server delivers the message once, when the lease ends."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        hung_port = hung.getsockname()[1]
        config = tmp_path / "mx1.toml"
        config.write_text(HUNG_SERVER.format(root=tmp_path, dsn=dsn, hung_port=hung_port))
        with serving(config) as served:
            [port] = served.ports()
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("ann@example.net", ["joe@example.org"], b"Subject: hi\r\n\r\nx\r\n")
            deadline = time.monotonic() + 30
            while not leased(dsn):
                assert time.monotonic() < deadline, "never claimed"
                time.sleep(0.05)
            os.killpg(served.proc.pid, signal.SIGKILL)
            served.proc.wait(30)
    (tmp_path / "other.toml").write_text(CONFIG.format(root=tmp_path, dsn=dsn))
    server = Server.from_file(str(tmp_path / "other.toml"))
    try:
        server.register_modules()
        server.instance("outbound")
        box = tmp_path / "mail" / "joe"
        deadline = time.monotonic() + 30
        while not (box.exists() and len(mailbox.Maildir(box, create=False)) >= 1):
            assert time.monotonic() < deadline, "never delivered"
            time.sleep(0.05)
        time.sleep(1.5)  # longer than a lease: time for a second delivery, were there one
        assert len(mailbox.Maildir(box, create=False)) == 1
    finally:
        server.registry.close_all()


def leased(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(b"SELECT count(*) FROM mailmodule_queue WHERE lease_owner IS NOT NULL")
        return row.fetchone() == (1,)
