"""The message reader: the header within caps, the body streamed, nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import SMTPError
from mailmodule.buffer import read_all
from mailmodule.endpoint._body import MessageReader
from mailmodule.header import read_header


def reader(tmp_path: Path, **caps: int) -> MessageReader:
    settings = {"max_header_size": 1024, "max_header_fields": 10, "max_memory": 16, **caps}
    return MessageReader(directory=tmp_path, **settings)


@given(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")))
def test_any_split_gives_the_header_and_body_of_the_whole(data: bytes) -> None:
    message = b"Subject: hi\r\nTo: b@x\r\n\r\n" + data
    for cut in (0, 1, 5, 20, 23, 24, 25, len(message)):
        r = MessageReader(max_header_size=1024, max_header_fields=10, max_memory=8)
        r.feed(message[:cut])
        r.feed(message[cut:])
        header, body = r.finish()
        expected, offset = read_header(message)
        assert header == expected
        assert read_all(body) == message[offset:]
        body.remove()


def test_a_header_over_its_size_cap_is_refused_naming_it(tmp_path: Path) -> None:
    r = reader(tmp_path, max_header_size=100)
    r.feed(b"Subject: " + b"x" * 200 + b"\r\n\r\nbody\r\n")
    with pytest.raises(SMTPError, match="header too big") as info:
        r.finish()
    assert (info.value.code, info.value.enhanced_code) == (552, (5, 3, 4))
    assert os.listdir(tmp_path) == []


def test_too_many_fields_are_refused_as_they_come(tmp_path: Path) -> None:
    r = reader(tmp_path, max_header_fields=3)
    for _ in range(1000):
        r.feed(b"a:b\r\n")
    with pytest.raises(SMTPError, match="Too many header fields"):
        r.finish()


def test_continuation_lines_are_not_fields(tmp_path: Path) -> None:
    r = reader(tmp_path, max_header_fields=1)
    r.feed(b"Subject: a\r\n b\r\n\tc\r\n\r\nbody\r\n")
    header, body = r.finish()
    assert header.get("Subject") == "a b\tc"
    body.remove()


def test_a_malformed_header_is_554_and_leaves_no_file(tmp_path: Path) -> None:
    r = reader(tmp_path)
    r.feed(b"Subject: ok\r\nnot a field\r\n\r\n" + b"x" * 100)
    with pytest.raises(SMTPError, match="Malformed") as info:
        r.finish()
    assert (info.value.code, info.value.enhanced_code) == (554, (5, 6, 0))
    assert os.listdir(tmp_path) == []


def test_abort_removes_the_spill_file(tmp_path: Path) -> None:
    r = reader(tmp_path)
    r.feed(b"Subject: x\r\n\r\n" + b"y" * 100)
    assert len(os.listdir(tmp_path)) == 1
    r.abort()
    r.abort()
    assert os.listdir(tmp_path) == []
