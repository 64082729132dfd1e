"""MAIL FROM and RCPT TO parameters, xtext, HELO names and BDAT arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule.errors import SMTPError
from mailmodule.metadata import MailOptions, RcptOptions
from mailmodule.smtp import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    format_mail_from,
    format_rcpt_to,
    parse_mail_from,
    parse_rcpt_to,
    xtext_decode,
    xtext_encode,
)
from mailmodule.smtp._commands import parse_bdat, split_command


def refusal(call: object) -> tuple[int, tuple[int, int, int]]:
    assert callable(call)
    with pytest.raises(SMTPError) as info:
        call()
    return info.value.code, info.value.enhanced_code


def test_every_mail_parameter_becomes_an_option() -> None:
    sender, opts = parse_mail_from(
        "FROM:<Joe@XN--BCHER-KVA.example> SIZE=100 BODY=8bitmime SMTPUTF8 REQUIRETLS "
        "RET=hdrs ENVID=a+2Bb AUTH=<>",
        allowed=MAIL_PARAMETERS,
        max_size=1000,
    )
    assert sender == "Joe@bücher.example"
    assert opts == MailOptions(
        size=100,
        body="8BITMIME",
        utf8=True,
        require_tls=True,
        return_="HDRS",
        envelope_id="a+b",
        auth="",
    )


def test_mail_parameters_not_allowed_are_refused_555() -> None:
    assert refusal(
        lambda: parse_mail_from("FROM:<a@example.org> BODY=7BIT", allowed=frozenset({"SIZE"}))
    ) == (555, (5, 5, 4))


@pytest.mark.parametrize(
    "param", ["SMTPUTF8=yes", "RET=ALL", "ENVID=a+zz", "ENVID=" + "a" * 101, "AUTH=bogus"]
)
def test_malformed_mail_parameters_are_refused_501(param: str) -> None:
    arg = f"FROM:<a@example.org> {param}"
    assert refusal(lambda: parse_mail_from(arg, allowed=MAIL_PARAMETERS))[0] == 501


def test_every_rcpt_parameter_becomes_an_option() -> None:
    rcpt, opts = parse_rcpt_to(
        "TO:<b@example.org> NOTIFY=success,failure ORCPT=RFC822;b+40x", allowed=RCPT_PARAMETERS
    )
    assert rcpt == "b@example.org"
    assert opts == RcptOptions(
        notify=("SUCCESS", "FAILURE"), original_recipient_type="rfc822", original_recipient="b@x"
    )


@pytest.mark.parametrize("param", ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "ORCPT=rfc822"])
def test_malformed_rcpt_parameters_are_refused_501(param: str) -> None:
    arg = f"TO:<b@example.org> {param}"
    assert refusal(lambda: parse_rcpt_to(arg, allowed=RCPT_PARAMETERS))[0] == 501


def test_rcpt_source_route_is_ignored() -> None:
    rcpt, _ = parse_rcpt_to("TO:<@relay.example:b@example.org>", allowed=frozenset())
    assert rcpt == "b@example.org"


def test_xtext_decodes_utf8_octets() -> None:
    assert xtext_decode("caf+C3+A9") == "café"


@pytest.mark.parametrize("text", ["a b", "a=b", "+2b", "+4", "caf+C3"])
def test_invalid_xtext_is_refused_501(text: str) -> None:
    assert refusal(lambda: xtext_decode(text))[0] == 501


@given(st.text())
def test_xtext_round_trips(text: str) -> None:
    assert xtext_decode(xtext_encode(text)) == text


mailboxes = st.sampled_from(["a@example.org", "Joe.Q+tag@bücher.example", "x@[192.0.2.1]"])
mail_options = st.builds(
    MailOptions,
    size=st.integers(0, 10**9),
    body=st.sampled_from(["", "7BIT", "8BITMIME"]),
    require_tls=st.booleans(),
    utf8=st.just(True),
    return_=st.sampled_from(["", "FULL", "HDRS"]),
    envelope_id=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    auth=st.none() | st.just("") | mailboxes,
)


@given(st.just("") | mailboxes, mail_options)
def test_formatted_mail_from_parses_back(sender: str, opts: MailOptions) -> None:
    verb, arg = split_command(format_mail_from(sender, opts))
    assert verb == "MAIL"
    assert parse_mail_from(arg, allowed=MAIL_PARAMETERS) == (sender, opts)


rcpt_options = st.builds(
    RcptOptions,
    notify=st.sampled_from([(), ("NEVER",), ("SUCCESS", "DELAY")]),
    original_recipient_type=st.just("rfc822"),
    original_recipient=st.sampled_from(["a+b@example.org", "zoë@example.org"]),
)


@given(mailboxes, rcpt_options)
def test_formatted_rcpt_to_parses_back(rcpt: str, opts: RcptOptions) -> None:
    verb, arg = split_command(format_rcpt_to(rcpt, opts))
    assert verb == "RCPT"
    assert parse_rcpt_to(arg, allowed=RCPT_PARAMETERS, utf8=True) == (rcpt, opts)


@pytest.mark.parametrize(
    ("arg", "parsed"),
    [("0 LAST", (0, True)), ("100", (100, False)), ("7 last", (7, True)), ("1 2", None)],
)
def test_bdat_arguments(arg: str, parsed: tuple[int, bool] | None) -> None:
    assert parse_bdat(arg) == parsed
