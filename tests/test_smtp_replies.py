"""SMTP replies: values, their wire form, and parsing it back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule.errors import ENHANCED_CODE_NOT_SET, SMTPError
from mailmodule.smtp import ProtocolError, Reply, format_reply, parse_reply


@pytest.mark.parametrize("line", ["evil\r\n250 OK", "a\nb", "a\rb"])
def test_reply_text_with_cr_or_lf_is_refused(line: str) -> None:
    with pytest.raises(ProtocolError):
        Reply(code=250, lines=("fine", line))


@pytest.mark.parametrize("code", [199, 600, "250"])
def test_reply_code_must_be_200_to_599(code: object) -> None:
    with pytest.raises(ValueError, match=r"Reply\.code"):
        Reply(code=code)  # type: ignore[arg-type]  # the point of the test


def test_enhanced_code_must_match_the_reply_class() -> None:
    with pytest.raises(ValueError, match="enhanced_code"):
        Reply(code=550, enhanced_code=(2, 0, 0))


def test_a_reply_has_at_least_one_line() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        Reply(code=250, lines=())


def test_multi_line_reply_uses_continuation_lines() -> None:
    reply = Reply(code=550, enhanced_code=(5, 7, 1), lines=("No", "Really"))
    assert format_reply(reply) == b"550-5.7.1 No\r\n550 5.7.1 Really\r\n"


def test_3xx_replies_carry_no_enhanced_code() -> None:
    assert format_reply(Reply(code=354, lines="Go ahead")) == b"354 Go ahead\r\n"


def test_reply_without_enhanced_code_is_written_x_0_0() -> None:
    assert format_reply(Reply(code=451, lines="Later")) == b"451 4.0.0 Later\r\n"
    assert format_reply(Reply(code=451, lines="Later"), enhanced=False) == b"451 Later\r\n"


def test_reply_relays_an_smtp_error() -> None:
    reply = Reply.from_error(SMTPError(550, (5, 7, 1), "Refused"))
    assert reply == Reply(code=550, enhanced_code=(5, 7, 1), lines="Refused")
    assert Reply.from_error(SMTPError(451, ENHANCED_CODE_NOT_SET, "x")).enhanced_code is None


def test_parse_reply_rejects_garbage() -> None:
    for data in (b"hello\r\n", b"250 ok", b"250-a\r\n251 b\r\n"):
        with pytest.raises(SMTPError):
            parse_reply(data)


replies = st.builds(
    Reply,
    code=st.sampled_from([220, 250, 421, 452, 550, 554]),
    lines=st.lists(
        st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), min_size=1),
        min_size=1,
        max_size=4,
    ).map(tuple),
)


@given(replies, st.tuples(st.integers(0, 9), st.integers(0, 9)))
def test_formatted_reply_parses_back(reply: Reply, sub: tuple[int, int]) -> None:
    full = Reply(code=reply.code, enhanced_code=(reply.code // 100, *sub), lines=reply.lines)
    assert parse_reply(format_reply(full)) == full
