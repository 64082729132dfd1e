"""DKIM canonicalization and signing as properties: what relaxed forgives, simple does not,
and what no canonicalization forgives."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mailmodule.modules.dkim import _canon
from mailmodule.modules.dkim._canon import Canon
from mailmodule.modules.dkim._crypto import BodyCache, verify
from mailmodule.modules.dkim._tags import Invalid, parse_key, parse_signature
from mailmodule.modules.dkim.keys import dns_record
from tests.dkim_kit import HEADER, ed_key, parse, signed

WORDS = st.text(alphabet="abcdefghij.,!0123", min_size=1, max_size=8)
LINES = st.lists(st.lists(WORDS, min_size=0, max_size=6).map(" ".join), min_size=1, max_size=8)
BOTH: tuple[Canon, ...] = ("simple", "relaxed")
CANONS = st.sampled_from(BOTH)


def body_of(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def verifies(data: bytes) -> str:
    """The outcome of the message's only signature, under the Ed25519 test key."""
    header, body = parse(data)
    raw = _canon.wire(header.fields("DKIM-Signature")[0].raw)
    fields = [_canon.wire(f.raw) for f in header]
    key = parse_key(dns_record(ed_key()).encode())
    try:
        verify(
            parse_signature(raw.partition(b":")[2]),
            raw,
            fields,
            BodyCache(_canon.wire(body)),
            key,
            int(time.time()),
        )
    except Invalid as exc:
        return exc.result
    return "pass"


def sign(body: bytes, header_canon: Canon = "relaxed", body_canon: Canon = "relaxed") -> bytes:
    return signed(HEADER + b"\r\n" + body, ed_key(), canon=(header_canon, body_canon))


@given(LINES, CANONS, CANONS)
def test_an_untouched_message_passes_under_every_canonicalization(
    lines: list[str], header_canon: Canon, body_canon: Canon
) -> None:
    assert verifies(sign(body_of(lines), header_canon, body_canon)) == "pass"


@given(LINES, CANONS, st.data())
def test_a_changed_word_in_the_body_fails_under_every_canonicalization(
    lines: list[str], body_canon: Canon, data: st.DataObject
) -> None:
    body = body_of(lines)
    assume(body.strip())
    message = sign(body, body_canon=body_canon)
    header_end = message.index(b"\r\n\r\n") + 4
    spots = [i for i in range(header_end, len(message)) if message[i : i + 1].isalnum()]
    assume(spots)
    at = data.draw(st.sampled_from(spots))
    changed = message[:at] + (b"X" if message[at : at + 1] != b"X" else b"Y") + message[at + 1 :]
    assert verifies(changed) == "fail"


@given(LINES, st.data())
def test_white_space_changes_pass_under_relaxed_and_fail_under_simple(
    lines: list[str], data: st.DataObject
) -> None:
    body = body_of(lines)
    spaces = [i for i, c in enumerate(body) if c == 0x20]
    ends = [i for i in range(len(body)) if body[i : i + 2] == b"\r\n"]
    assume(spaces or ends)
    at = data.draw(st.sampled_from(spaces + ends))
    extra = data.draw(st.sampled_from([b" ", b"\t", b"  \t"]))
    widened = body[:at] + extra + body[at:]
    cases: tuple[tuple[Canon, str], ...] = (("relaxed", "pass"), ("simple", "fail"))
    for canon, expected in cases:
        message = sign(body, body_canon=canon)
        head, _, _ = message.partition(b"\r\n\r\n")
        assert verifies(head + b"\r\n\r\n" + widened) == expected, canon


@given(LINES, CANONS, st.integers(min_value=1, max_value=4))
def test_empty_lines_added_at_the_end_pass_under_both(
    lines: list[str], canon: Canon, count: int
) -> None:
    message = sign(body_of(lines), body_canon=canon)
    assert verifies(message + b"\r\n" * count) == "pass"


@given(st.binary(max_size=200), CANONS)
def test_body_canonicalization_is_idempotent(data: bytes, canon: Canon) -> None:
    once = _canon.body(_canon.wire(data), canon)
    assert _canon.body(once, canon) == once


def test_a_refolded_header_field_passes_under_relaxed_and_fails_under_simple() -> None:
    cases: tuple[tuple[Canon, str], ...] = (("relaxed", "pass"), ("simple", "fail"))
    for canon, expected in cases:
        message = sign(b"Hi.\r\n", header_canon=canon)
        refolded = message.replace(b"Subject: Is dinner ready?", b"Subject: Is dinner\r\n\t ready?")
        assert verifies(refolded) == expected, canon


def test_relaxed_header_canonicalization_matches_rfc_6376_section_3_4_5() -> None:
    assert _canon.field(b"SubJect : AbC\r\n", "relaxed") == b"subject:AbC\r\n"
    assert _canon.field(b"To: a  b\r\n\t c \r\n", "relaxed") == b"to:a b c\r\n"


@pytest.mark.parametrize(
    ("body", "simple", "relaxed"),
    [
        (b"", b"\r\n", b""),
        (b"\r\n\r\n", b"\r\n", b""),
        (b" C \r\nD \t E\r\n\r\n\r\n", b" C \r\nD \t E\r\n", b" C\r\nD E\r\n"),
        (b"no end", b"no end\r\n", b"no end\r\n"),
    ],
)
def test_body_canonicalization_matches_rfc_6376_examples(
    body: bytes, simple: bytes, relaxed: bytes
) -> None:
    assert _canon.body(body, "simple") == simple
    assert _canon.body(body, "relaxed") == relaxed


@given(st.sampled_from([b"From", b"To", b"Subject", b"Date"]), WORDS, CANONS)
def test_a_changed_signed_field_fails_and_an_added_unsigned_one_passes(
    name: bytes, word: str, canon: Canon
) -> None:
    message = sign(b"Hi.\r\n", header_canon=canon)
    start = message.index(b"\r\n" + name + b":") + 2
    end = message.index(b"\r\n", start)
    changed = message[:end] + b" " + word.encode() + message[end:]
    assert verifies(changed) == "fail"
    added = message.replace(b"\r\n\r\n", b"\r\nX-Spam-Score: " + word.encode() + b"\r\n\r\n", 1)
    assert verifies(added) == "pass"


def relaxed_by_the_rfc(data: bytes) -> bytes:
    """RFC 6376 3.4.4 step by step, line by line: the reference for `_canon.body`."""
    lines = data.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"b c", b"\r"]), max_size=40))
def test_relaxed_body_canonicalization_matches_the_rfc_line_by_line(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert _canon.body(data, "relaxed") == relaxed_by_the_rfc(data)


@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"b c", b"\r"]), max_size=40))
def test_simple_body_canonicalization_matches_the_rfc_line_by_line(parts: list[bytes]) -> None:
    """RFC 6376 3.4.3: empty lines at the end go, a last line gets its CRLF, nothing is
    one CRLF."""
    data = b"".join(parts)
    *complete, rest = data.split(b"\r\n")
    if rest:
        complete.append(rest)
    while complete and complete[-1] == b"":
        complete.pop()
    expected = b"".join(line + b"\r\n" for line in complete) or b"\r\n"
    assert _canon.body(data, "simple") == expected
