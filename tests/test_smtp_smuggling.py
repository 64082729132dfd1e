"""SMTP smuggling (2023): a fake end of data must not let the rest run as commands."""

from __future__ import annotations

import pytest

from mailmodule.smtp import NEED_DATA, DataEnd, ProtocolReply, Reply
from tests.test_smtp_server import OK, Peer

SMUGGLED = b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"


@pytest.mark.parametrize(
    "fake_end",
    [
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\n.\r",
        b"\r\n\x00.\r\n",
    ],
)
def test_fake_end_of_data_keeps_the_smuggled_commands_in_the_body(fake_end: bytes) -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"Subject: test\r\n\r\nTesting" + fake_end + SMUGGLED + b"NO SMUGGLING\r\n.\r\n")
    body, end = peer.body()
    assert isinstance(end, DataEnd)
    assert b"NO SMUGGLING" in body
    assert b"MAIL FROM:<admin@example.org>" in body
    peer.conn.send(OK)
    assert peer.conn.next_event() is NEED_DATA  # nothing left to read as a command


def test_only_the_real_end_of_data_gives_back_the_command_reader() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"Testing\n.\r\nNOOP\r\n\r\n.\r\nNOOP\r\n")
    body, _ = peer.body()
    assert body == b"Testing\r\n.\r\nNOOP\r\n\r\n"
    peer.conn.send(OK)
    event = peer.event()
    assert isinstance(event, ProtocolReply)
    assert event.reply == Reply(code=250, enhanced_code=(2, 0, 0), lines="OK")


def test_bdat_content_with_end_markers_is_only_body() -> None:
    peer = Peer()
    peer.transaction()
    payload = b"x\r\n.\r\n" + SMUGGLED
    peer.feed(b"BDAT %d LAST\r\n" % len(payload) + payload)
    peer.event()
    body, end = peer.body()
    assert body == payload
    assert isinstance(end, DataEnd)
