"""target.queue as a server builds it: settings, durability at commit, its own thread."""

from __future__ import annotations

import asyncio
import mailbox
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailmodule import Registry
from mailmodule.buffer import MemoryBuffer
from mailmodule.errors import ModuleInitError, SMTPError
from mailmodule.header import Header
from mailmodule.metadata import MsgMetadata, QueueMetadata
from mailmodule.modules.queue import QueueStore, QueueTarget
from tests.modules_kit import build, new_registry
from tests.queue_kit import ScriptedTarget, files, queue_message, stage_only, temporary


def wait_until(found: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for the queue's thread to get there; fail (not time) if it never does."""
    deadline = time.monotonic() + timeout
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError("the queue never got there")
        time.sleep(0.01)


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = new_registry()
    yield reg
    reg.close_all()


def queue(registry: Registry, tmp_path: Path, **settings: object) -> QueueTarget:
    values: dict[str, object] = {
        "target": "&local",
        "location": str(tmp_path / "queue"),
        "post_init_delay": "0s",
        "hostname": "mx.example.org",
    }
    values.update(settings)
    built = build(registry, "target.queue", "outbound", values)
    assert isinstance(built, QueueTarget)
    return built


def maildir(registry: Registry, tmp_path: Path) -> None:
    build(registry, "target.maildir", "local", {"root": str(tmp_path / "mail"), "autocreate": True})


def scripted(registry: Registry, answer: Callable[[str], Exception | None]) -> ScriptedTarget:
    target = ScriptedTarget(answer)
    registry.register_instance(target)
    registry.register_alias("local", "scripted")
    return target


async def send(q: QueueTarget, *rcpts: str, meta: MsgMetadata | None = None) -> None:
    delivery = await q.start(
        meta or MsgMetadata(id="m1", original_from="ann@example.net"), "ann@example.net"
    )
    for rcpt in rcpts:
        await delivery.add_rcpt(rcpt)
    await delivery.body(Header([("Subject", "queued")]), MemoryBuffer(b"Hello.\r\n"))
    await delivery.commit()


def messages(tmp_path: Path, box: str, folder: str | None = None) -> list[bytes]:
    md = mailbox.Maildir(tmp_path / "mail" / box, create=False)
    if folder is not None:
        md = md.get_folder(folder)
    return [m.as_bytes() for m in md]


async def test_a_committed_message_is_on_disk_in_maddys_layout(
    registry: Registry, tmp_path: Path
) -> None:
    scripted(registry, lambda rcpt: temporary())
    q = queue(registry, tmp_path)
    await send(q, "joe@example.org")
    store = QueueStore(tmp_path / "queue")
    [message_id] = store.ids()
    meta = store.read_meta(message_id)
    assert meta.from_ == "ann@example.net"
    assert meta.to == ["joe@example.org"]
    assert meta.msg_meta is not None
    assert meta.msg_meta.id == message_id
    assert (tmp_path / "queue" / f"{message_id}.header").read_bytes() == b"Subject: queued\r\n\r\n"
    assert (tmp_path / "queue" / f"{message_id}.body").read_bytes() == b"Hello.\r\n"


async def test_the_queue_delivers_into_the_maildir_in_the_background(
    registry: Registry, tmp_path: Path
) -> None:
    maildir(registry, tmp_path)
    q = queue(registry, tmp_path)
    await send(q, "joe@example.org")
    await asyncio.to_thread(wait_until, lambda: files(tmp_path / "queue") == [])
    [got] = messages(tmp_path, "joe")
    assert b"Subject: queued" in got


async def test_a_quarantined_message_stays_quarantined(registry: Registry, tmp_path: Path) -> None:
    maildir(registry, tmp_path)
    q = queue(registry, tmp_path)
    await send(q, "joe@example.org", meta=MsgMetadata(id="m1", quarantine=True))
    await asyncio.to_thread(wait_until, lambda: files(tmp_path / "queue") == [])
    assert messages(tmp_path, "joe") == []
    assert len(messages(tmp_path, "joe", "Junk")) == 1


async def test_messages_left_on_disk_are_delivered_when_the_queue_starts(
    registry: Registry, tmp_path: Path
) -> None:
    maildir(registry, tmp_path)
    store = QueueStore(tmp_path / "queue")
    queue_message(store, ["joe@example.org"], at=time.time())
    half = stage_only(store, "half")
    half.release()  # a writer that died before its .meta
    queue(registry, tmp_path)
    await asyncio.to_thread(wait_until, lambda: files(tmp_path / "queue") == [])
    assert len(messages(tmp_path, "joe")) == 1


async def test_an_aborted_delivery_leaves_nothing(registry: Registry, tmp_path: Path) -> None:
    scripted(registry, lambda rcpt: None)
    q = queue(registry, tmp_path)
    delivery = await q.start(MsgMetadata(id="m1"), "ann@example.net")
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"x"))
    await delivery.abort()
    assert files(tmp_path / "queue") == []


