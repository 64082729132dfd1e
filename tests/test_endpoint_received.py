"""The Received field: what the client said never forges a hop or breaks the field."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import Header
from mailmodule.endpoint._received import protocol_name, received_field, safe_helo
from tests.endpoint_kit import LineClient, delivered, endpoint, to_maildir

MESSAGE = b"From: a@example.net\r\nSubject: Hello\r\n\r\nHi there.\r\n"


def field(helo: str, *, valid: bool, utf8: bool = False, rcpt: str | None = None) -> str:
    return received_field(
        helo=helo,
        helo_valid=valid,
        ip="192.0.2.1",
        rdns="rdns.example",
        hostname="mx.example",
        proto="ESMTPS",
        msg_id="1a2b3c4d",
        rcpt=rcpt,
        utf8=utf8,
    )


def test_a_valid_helo_is_written_as_it_is() -> None:
    value = field("helo.example", valid=True, rcpt="joe@example.org")
    assert value.startswith(
        "from helo.example (rdns.example [192.0.2.1]) by mx.example with ESMTPS id 1a2b3c4d "
        "for <joe@example.org>; "
    )


def test_a_forged_hop_in_helo_stays_inside_one_comment() -> None:
    value = field("evil (forged.bank.example [10.1.2.3]) by mx", valid=False)
    assert value.startswith("from [192.0.2.1] (rdns.example [192.0.2.1] helo=evil??forged")
    before_date = value.rsplit(";", 1)[0]
    assert before_date.count("(") == before_date.count(")") == 1
    assert "[10.1.2.3]" not in value


@given(st.text(max_size=300))
def test_no_helo_puts_syntax_into_the_field(helo: str) -> None:
    from mailmodule.smtp import is_valid_hello_name

    value = field(helo, valid=is_valid_hello_name(helo))
    before_date = value.rsplit("; ", 1)[0]
    assert value.isascii()
    assert not re.search(r"[\r\n;]", before_date)
    assert before_date.count("(") == before_date.count(")") <= 1
    Header([("Received", value)]).to_bytes()  # a valid field


def test_a_non_ascii_helo_is_written_as_a_labels_unless_smtputf8() -> None:
    assert safe_helo("bücher.example", valid=True, utf8=False) == "xn--bcher-kva.example"
    assert safe_helo("bücher.example", valid=True, utf8=True) == "bücher.example"


def test_a_recipient_with_a_semicolon_is_not_named() -> None:
    assert "for <" not in field("h.example", valid=True, rcpt='"a;b"@example.org')


@pytest.mark.parametrize(
    ("lmtp", "esmtp", "tls", "auth", "utf8", "name"),
    [
        (False, False, False, False, False, "SMTP"),
        (False, True, False, False, False, "ESMTP"),
        (False, True, True, False, False, "ESMTPS"),
        (False, True, False, True, False, "ESMTPA"),
        (False, True, True, True, False, "ESMTPSA"),
        (False, True, False, False, True, "UTF8SMTP"),
        (False, True, True, True, True, "UTF8SMTPSA"),
        (True, True, False, False, False, "LMTP"),
        (True, True, True, True, False, "LMTPSA"),
        (True, True, False, False, True, "UTF8LMTP"),
    ],
)
def test_with_names_follow_rfc_3848_and_6531(
    lmtp: bool, esmtp: bool, tls: bool, auth: bool, utf8: bool, name: str
) -> None:
    assert protocol_name(lmtp=lmtp, esmtp=esmtp, tls=tls, auth=auth, utf8=utf8) == name


def send_with_helo(host: str, port: int, helo: bytes) -> str:
    c = LineClient(host, port)
    c.reply()
    c.send(b"EHLO " + helo)
    answer = c.reply()
    if answer.startswith("250"):
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        c.command("DATA")
        c.send(MESSAGE + b".")
        answer = c.reply()
    c.close()
    return answer


async def test_a_forged_helo_reaches_the_maildir_only_made_harmless(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = (await ep.start())[0]
    answer = await asyncio.to_thread(
        send_with_helo, host, port, b"evil (forged.bank.example [10.1.2.3]) by mx.example"
    )
    await ep.stop()
    assert answer.startswith("250 2.0.0")
    received = Header.parse(delivered(tmp_path)[0].read_bytes().split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    value = received.get("Received") or ""
    assert value.startswith("from [127.0.0.1] (localhost [127.0.0.1] helo=evil??forged")
    assert "[10.1.2.3]" not in value


@pytest.mark.parametrize("helo", [b"evil\rname", b"tab\there"])
async def test_a_helo_with_control_characters_is_refused_and_nothing_is_451(
    tmp_path: Path, helo: bytes
) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = (await ep.start())[0]
    answer = await asyncio.to_thread(send_with_helo, host, port, helo)
    await ep.stop()
    assert answer.startswith("501 5.5.4"), answer


async def test_strict_helo_refuses_a_name_that_is_no_domain(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), strict_helo=True)
    host, port = (await ep.start())[0]
    answer = await asyncio.to_thread(send_with_helo, host, port, b"not a domain")
    good = await asyncio.to_thread(send_with_helo, host, port, b"client.example")
    await ep.stop()
    assert answer.startswith("501 5.5.2")
    assert good.startswith("250 2.0.0")
