"""Postfix (Debian's postfix) as the upstream of target.smtp: it reads our client, queues
what we relay and delivers it into a Maildir, as benchmarks/_postfix.py runs it.

That Postfix has SMTPUTF8 off, so it also shows the client reading the offer: an IDN
sender goes as A-labels, a non-ASCII local part is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import _postfix
from mailmodule import Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.metadata import MailOptions
from mailmodule.modules import SMTPTarget
from tests.endpoint_kit import free_port
from tests.modules_kit import build, new_registry

HEADER = Header([("From", "a@bücher.example"), ("Subject", "Relayed")])
BODY = b"Through Postfix.\r\n.one dot\r\n..two dots\r\n"


@pytest.fixture(scope="module")
def postfix() -> Iterator[tuple[Path, int]]:
    """A Postfix on a free loopback port; yields its Maildir and the port."""
    reason = _postfix.why_not()
    if reason is not None:
        pytest.skip(f"{reason}: install it with `bash .ci/install-peers`")
    base = Path(tempfile.mkdtemp(prefix="mailmodule-postfix-"))
    base.chmod(0o755)
    port = free_port()
    try:
        with _postfix.running(base, port) as maildir:
            yield maildir, port
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def delivered(maildir: Path, count: int) -> list[bytes]:
    """The messages in the Maildir once `count` are there (Postfix delivers on its own
    time; 30 seconds at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = sorted((maildir / "new").glob("*")) if (maildir / "new").exists() else []
        if len(found) >= count:
            return [path.read_bytes() for path in found]
        await asyncio.sleep(0.1)
    pytest.fail(f"Postfix delivered fewer than {count} message(s)")


async def test_postfix_takes_what_target_smtp_relays(postfix: tuple[Path, int]) -> None:
    maildir, port = postfix
    target = build(
        new_registry(),
        "target.smtp",
        "postfix",
        {"targets": [f"tcp://127.0.0.1:{port}"], "hostname": "relay.test"},
    )
    assert isinstance(target, SMTPTarget)
    opts = MailOptions(body="8BITMIME", utf8=True, size=len(BODY))
    for rcpt in ("joe@example.org", "ann@example.org"):
        delivery = await target.start(MsgMetadata(id="m1", smtp_opts=opts), "a@bücher.example")
        await delivery.add_rcpt(rcpt)
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()
    with pytest.raises(SMTPError) as refused:
        await target.start(MsgMetadata(id="m2", smtp_opts=opts), "jöe@example.org")
    target.close()

    assert (refused.value.code, refused.value.enhanced_code) == (550, (5, 6, 7))
    messages = await delivered(maildir, 2)
    for data in messages:
        assert b"Return-Path: <a@xn--bcher-kva.example>" in data
        assert b"by postfix.bench" in data  # Postfix's own Received field
        assert data.replace(b"\r\n", b"\n").endswith(BODY.replace(b"\r\n", b"\n"))
    rcpts = sorted(
        line for m in messages for line in m.split(b"\n") if line.startswith(b"Delivered-To:")
    )
    assert rcpts == [b"Delivered-To: ann@example.org", b"Delivered-To: joe@example.org"]


async def test_postfix_size_limit_is_honoured_before_sending(postfix: tuple[Path, int]) -> None:
    _maildir, port = postfix
    target = build(
        new_registry(), "target.smtp", "postfix", {"targets": [f"tcp://127.0.0.1:{port}"]}
    )
    assert isinstance(target, SMTPTarget)
    huge = MailOptions(size=1 << 40)
    with pytest.raises(SMTPError) as info:
        await target.start(MsgMetadata(id="m", smtp_opts=huge), "a@example.net")
    target.close()
    assert (info.value.code, info.value.enhanced_code) == (552, (5, 3, 4))