async def test_a_cancelled_body_then_abort_leaves_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    scripted(registry, lambda rcpt: None)
    q = queue(registry, tmp_path)
    delivery = await q.start(MsgMetadata(id="m1"), "ann@example.net")
    await delivery.add_rcpt("joe@example.org")
    task = asyncio.ensure_future(
        delivery.body(Header([("Subject", "x")]), MemoryBuffer(b"x" * 1_000_000))
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await delivery.abort()
    assert files(tmp_path / "queue") == []


async def test_commit_without_a_body_is_refused(registry: Registry, tmp_path: Path) -> None:
    scripted(registry, lambda rcpt: None)
    q = queue(registry, tmp_path)
    delivery = await q.start(MsgMetadata(id="m1"), "ann@example.net")
    await delivery.add_rcpt("joe@example.org")
    with pytest.raises(SMTPError, match="commit without a body"):
        await delivery.commit()


async def test_a_bounce_target_gets_the_report(registry: Registry, tmp_path: Path) -> None:
    maildir(registry, tmp_path)
    build(
        registry,
        "target.maildir",
        "senders",
        {"root": str(tmp_path / "bounces"), "autocreate": True},
    )
    refuse = ScriptedTarget(lambda rcpt: SMTPError(550, (5, 1, 1), "No such user"))
    registry.register_instance(refuse)
    registry.register_alias("refusing", "scripted")
    q = queue(registry, tmp_path, target="&refusing", bounce="&senders")
    await send(q, "joe@example.org")
    await asyncio.to_thread(wait_until, lambda: files(tmp_path / "queue") == [])
    [report] = mailbox.Maildir(tmp_path / "bounces" / "ann", create=False)
    assert report.get_content_type() == "multipart/report"
    assert "No such user" in report.as_string()


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"target": ["&local", "&local"]}, "target", "one queue per target"),
        ({"location": ""}, "location", "required"),
        ({"retry_time_scale": "fast"}, "retry_time_scale", "expected a number"),
        ({"max_tries": 0}, "max_tries", "at least 1"),
        ({"autogenerated_msg_domain": "not a domain"}, "autogenerated_msg_domain", "domain"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    registry: Registry, tmp_path: Path, settings: dict[str, object], key: str, message: str
) -> None:
    maildir(registry, tmp_path)
    with pytest.raises(ModuleInitError, match=message) as caught:
        queue(registry, tmp_path, **settings)
    assert getattr(caught.value.__cause__, "key", None) == key


def test_the_retry_schedule_defaults_to_maddys(registry: Registry, tmp_path: Path) -> None:
    maildir(registry, tmp_path)
    q = queue(registry, tmp_path)
    assert (q.policy.initial, q.policy.scale, q.policy.max_tries) == (900.0, 1.2, 20)
    assert q.max_parallelism == 16


def test_the_meta_the_queue_writes_is_what_maddy_reads(tmp_path: Path) -> None:
    """Our files use the one codec that reads and writes maddy's documents byte for byte."""
    store = QueueStore(tmp_path / "queue")
    message_id = queue_message(store, ["joe@example.org"])
    data = (tmp_path / "queue" / f"{message_id}.meta").read_bytes()
    assert QueueMetadata.from_json(data).to_json() == data
    assert data.startswith(b'{"MsgMeta":{"ID":"m1"')
    assert data.endswith(b"}\n")
