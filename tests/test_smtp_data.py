"""DATA dot-unstuffing and BDAT chunks: the decoders of mailmodule.smtp._data."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule.smtp import dot_stuff
from mailmodule.smtp._data import ChunkDecoder, DotDecoder, normalize_line_endings


def reference_normalize(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def decode(*pieces: bytes) -> tuple[bytes, bytes | None]:
    """The body and what follows the end marker (None if the end was not seen)."""
    decoder = DotDecoder()
    out = b""
    for i, piece in enumerate(pieces):
        data, end = decoder.feed(piece)
        out += data
        if end >= 0:
            return out, piece[end:] + b"".join(pieces[i + 1 :])
    return out, None


line_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"a", b"\xff", b" "]), max_size=60
).map(b"".join)


@settings(max_examples=500)
@given(st.binary(max_size=200) | line_bytes)
def test_normalize_line_endings_matches_the_reference(data: bytes) -> None:
    assert normalize_line_endings(data) == reference_normalize(data)


def test_normalize_line_endings_returns_clean_input_unchanged() -> None:
    data = b"a\r\nb\r\n"
    assert normalize_line_endings(data) is data


def test_end_marker_ends_the_body_and_the_rest_is_left() -> None:
    assert decode(b"hello\r\n.\r\nQUIT\r\n") == (b"hello\r\n", b"QUIT\r\n")


def test_end_marker_at_the_very_start_gives_an_empty_body() -> None:
    assert decode(b".\r\nNOOP\r\n") == (b"", b"NOOP\r\n")


def test_first_dot_of_a_line_is_removed() -> None:
    assert decode(b"..a\r\n...b\r\n.c\r\n.\r\n") == (b".a\r\n..b\r\nc\r\n", b"")


def test_dot_at_the_very_start_is_unstuffed() -> None:
    assert decode(b"..\r\n.\r\n") == (b".\r\n", b"")


def test_end_marker_split_across_reads_is_found() -> None:
    for cut in range(1, 6):
        wire = b"x\r\n.\r\ny"
        pieces = (wire[: cut + 1], wire[cut + 1 :])
        assert decode(*pieces) == (b"x\r\n", b"y")


def test_at_most_four_bytes_are_held() -> None:
    decoder = DotDecoder()
    for piece in (b"abc\r", b"\n", b".", b"\r"):
        decoder.feed(piece)
    out, end = decoder.feed(b"x")
    assert (out, end) == (b"\r\n\r\nx", -1)


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b"a\n.\nb", b"a\r\n.\r\nb"),
        (b"a\r.\rb", b"a\r\n.\r\nb"),
        (b"a\n.\r\nb", b"a\r\n.\r\nb"),
        (b"a\r.\r\nb", b"a\r\n.\r\nb"),
        (b"a\r\n.\nb", b"a\r\n\r\nb"),
        (b"a\r\n.\rb", b"a\r\n\r\nb"),
        (b"a\n..\r\nb", b"a\r\n..\r\nb"),
    ],
)
def test_smuggled_end_markers_do_not_end_the_body(wire: bytes, body: bytes) -> None:
    out, rest = decode(wire)
    assert rest is None
    assert out == body


@settings(max_examples=500)
@given(st.binary(max_size=500) | line_bytes, st.lists(st.integers(0, 600), max_size=8))
def test_dot_stuffed_body_round_trips_in_any_split(body: bytes, cuts: list[int]) -> None:
    wire = dot_stuff(body) + b"AFTER"
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    expected = reference_normalize(body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert decode(*pieces) == (expected, b"AFTER")


@settings(max_examples=500)
@given(st.binary(max_size=300) | line_bytes)
def test_only_crlf_dot_crlf_ends_the_body(wire: bytes) -> None:
    _, rest = decode(wire)
    framed = b"\r\n" + wire
    assert (rest is None) == (b"\r\n.\r\n" not in framed)


def test_chunk_decoder_holds_a_cr_until_the_next_byte() -> None:
    decoder = ChunkDecoder()
    assert decoder.feed(b"a\r") == b"a"
    assert decoder.feed(b"\nb\r") == b"\r\nb"
    assert decoder.feed(b"", final=True) == b"\r\n"


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=50) | line_bytes, max_size=8))
def test_chunk_decoder_normalizes_across_pieces(pieces: list[bytes]) -> None:
    decoder = ChunkDecoder()
    out = b"".join(decoder.feed(p) for p in pieces) + decoder.feed(b"", final=True)
    assert out == reference_normalize(b"".join(pieces))


def test_dot_stuff_adds_the_final_crlf_and_the_end_marker() -> None:
    assert dot_stuff(b"a\n.b") == b"a\r\n..b\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
