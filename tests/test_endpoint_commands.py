from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import SMTPError
from mailmodule.endpoint import parse_listen_address, parse_mail, parse_rcpt
from mailmodule.testing import strategies as mst


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


def test_listen_addresses_parse() -> None:
    assert parse_listen_address("tcp://127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_listen_address("[::1]:2525") == ("::1", 2525)
    from mailmodule import ConfigError

    with pytest.raises(ConfigError, match="listening address"):
        parse_listen_address("localhost")
