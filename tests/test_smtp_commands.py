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
from mailmodule.testing import strategies as mst


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


# MAIL and RCPT as the endpoint reads them: every parameter offered, DSN's included.


def parse_mail(arg: str, *, max_size: int | None, smtputf8: bool) -> tuple[str, MailOptions]:
    allowed = MAIL_PARAMETERS if smtputf8 else MAIL_PARAMETERS - {"SMTPUTF8"}
    return parse_mail_from(arg, allowed=allowed, max_size=max_size)


def parse_rcpt(arg: str, *, utf8: bool) -> tuple[str, RcptOptions]:
    return parse_rcpt_to(arg, allowed=RCPT_PARAMETERS, utf8=utf8)


def test_mail_from_parameters_become_mail_options() -> None:
    sender, opts = parse_mail(
        "FROM:<Joe@XN--BCHER-KVA.example> SIZE=100 BODY=8bitmime SMTPUTF8 REQUIRETLS "
        "RET=hdrs ENVID=a+2Bb AUTH=<>",
        max_size=1000,
        smtputf8=True,
    )
    assert sender == "Joe@bücher.example"
    assert (opts.size, opts.body, opts.utf8, opts.require_tls) == (100, "8BITMIME", True, True)
    assert (opts.return_, opts.envelope_id, opts.auth) == ("HDRS", "a+b", "")


def test_the_null_sender_is_accepted() -> None:
    assert parse_mail("FROM:<>", max_size=None, smtputf8=False)[0] == ""


def test_rcpt_to_parameters_become_rcpt_options() -> None:
    rcpt, opts = parse_rcpt(
        "TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40x", utf8=False
    )
    assert rcpt == "b@example.org"
    assert opts.notify == ("SUCCESS", "FAILURE")
    assert (opts.original_recipient_type, opts.original_recipient) == ("rfc822", "b@x")


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("FROM:<a@example.org", 501),
        ("FROM:a@example.org", 501),
        ("TO:<a@example.org>", 501),
        ("FROM:<a@example.org> SIZE=x", 501),
        ("FROM:<a@example.org> SIZE=5000", 552),
        ("FROM:<a@example.org> BODY=BINARYMIME", 501),
        ("FROM:<a@example.org> X-FOO=1", 555),
        ("FROM:<josé@example.org>", 553),
        ("FROM:<a..b@example.org>", 501),
    ],
)
def test_bad_mail_from_gets_the_right_reply(arg: str, code: int) -> None:
    with pytest.raises(SMTPError) as info:
        parse_mail(arg, max_size=1000, smtputf8=False)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("TO:<>", 501),
        ("TO:<b@x> NOTIFY=NEVER,FAILURE", 501),
        ("TO:<b@x> ORCPT=x", 501),
        ("TO:<b@x> Y=1", 555),
    ],
)
def test_bad_rcpt_to_gets_the_right_reply(arg: str, code: int) -> None:
    with pytest.raises(SMTPError) as info:
        parse_rcpt(arg, utf8=False)
    assert info.value.code == code


@given(mst.addresses.filter(lambda a: "@" in a))
def test_every_valid_address_is_accepted_with_smtputf8(addr: str) -> None:
    sender, _ = parse_mail(f"FROM:<{addr}> SMTPUTF8", max_size=None, smtputf8=True)
    rcpt, _ = parse_rcpt(f"TO:<{addr}>", utf8=True)
    assert sender == rcpt


@given(st.text(max_size=80))
def test_any_argument_gives_a_result_or_an_smtp_error(arg: str) -> None:
    codes = []
    for parse in (
        lambda: parse_mail(arg, max_size=100, smtputf8=True),
        lambda: parse_rcpt(arg, utf8=True),
    ):
        try:
            parse()
        except SMTPError as err:
            codes.append(err.code)
    assert all(500 <= code < 600 for code in codes)


def test_a_size_no_queue_file_could_hold_is_refused_with_552_even_without_a_limit() -> None:
    with pytest.raises(SMTPError) as info:
        parse_mail_from("FROM:<a@b.example> SIZE=9223372036854775808", allowed=MAIL_PARAMETERS)
    assert (info.value.code, info.value.enhanced_code) == (552, (5, 3, 4))
