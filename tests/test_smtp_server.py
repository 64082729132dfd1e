"""The SMTP/LMTP server state machine, driven without sockets."""

from __future__ import annotations

import base64
import doctest
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailmodule.smtp._server
from mailmodule.smtp import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    ChunkEnd,
    ChunkStart,
    Command,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    Event,
    Hello,
    MailFrom,
    ProtocolError,
    ProtocolReply,
    RcptTo,
    Reply,
    Reset,
    ServerConfig,
    ServerConnection,
    StartData,
    StartTLS,
    State,
    dot_stuff,
    encode_plain,
)
from mailmodule.smtp._data import normalize_line_endings

OK = Reply(code=250, enhanced_code=(2, 0, 0), lines="OK")
GO_AHEAD = Reply(code=354, lines="End data with <CR><LF>.<CR><LF>")
REFUSED = Reply(code=550, enhanced_code=(5, 1, 1), lines="No such user")


class Peer:
    """The test's side of a `ServerConnection`: sends lines, looks at what comes back."""

    def __init__(self, config: ServerConfig | None = None, *, tls: bool = False) -> None:
        self.conn = ServerConnection(config or ServerConfig(), tls=tls)
        self.conn.send(Reply(code=220, lines="mx.example.org ESMTP"))

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def event(self) -> Event:
        event = self.conn.next_event()
        assert isinstance(event, Event), event
        return event

    def line(self, line: str | bytes) -> Event:
        """Send one command line; the event it gives."""
        self.feed((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.event()

    def auto(self, line: str | bytes) -> str:
        """Send one line; the reply the protocol gave by itself, without its CRLF."""
        event = self.line(line)
        assert isinstance(event, ProtocolReply), event
        return event.data.decode().removesuffix("\r\n")

    def answer(self, line: str | bytes, reply: Reply = OK) -> str:
        """Send one line, answer the command it gives with `reply`; the reply's bytes."""
        event = self.line(line)
        assert isinstance(event, Command), event
        return self.conn.send(reply).decode()

    def ehlo(self, verb: str = "EHLO") -> str:
        return self.answer(f"{verb} client.example.org", Reply(code=250, lines="mx.example.org"))

    def transaction(self, *recipients: str) -> None:
        """EHLO (unless greeted), MAIL FROM and accepted RCPT TOs."""
        if self.conn.state is State.NEED_HELLO:
            self.ehlo("LHLO" if self.conn.config.lmtp else "EHLO")
        self.answer("MAIL FROM:<sender@example.org>")
        for rcpt in recipients or ("rcpt@example.org",):
            self.answer(f"RCPT TO:<{rcpt}>")

    def data(self, *recipients: str) -> None:
        """A transaction up to DATA's 354."""
        self.transaction(*recipients)
        assert self.answer("DATA", GO_AHEAD).startswith("354")

    def body(self) -> tuple[bytes, Event]:
        """The body's bytes until the first event that is not a `DataChunk`."""
        out = b""
        while True:
            event = self.event()
            if not isinstance(event, DataChunk):
                return out, event
            out += event.data


# Greeting and closing.


def test_nothing_is_read_before_the_greeting() -> None:
    conn = ServerConnection()
    conn.receive_data(b"EHLO early.example.org\r\n")
    assert conn.next_event() is PAUSED
    assert conn.send(Reply(code=220, lines="mx ESMTP")) == b"220 mx ESMTP\r\n"
    assert isinstance(conn.next_event(), Hello)


def test_greeting_of_another_code_is_refused() -> None:
    with pytest.raises(ProtocolError):
        ServerConnection().send(OK)


def test_refused_greeting_serves_only_quit() -> None:
    conn = ServerConnection()
    assert conn.send(Reply(code=554, lines="No service")) == b"554 No service\r\n"
    conn.receive_data(b"EHLO client.example.org\r\nQUIT\r\n")
    first = conn.next_event()
    assert isinstance(first, ProtocolReply)
    assert first.data.startswith(b"503 5.5.1 ")
    second = conn.next_event()
    assert isinstance(second, ProtocolReply)
    assert second.data == b"221 2.0.0 Bye\r\n"
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_quit_answers_221_and_closes() -> None:
    peer = Peer()
    assert peer.auto("QUIT") == "221 2.0.0 Bye"
    assert peer.conn.state is State.CLOSED
    assert isinstance(peer.event(), ConnectionClosed)
    assert isinstance(peer.event(), ConnectionClosed)


def test_quit_with_an_argument_is_a_syntax_error() -> None:
    assert Peer().auto("QUIT now").startswith("501 5.5.4 ")


def test_input_after_close_is_ignored() -> None:
    peer = Peer()
    peer.auto("QUIT")
    peer.feed(b"NOOP\r\n")
    assert isinstance(peer.event(), ConnectionClosed)


def test_peer_close_gives_connection_closed() -> None:
    peer = Peer()
    peer.feed(b"")
    assert isinstance(peer.event(), ConnectionClosed)


def test_bytes_after_the_peer_closed_are_a_protocol_error() -> None:
    peer = Peer()
    peer.feed(b"")
    with pytest.raises(ProtocolError):
        peer.feed(b"NOOP\r\n")


def test_commands_buffered_before_the_peer_closed_are_still_served() -> None:
    peer = Peer()
    peer.feed(b"NOOP\r\n")
    peer.feed(b"")
    assert isinstance(peer.event(), ProtocolReply)
    assert isinstance(peer.event(), ConnectionClosed)


def test_peer_close_in_data_gives_connection_closed_without_data_end() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"Subject: cut\r\n")
    peer.feed(b"")
    body, event = peer.body()
    assert body == b"Subject: cut"  # a possible start of the end marker stays held
    assert isinstance(event, ConnectionClosed)


def test_421_may_be_sent_at_any_time_and_closes() -> None:
    peer = Peer()
    data = peer.conn.send(Reply(code=421, enhanced_code=(4, 3, 2), lines="Shutting down"))
    assert data == b"421 4.3.2 Shutting down\r\n"
    assert isinstance(peer.event(), ConnectionClosed)


def test_421_answering_a_command_closes() -> None:
    peer = Peer()
    peer.line("EHLO client.example.org")
    peer.conn.send(Reply(code=421, enhanced_code=(4, 7, 0), lines="Go away"))
    assert isinstance(peer.event(), ConnectionClosed)


def test_send_on_a_closed_connection_is_a_protocol_error() -> None:
    peer = Peer()
    peer.auto("QUIT")
    with pytest.raises(ProtocolError):
        peer.conn.send(OK)


# HELO, EHLO, LHLO.


def test_ehlo_answer_lists_the_default_extensions_without_enhanced_codes() -> None:
    assert Peer().ehlo().split("\r\n") == [
        "250-mx.example.org",
        "250-PIPELINING",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-SIZE",
        "250-ENHANCEDSTATUSCODES",
        "250 CHUNKING",
        "",
    ]


def test_ehlo_answer_lists_every_enabled_extension() -> None:
    config = ServerConfig(
        max_message_size=1000, starttls=True, auth=True, auth_without_tls=True, dsn=True
    )
    lines = Peer(config).ehlo().split("\r\n")
    assert "250-SIZE 1000" in lines
    assert "250-STARTTLS" in lines
    assert "250-AUTH PLAIN LOGIN" in lines
    assert "250-DSN" in lines


def test_ehlo_answer_leaves_out_disabled_extensions() -> None:
    config = ServerConfig(
        pipelining=False,
        eightbitmime=False,
        smtputf8=False,
        enhanced_status_codes=False,
        chunking=False,
    )
    assert Peer(config).ehlo() == "250-mx.example.org\r\n250 SIZE\r\n"


def test_auth_is_offered_only_after_tls_by_default() -> None:
    assert "AUTH" not in Peer(ServerConfig(auth=True)).ehlo()
    assert "AUTH PLAIN LOGIN" in Peer(ServerConfig(auth=True), tls=True).ehlo()


def test_requiretls_is_offered_only_after_tls() -> None:
    assert "REQUIRETLS" not in Peer(ServerConfig(requiretls=True)).ehlo()
    assert "REQUIRETLS" in Peer(ServerConfig(requiretls=True), tls=True).ehlo()


def test_hello_event_carries_the_name_and_whether_it_is_valid() -> None:
    peer = Peer()
    assert peer.line("EHLO [192.0.2.1]") == Hello(verb="EHLO", name="[192.0.2.1]", valid=True)
    peer.conn.send(OK)
    assert peer.line("HELO not_a domain!") == Hello(verb="HELO", name="not_a domain!", valid=False)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("mx.example.org", True),
        ("localhost", True),
        ("[IPv6:2001:db8::1]", True),
        ("[300.1.1.1]", False),
        ("[IPv6:zz]", False),
        ("bad..example", False),
        ("-bad.example", False),
    ],
)
def test_helo_name_validity_follows_rfc_5321(name: str, valid: bool) -> None:
    event = Peer().line(f"HELO {name}")
    assert isinstance(event, Hello)
    assert event.valid is valid


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_hello_without_a_name_is_a_syntax_error(verb: str) -> None:
    assert Peer().auto(verb).startswith("501 5.5.4 ")


def test_helo_answer_gets_no_extensions() -> None:
    assert Peer().ehlo("HELO") == "250 mx.example.org\r\n"


def test_hello_may_be_repeated_and_in_any_order() -> None:
    peer = Peer()
    peer.ehlo("HELO")
    peer.ehlo("EHLO")
    peer.ehlo("HELO")
    assert peer.conn.hello == Hello(verb="HELO", name="client.example.org", valid=True)


def test_refused_ehlo_leaves_the_session_where_it_was() -> None:
    peer = Peer()
    peer.answer("EHLO client.example.org", Reply(code=550, lines="Go away"))
    assert peer.conn.state is State.NEED_HELLO
    assert peer.conn.hello is None


def test_ehlo_in_a_transaction_resets_it() -> None:
    peer = Peer()
    peer.transaction()
    peer.ehlo()
    assert peer.conn.state is State.READY
    assert peer.conn.recipients == ()
    assert peer.auto("RCPT TO:<a@example.org>").startswith("503 5.5.1 ")


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_lmtp_refuses_helo_and_ehlo(verb: str) -> None:
    assert Peer(ServerConfig(lmtp=True)).auto(f"{verb} x.example.org").startswith("500 5.5.1 ")


def test_smtp_refuses_lhlo() -> None:
    assert Peer().auto("LHLO x.example.org").startswith("500 5.5.1 ")


def test_lhlo_answer_lists_the_extensions() -> None:
    assert "250-PIPELINING" in Peer(ServerConfig(lmtp=True)).ehlo("LHLO")


@pytest.mark.parametrize(
    "line",
    ["MAIL FROM:<a@example.org>", "RCPT TO:<a@example.org>", "DATA", "BDAT 0 LAST"],
)
def test_transaction_commands_need_a_hello_first(line: str) -> None:
    assert Peer().auto(line).startswith("503 5.5.1 ")


# Simple commands.


def test_noop_answers_250() -> None:
    assert Peer().auto("NOOP") == "250 2.0.0 OK"


def test_noop_with_an_argument_answers_250() -> None:
    assert Peer().auto("NOOP ping") == "250 2.0.0 OK"


def test_vrfy_answers_252() -> None:
    assert Peer().auto("VRFY <anne@example.com>").startswith("252 2.0.0 ")


def test_vrfy_without_an_argument_is_a_syntax_error() -> None:
    assert Peer().auto("VRFY").startswith("501 5.5.4 ")


def test_expn_is_not_implemented() -> None:
    assert Peer().auto("EXPN staff").startswith("502 5.5.1 ")


def test_help_lists_the_offered_commands() -> None:
    text = Peer().auto("HELP")
    assert text.startswith("214 2.0.0 Commands: ")
    assert "STARTTLS" not in text
    assert "BDAT" in text
    assert "AUTH" in Peer(ServerConfig(auth=True)).auto("HELP")


def test_rset_resets_the_transaction() -> None:
    peer = Peer()
    peer.transaction()
    assert peer.line("RSET") == Reset()
    assert peer.conn.send(OK) == b"250 2.0.0 OK\r\n"
    assert peer.conn.state is State.READY
    assert peer.conn.mail_from is None


def test_rset_with_an_argument_is_a_syntax_error() -> None:
    assert Peer().auto("RSET FOO").startswith("501 5.5.4 ")


def test_rset_takes_only_a_2xx_reply() -> None:
    peer = Peer()
    peer.line("RSET")
    with pytest.raises(ProtocolError):
        peer.conn.send(REFUSED)


def test_rset_before_hello_keeps_needing_hello() -> None:
    peer = Peer()
    peer.answer("RSET")
    assert peer.conn.state is State.NEED_HELLO


def test_unknown_command_is_refused_500() -> None:
    assert Peer().auto("FOOBAR") == "500 5.5.1 Command not recognized"


def test_empty_line_is_refused_500() -> None:
    assert Peer().auto("").startswith("500 5.5.1 ")


@pytest.mark.parametrize("line", [b"\x80FAIL", b"\x80 FAIL", b"MAIL FROM:<\xff@example.org>"])
def test_a_command_that_is_not_utf8_is_refused_500(line: bytes) -> None:
    assert Peer().auto(line).startswith("500 5.5.2 ")


def test_commands_are_case_insensitive() -> None:
    peer = Peer()
    assert isinstance(peer.line("ehlo client.example.org"), Hello)
    peer.conn.send(OK)
    assert isinstance(peer.line("mail from:<a@example.org>"), MailFrom)


def test_a_bare_lf_ends_a_command_line() -> None:
    peer = Peer()
    peer.feed(b"NOOP\n")
    assert isinstance(peer.event(), ProtocolReply)


def test_protocol_replies_carry_no_enhanced_code_when_that_is_off() -> None:
    assert Peer(ServerConfig(enhanced_status_codes=False)).auto("NOOP") == "250 OK"


def test_app_reply_without_enhanced_code_gets_x_0_0() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.answer("MAIL FROM:<a@example.org>", Reply(code=250)) == "250 2.0.0 OK\r\n"


def test_multi_line_app_reply_has_continuation_lines() -> None:
    peer = Peer()
    peer.ehlo()
    reply = Reply(code=550, enhanced_code=(5, 7, 1), lines=("Refused", "See the policy"))
    assert peer.answer("MAIL FROM:<a@example.org>", reply) == (
        "550-5.7.1 Refused\r\n550 5.7.1 See the policy\r\n"
    )


# MAIL FROM and RCPT TO.


def test_mail_from_gives_sender_and_options() -> None:
    peer = Peer(ServerConfig(max_message_size=10000))
    peer.ehlo()
    event = peer.line("MAIL FROM:<anne@Example.COM> SIZE=100 BODY=8BITMIME")
    assert isinstance(event, MailFrom)
    assert event.sender == "anne@example.com"
    assert (event.options.size, event.options.body) == (100, "8BITMIME")


def test_null_sender_is_accepted() -> None:
    peer = Peer()
    peer.ehlo()
    event = peer.line("MAIL FROM:<>")
    assert isinstance(event, MailFrom)
    assert event.sender == ""


@pytest.mark.parametrize(
    "address",
    [
        "<anne@example.com>",
        " <anne@example.com>",
        "<anne.arthur+promo@example.com>",
        "<_@example.com>",
        "<anne@[127.0.0.1]>",
        "<anne@[IPv6:2001:db8::1]>",
        "<@example.org:anne@example.com>",
        "<@example.net,@example.org:anne@example.com>",
        '<"anne..arthur"@example.com>',
        '<"a>b"@example.com>',
        "<mailhost!anne@example.com>",
        "<anne%example.org@example.com>",
        "<customer/department=shipping@example.com>",
        "<" + "a" * 65 + "@example.com>",
    ],
)
def test_mail_from_accepts_valid_addresses(address: str) -> None:
    peer = Peer()
    peer.ehlo()
    assert isinstance(peer.line(f"MAIL FROM:{address}"), MailFrom)


@pytest.mark.parametrize(
    "line",
    [
        "MAIL",
        "MAIL <anne@example.com>",
        "MAIL FROM:",
        "MAIL FROM:anne@example.com",
        "MAIL FROM: Anne <anne@example.com>",
        "MAIL FROM:<anne@example.com",
        "MAIL FROM:<anne@example.com>SIZE=1",
        "MAIL FROM:<anne@example.com> SIZE 10000",
        "MAIL FROM:<anne@example.com> SIZE",
        "MAIL FROM:<anne@example.com> #$%=!@#",
        "MAIL FROM:<anne@example.com> SIZE = 10000",
        "MAIL FROM:<anne@example.com> SIZE=1 SIZE=2",
        "MAIL FROM:<anne@example.com> BODY=FOOBAR",
    ],
)
def test_mail_from_syntax_errors_are_refused_501(line: str) -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto(line).startswith("501 5.5.4 ")


@pytest.mark.parametrize("address", ["<@example.com>", "<johnathon@>", "<postmaster>"])
def test_mail_from_refuses_invalid_addresses(address: str) -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto(f"MAIL FROM:{address}").startswith("501 5.1.7 ")


def test_mail_from_unknown_parameter_is_refused_555() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("MAIL FROM:<anne@example.com> FOO=BAR").startswith("555 5.5.4 ")


def test_mail_from_parameters_need_ehlo() -> None:
    peer = Peer()
    peer.ehlo("HELO")
    assert peer.auto("MAIL FROM:<anne@example.com> SIZE=10").startswith("555 5.5.4 ")


def test_mail_from_size_above_the_limit_is_refused_552() -> None:
    peer = Peer(ServerConfig(max_message_size=100))
    peer.ehlo()
    assert peer.auto("MAIL FROM:<anne@example.com> SIZE=101").startswith("552 5.3.4 ")


def test_smtputf8_parameter_is_refused_when_smtputf8_is_off() -> None:
    peer = Peer(ServerConfig(smtputf8=False))
    peer.ehlo()
    assert peer.auto("MAIL FROM:<anne@example.com> SMTPUTF8").startswith("555 5.5.4 ")


def test_utf8_sender_with_smtputf8_is_accepted() -> None:
    peer = Peer()
    peer.ehlo()
    event = peer.line("MAIL FROM:<josé@bücher.example> SMTPUTF8")
    assert isinstance(event, MailFrom)
    assert event.sender == "josé@bücher.example"
    assert event.options.utf8


def test_utf8_sender_without_the_smtputf8_parameter_is_refused_553() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("MAIL FROM:<josé@example.org>").startswith("553 5.6.7 ")


def test_utf8_recipient_needs_smtputf8_on_mail_from() -> None:
    peer = Peer()
    peer.ehlo()
    peer.answer("MAIL FROM:<anne@example.org>")
    assert peer.auto("RCPT TO:<zoë@example.org>").startswith("553 5.6.7 ")
    peer.answer("RSET")
    peer.answer("MAIL FROM:<anne@example.org> SMTPUTF8")
    assert isinstance(peer.line("RCPT TO:<zoë@example.org>"), RcptTo)


def test_dsn_parameters_are_refused_unless_dsn_is_on() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("MAIL FROM:<a@example.org> RET=HDRS").startswith("555 5.5.4 ")
    peer.answer("MAIL FROM:<a@example.org>")
    assert peer.auto("RCPT TO:<b@example.org> NOTIFY=NEVER").startswith("555 5.5.4 ")


def test_dsn_parameters_become_options_when_dsn_is_on() -> None:
    peer = Peer(ServerConfig(dsn=True))
    peer.ehlo()
    mail = peer.line("MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B1")
    assert isinstance(mail, MailFrom)
    assert (mail.options.return_, mail.options.envelope_id) == ("HDRS", "QQ+1")
    peer.conn.send(OK)
    rcpt = peer.line("RCPT TO:<b@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+40example.org")
    assert isinstance(rcpt, RcptTo)
    assert rcpt.options.notify == ("SUCCESS", "DELAY")
    assert rcpt.options.original_recipient == "b@example.org"


def test_requiretls_parameter_needs_tls() -> None:
    peer = Peer(ServerConfig(requiretls=True))
    peer.ehlo()
    assert peer.auto("MAIL FROM:<a@example.org> REQUIRETLS").startswith("555 5.5.4 ")
    peer = Peer(ServerConfig(requiretls=True), tls=True)
    peer.ehlo()
    event = peer.line("MAIL FROM:<a@example.org> REQUIRETLS")
    assert isinstance(event, MailFrom)
    assert event.options.require_tls


def test_auth_parameter_needs_auth() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("MAIL FROM:<a@example.org> AUTH=<>").startswith("555 5.5.4 ")
    peer = Peer(ServerConfig(auth=True), tls=True)
    peer.ehlo()
    event = peer.line("MAIL FROM:<a@example.org> AUTH=a+2Bb@example.org")
    assert isinstance(event, MailFrom)
    assert event.options.auth == "a+b@example.org"


def test_mail_from_twice_is_refused_503() -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto("MAIL FROM:<a@example.org>") == "503 5.5.1 Nested MAIL command"


def test_refused_mail_from_opens_no_transaction() -> None:
    peer = Peer()
    peer.ehlo()
    peer.answer("MAIL FROM:<a@example.org>", REFUSED)
    assert peer.conn.state is State.READY
    assert peer.auto("RCPT TO:<b@example.org>").startswith("503 5.5.1 ")


def test_rcpt_without_mail_is_refused_503() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("RCPT TO:<anne@example.com>") == "503 5.5.1 Need MAIL command"


@pytest.mark.parametrize(
    "line",
    [
        "RCPT",
        "RCPT <anne@example.com>",
        "RCPT TO:",
        "RCPT TO: bart <bart@example.com>",
        "RCPT TO:<bart@example.com> #$%=!@#",
    ],
)
def test_rcpt_syntax_errors_are_refused_501(line: str) -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto(line).startswith("501 5.5.4 ")


@pytest.mark.parametrize("address", ["<>", "<@example.com>", "<johnathon@>", "<anne>"])
def test_rcpt_refuses_invalid_addresses(address: str) -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto(f"RCPT TO:{address}").startswith("501 5.1.3 ")


def test_rcpt_unknown_parameter_is_refused_555() -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto("RCPT TO:<bart@example.com> FOOBAR").startswith("555 5.5.4 ")


@pytest.mark.parametrize("name", ["postmaster", "Postmaster", "POSTMASTER"])
def test_rcpt_to_postmaster_without_a_domain_is_accepted(name: str) -> None:
    peer = Peer()
    peer.transaction()
    event = peer.line(f"RCPT TO:<{name}>")
    assert isinstance(event, RcptTo)
    assert event.recipient == name


def test_only_accepted_recipients_count() -> None:
    peer = Peer()
    peer.transaction("a@example.org")
    peer.answer("RCPT TO:<b@example.org>", REFUSED)
    peer.answer("RCPT TO:<c@example.org>")
    assert peer.conn.recipients == ("a@example.org", "c@example.org")


def test_recipients_beyond_the_limit_are_refused_452() -> None:
    peer = Peer(ServerConfig(max_recipients=2))
    peer.transaction("a@example.org", "b@example.org")
    assert peer.auto("RCPT TO:<c@example.org>") == "452 4.5.3 Too many recipients"


# DATA.


def test_data_without_recipients_is_refused_503() -> None:
    peer = Peer()
    peer.ehlo()
    peer.answer("MAIL FROM:<a@example.org>")
    assert peer.auto("DATA") == "503 5.5.1 Need RCPT command"


def test_data_after_every_recipient_was_refused_is_refused_554() -> None:
    peer = Peer()
    peer.ehlo()
    peer.answer("MAIL FROM:<a@example.org>")
    peer.answer("RCPT TO:<b@example.org>", REFUSED)
    assert peer.auto("DATA") == "554 5.5.1 No valid recipients"


def test_data_with_an_argument_is_a_syntax_error() -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto("DATA FOOBAR").startswith("501 5.5.4 ")


def test_data_takes_354_or_a_refusal() -> None:
    peer = Peer()
    peer.transaction()
    assert peer.line("DATA") == StartData()
    with pytest.raises(ProtocolError):
        peer.conn.send(OK)
    assert peer.conn.send(GO_AHEAD).startswith(b"354 ")
    assert peer.conn.state is State.DATA


def test_refused_data_keeps_the_transaction() -> None:
    peer = Peer()
    peer.transaction()
    peer.answer("DATA", Reply(code=451, enhanced_code=(4, 3, 0), lines="Later"))
    assert peer.conn.state is State.MAIL
    assert isinstance(peer.line("DATA"), StartData)


def test_body_is_streamed_dot_unstuffed_then_data_end() -> None:
    peer = Peer()
    peer.data("a@example.org", "b@example.org")
    peer.feed(b"Subject: x\r\n\r\n..leading dot\r\n")
    # The last CRLF may start the end marker: it is held until the next bytes come.
    assert peer.event() == DataChunk(b"Subject: x\r\n\r\n.leading dot")
    assert peer.conn.next_event() is NEED_DATA
    peer.feed(b".\r\n")
    assert peer.event() == DataChunk(b"\r\n")
    assert peer.event() == DataEnd(False, ("a@example.org", "b@example.org"))
    assert peer.conn.next_event() is PAUSED
    peer.conn.send(OK)
    assert peer.conn.state is State.READY
    assert peer.conn.recipients == ()


def test_empty_body_gives_data_end_only() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b".\r\n")
    assert isinstance(peer.event(), DataEnd)


def test_mail_delimiters_in_the_body_become_crlf() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"test\r\nmail\rdelimiters\nsaved\r\n.\r\n")
    assert peer.body() == (
        b"test\r\nmail\r\ndelimiters\r\nsaved\r\n",
        DataEnd(False, peer.conn.recipients),
    )


def test_commands_after_the_body_are_served() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"hi\r\n.\r\nQUIT\r\n")
    peer.body()
    peer.conn.send(OK)
    assert isinstance(peer.event(), ProtocolReply)
    assert isinstance(peer.event(), ConnectionClosed)


def test_body_split_one_byte_at_a_time_is_the_same() -> None:
    peer = Peer()
    peer.data()
    for byte in b"a\r\n..b\rc\n\r\n.\r\n":
        peer.feed(bytes([byte]))
    body, end = peer.body()
    assert body == b"a\r\n.b\r\nc\r\n\r\n"
    assert isinstance(end, DataEnd)


def test_too_big_body_is_dropped_and_reported_at_the_end() -> None:
    peer = Peer(ServerConfig(max_message_size=20))
    peer.data()
    peer.feed(b"a" * 23)
    assert peer.event() == DataChunk(b"a" * 20)
    assert peer.conn.next_event() is NEED_DATA
    peer.feed(b"b" * 1000 + b"\r\n.\r\n")
    rest, end = peer.body()
    assert rest == b""
    assert end == DataEnd(True, ("rcpt@example.org",))


def test_too_big_body_takes_only_a_refusal() -> None:
    peer = Peer(ServerConfig(max_message_size=1))
    peer.data()
    peer.feed(b"too long\r\n.\r\n")
    peer.body()
    with pytest.raises(ProtocolError):
        peer.conn.send(OK)
    assert peer.conn.send(Reply(code=552, enhanced_code=(5, 3, 4), lines="Too big")).startswith(
        b"552 5.3.4"
    )


def test_nothing_is_emitted_while_waiting_for_data_end_reply() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b"x\r\n.\r\nNOOP\r\n")
    peer.body()
    assert peer.conn.next_event() is PAUSED


# BDAT.


def test_bdat_chunks_stream_then_data_end() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 5\r\nhello")
    assert peer.event() == ChunkStart(size=5, last=False)
    assert peer.event() == DataChunk(b"hello")
    assert peer.event() == ChunkEnd(False)
    peer.conn.send(Reply(code=250, enhanced_code=(2, 0, 0), lines="5 octets received"))
    peer.feed(b"BDAT 7 LAST\r\n world\n")
    assert peer.event() == ChunkStart(size=7, last=True)
    assert peer.body() == (b" world\r\n", DataEnd(False, ("rcpt@example.org",)))
    peer.conn.send(OK)
    assert peer.conn.state is State.READY


def test_bdat_chunk_is_raw_bytes_not_commands() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 12 LAST\r\nQUIT\r\n.\r\n..\r\n")
    peer.event()
    assert peer.body() == (b"QUIT\r\n.\r\n..\r\n", DataEnd(False, peer.conn.recipients))


def test_bdat_zero_last_ends_the_body() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 0 LAST\r\n")
    assert peer.event() == ChunkStart(size=0, last=True)
    assert isinstance(peer.event(), DataEnd)


def test_bdat_cr_at_a_chunk_end_pairs_with_lf_of_the_next_chunk() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 2\r\na\r")
    peer.event()
    body, end = peer.body()
    assert isinstance(end, ChunkEnd)
    peer.conn.send(OK)
    peer.feed(b"BDAT 2 LAST\r\n\nb")
    peer.event()
    rest, _ = peer.body()
    assert body + rest == b"a\r\nb"


def test_bdat_after_a_data_transaction_is_refused_and_its_chunk_skipped() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b".\r\n")
    peer.body()
    peer.conn.send(OK)
    peer.feed(b"BDAT 6\r\nNOOP\r\nRSET\r\n")
    assert peer.event() == ProtocolReply(
        Reply(code=503, enhanced_code=(5, 5, 1), lines="Need MAIL command"),
        b"503 5.5.1 Need MAIL command\r\n",
    )
    assert isinstance(peer.event(), Reset)


def test_bdat_after_a_refused_data_is_allowed() -> None:
    peer = Peer()
    peer.transaction()
    peer.answer("DATA", Reply(code=451, lines="Not now"))
    peer.feed(b"BDAT 0 LAST\r\n")
    assert isinstance(peer.event(), ChunkStart)


def test_data_after_bdat_is_refused() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 1\r\nx")
    peer.event()
    peer.body()
    peer.conn.send(OK)
    assert peer.auto("DATA").startswith("503 5.5.1 ")
    assert peer.auto("RCPT TO:<x@example.org>").startswith("503 5.5.1 ")


def test_refused_bdat_chunk_is_skipped_not_read_as_commands() -> None:
    peer = Peer()
    peer.ehlo()
    peer.feed(b"BDAT 6\r\nRSET\r\nNOOP\r\n")
    event = peer.event()
    assert isinstance(event, ProtocolReply)
    assert event.data.startswith(b"503 5.5.1 ")
    assert peer.event() == ProtocolReply(
        Reply(code=250, enhanced_code=(2, 0, 0), lines="OK"), b"250 2.0.0 OK\r\n"
    )


def test_bdat_when_chunking_is_off_is_refused_and_skipped() -> None:
    peer = Peer(ServerConfig(chunking=False))
    peer.transaction()
    peer.feed(b"BDAT 6 LAST\r\nRSET\r\nNOOP\r\n")
    first = peer.event()
    assert isinstance(first, ProtocolReply)
    assert first.data.startswith(b"502 5.5.1 ")
    assert peer.auto("NOOP") == "250 2.0.0 OK"


def test_bdat_without_recipients_is_refused() -> None:
    peer = Peer()
    peer.ehlo()
    peer.answer("MAIL FROM:<a@example.org>")
    assert peer.auto("BDAT 0 LAST").startswith("503 5.5.1 ")


@pytest.mark.parametrize("arg", ["", "x", "-1", "5 LATER", "5 LAST more"])
def test_bdat_syntax_errors_are_refused_501(arg: str) -> None:
    peer = Peer()
    peer.transaction()
    assert peer.auto(f"BDAT {arg}".strip()).startswith("501 5.5.4 ")


def test_refused_chunk_ends_the_transaction() -> None:
    peer = Peer()
    peer.transaction()
    peer.feed(b"BDAT 1\r\nx")
    peer.event()
    peer.body()
    peer.conn.send(Reply(code=452, enhanced_code=(4, 3, 1), lines="Disk full"))
    assert peer.conn.state is State.READY
    assert peer.conn.recipients == ()


def test_bdat_too_big_is_reported_on_chunk_end_and_data_end() -> None:
    peer = Peer(ServerConfig(max_message_size=3))
    peer.transaction()
    peer.feed(b"BDAT 5\r\nhello")
    peer.event()
    assert peer.body() == (b"hel", ChunkEnd(True))
    peer.conn.send(OK)
    peer.feed(b"BDAT 1 LAST\r\n!")
    peer.event()
    assert peer.body() == (b"", DataEnd(True, ("rcpt@example.org",)))


# Pipelining.


def test_pipelined_commands_give_events_in_order() -> None:
    peer = Peer()
    peer.ehlo()
    peer.feed(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\nDATA\r\n"
    )
    replies = []
    kinds = []
    while (event := peer.conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Command)
        kinds.append(type(event))
        replies.append(peer.conn.send(GO_AHEAD if isinstance(event, StartData) else OK))
    assert kinds == [MailFrom, RcptTo, RcptTo, StartData]
    assert peer.conn.state is State.DATA


def test_next_command_waits_for_the_reply_to_the_previous() -> None:
    peer = Peer()
    peer.ehlo()
    peer.feed(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n")
    assert isinstance(peer.event(), MailFrom)
    assert peer.conn.next_event() is PAUSED
    peer.conn.send(REFUSED)
    assert peer.event() == ProtocolReply(
        Reply(code=503, enhanced_code=(5, 5, 1), lines="Need MAIL command"),
        b"503 5.5.1 Need MAIL command\r\n",
    )


def test_a_reply_when_none_is_due_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Peer().conn.send(OK)


def test_a_3xx_reply_to_a_command_other_than_data_is_a_protocol_error() -> None:
    peer = Peer()
    peer.line("EHLO client.example.org")
    with pytest.raises(ProtocolError):
        peer.conn.send(GO_AHEAD)


def test_send_takes_only_a_reply() -> None:
    peer = Peer()
    peer.line("EHLO client.example.org")
    with pytest.raises(TypeError):
        peer.conn.send(b"250 OK\r\n")  # type: ignore[arg-type]  # the point of the test


# LMTP.


def lmtp_data(*recipients: str) -> Peer:
    peer = Peer(ServerConfig(lmtp=True))
    peer.data(*recipients)
    peer.feed(b"hi\r\n.\r\n")
    peer.body()
    return peer


def test_lmtp_takes_one_reply_per_recipient() -> None:
    peer = lmtp_data("a@example.org", "b@example.org")
    assert peer.conn.send(OK) == b"250 2.0.0 OK\r\n"
    assert peer.conn.next_event() is PAUSED
    assert peer.conn.send(REFUSED) == b"550 5.1.1 No such user\r\n"
    assert peer.conn.state is State.READY
    assert peer.conn.next_event() is NEED_DATA


def test_lmtp_replies_may_be_sent_together() -> None:
    peer = lmtp_data("a@example.org", "b@example.org")
    assert peer.conn.send_lmtp_replies([OK, REFUSED]) == (
        b"250 2.0.0 OK\r\n550 5.1.1 No such user\r\n"
    )
    assert peer.conn.state is State.READY


@pytest.mark.parametrize("count", [1, 3])
def test_lmtp_replies_of_the_wrong_number_are_a_protocol_error(count: int) -> None:
    peer = lmtp_data("a@example.org", "b@example.org")
    with pytest.raises(ProtocolError):
        peer.conn.send_lmtp_replies([OK] * count)
    assert peer.conn.send_lmtp_replies([OK, OK])


def test_lmtp_one_reply_too_many_is_a_protocol_error() -> None:
    peer = lmtp_data("a@example.org")
    peer.conn.send(OK)
    with pytest.raises(ProtocolError):
        peer.conn.send(OK)


def test_lmtp_replies_are_checked_before_any_is_sent() -> None:
    peer = lmtp_data("a@example.org", "b@example.org")
    with pytest.raises(ProtocolError):
        peer.conn.send_lmtp_replies([OK, GO_AHEAD])
    assert peer.conn.send_lmtp_replies([OK, OK])


def test_send_lmtp_replies_outside_lmtp_data_end_is_a_protocol_error() -> None:
    peer = Peer()
    peer.data()
    peer.feed(b".\r\n")
    peer.body()
    with pytest.raises(ProtocolError):
        peer.conn.send_lmtp_replies([OK])


def test_lmtp_too_big_takes_one_refusal_per_recipient() -> None:
    peer = Peer(ServerConfig(lmtp=True, max_message_size=1))
    peer.data("a@example.org", "b@example.org")
    peer.feed(b"big\r\n.\r\n")
    _, end = peer.body()
    assert end == DataEnd(True, ("a@example.org", "b@example.org"))
    too_big = Reply(code=552, enhanced_code=(5, 3, 4), lines="Too big")
    with pytest.raises(ProtocolError):
        peer.conn.send_lmtp_replies([too_big, OK])
    assert peer.conn.send_lmtp_replies([too_big, too_big]).count(b"552 5.3.4") == 2


def test_lmtp_bdat_last_takes_one_reply_per_recipient() -> None:
    peer = Peer(ServerConfig(lmtp=True))
    peer.transaction("a@example.org", "b@example.org")
    peer.feed(b"BDAT 2 LAST\r\nhi")
    peer.event()
    peer.body()
    peer.conn.send(OK)
    assert peer.conn.next_event() is PAUSED
    peer.conn.send(OK)
    assert peer.conn.state is State.READY


# STARTTLS.


def tls_peer() -> Peer:
    peer = Peer(ServerConfig(starttls=True, auth=True))
    peer.ehlo()
    return peer


def test_starttls_then_tls_started_needs_a_new_hello() -> None:
    peer = tls_peer()
    assert peer.line("STARTTLS") == StartTLS()
    assert peer.conn.send(Reply(code=220, enhanced_code=(2, 0, 0), lines="Go ahead")) == (
        b"220 2.0.0 Go ahead\r\n"
    )
    assert peer.conn.state is State.TLS_HANDSHAKE
    assert peer.conn.next_event() is PAUSED
    peer.conn.tls_started()
    assert peer.conn.tls
    assert peer.conn.hello is None
    assert peer.auto("MAIL FROM:<a@example.org>").startswith("503 5.5.1 ")


def test_starttls_discards_input_buffered_after_it() -> None:
    """CVE-2011-0411: commands sent before the handshake must not run inside TLS."""
    peer = tls_peer()
    peer.feed(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
    assert isinstance(peer.event(), StartTLS)
    peer.conn.send(Reply(code=220, lines="Go ahead"))
    peer.conn.tls_started()
    assert peer.conn.next_event() is NEED_DATA


def test_refused_starttls_keeps_the_buffered_input() -> None:
    peer = tls_peer()
    peer.feed(b"STARTTLS\r\nNOOP\r\n")
    peer.event()
    peer.conn.send(Reply(code=454, enhanced_code=(4, 7, 0), lines="TLS not available"))
    assert peer.conn.state is State.READY
    assert isinstance(peer.event(), ProtocolReply)


def test_ehlo_after_tls_does_not_offer_starttls_but_offers_auth() -> None:
    peer = tls_peer()
    peer.answer("STARTTLS", Reply(code=220, lines="Go ahead"))
    peer.conn.tls_started()
    answer = peer.ehlo()
    assert "STARTTLS" not in answer
    assert "AUTH PLAIN LOGIN" in answer


def test_starttls_again_after_tls_is_refused() -> None:
    peer = Peer(ServerConfig(starttls=True), tls=True)
    peer.ehlo()
    assert peer.auto("STARTTLS").startswith("503 5.5.1 ")


def test_starttls_forgets_the_transaction() -> None:
    peer = tls_peer()
    peer.transaction()
    peer.answer("RSET")
    peer.answer("STARTTLS", Reply(code=220, lines="Go ahead"))
    peer.conn.tls_started()
    assert peer.conn.recipients == ()
    assert peer.conn.mail_from is None


def test_starttls_in_a_transaction_is_refused() -> None:
    peer = tls_peer()
    peer.transaction()
    assert peer.auto("STARTTLS").startswith("503 5.5.1 ")


def test_starttls_before_hello_is_refused() -> None:
    assert Peer(ServerConfig(starttls=True)).auto("STARTTLS").startswith("503 5.5.1 ")


def test_starttls_with_an_argument_is_a_syntax_error() -> None:
    peer = tls_peer()
    assert peer.auto("STARTTLS now").startswith("501 5.5.4 ")


def test_starttls_not_offered_is_not_implemented() -> None:
    peer = Peer()
    peer.ehlo()
    assert peer.auto("STARTTLS").startswith("502 5.5.1 ")


def test_tls_started_without_starttls_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Peer().conn.tls_started()


def test_bytes_during_the_handshake_are_a_protocol_error() -> None:
    peer = tls_peer()
    peer.answer("STARTTLS", Reply(code=220, lines="Go ahead"))
    with pytest.raises(ProtocolError):
        peer.feed(b"\x16\x03\x01")


# AUTH.


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def auth_peer() -> Peer:
    peer = Peer(ServerConfig(auth=True), tls=True)
    peer.ehlo()
    return peer


def test_auth_plain_with_initial_response_gives_credentials() -> None:
    peer = auth_peer()
    event = peer.line("AUTH PLAIN " + b64(b"admin\0goodlogin\0goodpasswd"))
    assert event == AuthCredentials(
        mechanism="PLAIN", authorization_id="admin", username="goodlogin", password="goodpasswd"
    )
    assert "goodpasswd" not in repr(event)
    ok = Reply(code=235, enhanced_code=(2, 7, 0), lines="Authentication successful")
    assert peer.conn.send(ok) == b"235 2.7.0 Authentication successful\r\n"
    assert peer.conn.authenticated
    assert isinstance(peer.line("MAIL FROM:<a@example.org>"), MailFrom)


def test_auth_plain_with_a_challenge() -> None:
    peer = auth_peer()
    assert peer.auto("AUTH PLAIN") == "334 "
    event = peer.line(encode_plain("", "user", "pässword"))
    assert event == AuthCredentials(
        mechanism="PLAIN", authorization_id="", username="user", password="pässword"
    )


def test_auth_login_with_challenges() -> None:
    peer = auth_peer()
    assert peer.auto("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert peer.auto(b64(b"goodlogin")) == "334 UGFzc3dvcmQ6"
    event = peer.line(b64(b"goodpasswd"))
    assert event == AuthCredentials(
        mechanism="LOGIN", authorization_id="", username="goodlogin", password="goodpasswd"
    )


def test_auth_login_with_initial_username() -> None:
    peer = auth_peer()
    assert peer.auto("AUTH LOGIN " + b64(b"goodlogin")) == "334 UGFzc3dvcmQ6"
    assert isinstance(peer.line(b64(b"pw")), AuthCredentials)


def test_auth_login_with_empty_credentials_gives_them_to_the_app() -> None:
    peer = auth_peer()
    peer.auto("AUTH LOGIN")
    peer.auto("=")
    assert peer.line("=") == AuthCredentials(
        mechanism="LOGIN", authorization_id="", username="", password=""
    )


def test_refused_credentials_leave_the_session_unauthenticated() -> None:
    peer = auth_peer()
    peer.answer(
        "AUTH PLAIN " + b64(b"\0bad\0bad"),
        Reply(code=535, enhanced_code=(5, 7, 8), lines="Invalid credentials"),
    )
    assert not peer.conn.authenticated
    assert peer.conn.state is State.READY


@pytest.mark.parametrize("stage", [0, 1])
def test_auth_star_cancels(stage: int) -> None:
    peer = auth_peer()
    peer.auto("AUTH LOGIN")
    if stage:
        peer.auto(b64(b"user"))
    assert peer.auto("*") == "501 5.0.0 Authentication cancelled"
    assert peer.conn.state is State.READY


@pytest.mark.parametrize(
    "response",
    ["not-b64", "ab@%", b64(b"\0onlylogin"), "=", b64(b"a\0b\0c\0d"), b64(b"\0\xff\0pw")],
)
def test_auth_plain_bad_responses_are_refused_501(response: str) -> None:
    peer = auth_peer()
    assert peer.auto(f"AUTH PLAIN {response}").startswith("501 5.5.2 ")
    assert peer.conn.state is State.READY


def test_auth_login_bad_base64_is_refused_501() -> None:
    peer = auth_peer()
    assert peer.auto("AUTH LOGIN ab@%").startswith("501 5.5.2 ")


def test_auth_response_that_is_not_ascii_is_refused_501() -> None:
    peer = auth_peer()
    peer.auto("AUTH PLAIN")
    assert peer.auto(b"\xff\xfe").startswith("501 5.5.2 ")


def test_auth_unknown_mechanism_is_refused_504() -> None:
    assert auth_peer().auto("AUTH CRAM-MD5").startswith("504 5.5.4 ")


def test_auth_before_tls_is_refused_538() -> None:
    peer = Peer(ServerConfig(auth=True))
    peer.ehlo()
    assert peer.auto("AUTH PLAIN").startswith("538 5.7.11 ")


def test_auth_without_tls_when_allowed() -> None:
    peer = Peer(ServerConfig(auth=True, auth_without_tls=True))
    peer.ehlo()
    assert peer.auto("AUTH PLAIN") == "334 "


def test_auth_twice_is_refused() -> None:
    peer = auth_peer()
    peer.answer("AUTH PLAIN " + b64(b"\0u\0p"), Reply(code=235, enhanced_code=(2, 7, 0)))
    assert peer.auto("AUTH PLAIN " + b64(b"\0u\0p")) == "503 5.5.1 Already authenticated"


def test_auth_in_a_transaction_is_refused() -> None:
    peer = auth_peer()
    peer.transaction()
    assert peer.auto("AUTH PLAIN").startswith("503 5.5.1 ")


def test_auth_after_helo_is_refused() -> None:
    peer = Peer(ServerConfig(auth=True), tls=True)
    peer.ehlo("HELO")
    assert peer.auto("AUTH PLAIN").startswith("503 5.5.1 ")


def test_auth_not_enabled_is_not_implemented() -> None:
    peer = Peer(tls=True)
    peer.ehlo()
    assert peer.auto("AUTH PLAIN").startswith("502 5.5.1 ")


def test_authentication_survives_rset() -> None:
    peer = auth_peer()
    peer.answer("AUTH PLAIN " + b64(b"\0u\0p"), Reply(code=235, enhanced_code=(2, 7, 0)))
    peer.answer("RSET")
    assert peer.conn.authenticated


def test_auth_initial_response_longer_than_512_is_read() -> None:
    peer = auth_peer()
    event = peer.line("AUTH PLAIN " + b64(b"\0user\0" + b"p" * 2000))
    assert isinstance(event, AuthCredentials)


# Limits.


def test_too_long_command_is_refused_500_556() -> None:
    assert Peer().auto("a" * 513) == "500 5.5.6 Line too long"


def test_command_of_exactly_the_limit_is_read() -> None:
    line = "NOOP " + "x" * (512 - len("NOOP ") - 2)
    assert Peer().auto(line) == "250 2.0.0 OK"


def test_longer_lines_with_a_larger_limit() -> None:
    assert Peer(ServerConfig(max_line_length=4096)).auto("NOOP " + "x" * 3000) == "250 2.0.0 OK"


def test_a_huge_line_is_never_held_and_the_next_command_is_served() -> None:
    peer = Peer()
    replies = []
    for _ in range(100):
        peer.feed(b"a" * 1_000_000)
        event = peer.conn.next_event()
        if isinstance(event, ProtocolReply):
            replies.append(event.data)
        assert len(peer.conn._buf) < 1024  # white box: nothing of the line is held
    assert replies == [b"500 5.5.6 Line too long\r\n"]
    peer.feed(b"a" * 1001 + b"\r\n")
    assert peer.auto("NOOP") == "250 2.0.0 OK"


def test_too_long_line_followed_by_a_command_in_the_same_read() -> None:
    peer = Peer()
    peer.feed(b"a" * 600 + b"\r\nNOOP\r\n")
    assert isinstance(peer.event(), ProtocolReply)
    event = peer.event()
    assert isinstance(event, ProtocolReply)
    assert event.data == b"250 2.0.0 OK\r\n"


def test_too_many_errors_answer_421_and_close() -> None:
    peer = Peer(ServerConfig(max_errors=3))
    for _ in range(3):
        assert peer.auto("FOO").startswith("500 ")
    assert peer.auto("FOO") == "421 4.7.0 Too many errors, closing connection"
    assert isinstance(peer.event(), ConnectionClosed)


def test_refusals_by_policy_do_not_count_as_errors() -> None:
    peer = Peer(ServerConfig(max_errors=1, max_recipients=1))
    peer.transaction()
    for _ in range(5):
        assert peer.auto("RCPT TO:<x@example.org>").startswith("452 ")


def test_config_refuses_a_line_limit_below_512() -> None:
    with pytest.raises(ValueError, match="max_line_length"):
        ServerConfig(max_line_length=100)


# Properties.


def answer(event: Command) -> Reply:
    """A scripted application: accepts what it can, refuses a few things."""
    if isinstance(event, StartData):
        return GO_AHEAD
    if isinstance(event, StartTLS):
        return Reply(code=454, enhanced_code=(4, 7, 0), lines="No TLS")
    if isinstance(event, RcptTo) and event.recipient.startswith("bad"):
        return REFUSED
    if isinstance(event, AuthCredentials):
        return Reply(code=235 if event.password == "good" else 535)
    if isinstance(event, DataEnd) and event.too_big:
        return Reply(code=552, enhanced_code=(5, 3, 4), lines="Too big")
    return OK


def run(
    config: ServerConfig,
    reads: Sequence[bytes],
    app: Callable[[Command], Reply] = answer,
) -> list[object]:
    """Feed `reads`, then the close; the events (data coalesced) and every byte sent."""
    conn = ServerConnection(config)
    log: list[object] = [conn.send(Reply(code=220, lines="mx"))]
    for data in [*reads, b""]:
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            assert event is not PAUSED
            if event is NEED_DATA:
                break
            if isinstance(event, DataChunk) and log and isinstance(log[-1], DataChunk):
                log[-1] = DataChunk(log[-1].data + event.data)
            else:
                log.append(event)
            if isinstance(event, ConnectionClosed):
                return log
            if isinstance(event, DataEnd) and config.lmtp:
                log.append(conn.send_lmtp_replies([app(event)] * len(event.recipients)))
            elif isinstance(event, Command):
                log.append(conn.send(app(event)))
    raise AssertionError("the close was not reported")


TOKENS = [
    b"EHLO client.example.org\r\n",
    b"LHLO client.example.org\r\n",
    b"HELO client.example.org\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<> SIZE=10\r\n",
    b"RCPT TO:<b@example.org>\r\n",
    b"RCPT TO:<bad@example.org>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN " + b64(b"\0u\0good").encode() + b"\r\n",
    b64(b"\0u\0bad").encode() + b"\r\n",
    b"*\r\n",
    b"QUIT\r\n",
    b"line of text\r\n",
    b"..dotted\r\n",
    b".\r\n",
    b"\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r",
    b"\n",
    b".",
    b"abcde",
    b"x" * 600,
    b"\xff\x80",
]

configs = st.builds(
    ServerConfig,
    lmtp=st.booleans(),
    chunking=st.booleans(),
    auth=st.booleans(),
    auth_without_tls=st.just(True),
    starttls=st.booleans(),
    max_message_size=st.sampled_from([None, 10, 100]),
    max_recipients=st.sampled_from([1, 3]),
    max_errors=st.sampled_from([2, 20]),
)
scripts = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=20), max_size=40).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [p for p in pieces if p]  # b"" would be the peer's close


@settings(max_examples=300, deadline=None)
@given(configs, scripts, st.lists(st.integers(min_value=0), max_size=20))
def test_any_split_of_the_input_gives_the_same_events_and_replies(
    config: ServerConfig, script: bytes, cuts: list[int]
) -> None:
    assert run(config, split(script, cuts)) == run(config, [script])


@settings(max_examples=300, deadline=None)
@given(configs, st.lists(st.binary(max_size=200) | st.sampled_from(TOKENS), max_size=30))
def test_arbitrary_bytes_give_only_events_and_replies(
    config: ServerConfig, reads: list[bytes]
) -> None:
    log = run(config, reads)
    assert isinstance(log[-1], ConnectionClosed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=10))
def test_a_dot_stuffed_body_comes_back_with_crlf_line_endings(body: bytes, cuts: list[int]) -> None:
    peer = Peer()
    peer.data()
    for piece in split(dot_stuff(body), cuts):
        peer.feed(piece)
    received, end = peer.body()
    expected = normalize_line_endings(body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert received == expected
    assert isinstance(end, DataEnd)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.booleans())
def test_bdat_chunks_come_back_with_crlf_line_endings(chunks: list[bytes], lmtp: bool) -> None:
    peer = Peer(ServerConfig(lmtp=lmtp))
    peer.transaction()
    received = b""
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        peer.feed(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
        assert isinstance(peer.event(), ChunkStart)
        data, end = peer.body()
        received += data
        assert isinstance(end, DataEnd if last else ChunkEnd)
        peer.conn.send(OK)
    assert received == normalize_line_endings(b"".join(chunks))


def test_docstring_example_runs() -> None:
    result = doctest.testmod(mailmodule.smtp._server, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_dsn_parameters_can_be_accepted_without_offering_dsn() -> None:
    conn = ServerConnection(ServerConfig(dsn_parameters=True))
    conn.send(Reply(code=220, lines="mx"))
    conn.receive_data(b"EHLO c.example\r\n")
    conn.next_event()
    assert b"DSN" not in conn.send(Reply(code=250, lines="mx"))
    conn.receive_data(b"MAIL FROM:<a@example.org> RET=HDRS ENVID=x\r\n")
    mail = conn.next_event()
    assert isinstance(mail, MailFrom)
    assert (mail.options.return_, mail.options.envelope_id) == ("HDRS", "x")
    conn.send(Reply(code=250, enhanced_code=(2, 1, 0)))
    conn.receive_data(b"RCPT TO:<b@example.org> NOTIFY=NEVER\r\n")
    rcpt = conn.next_event()
    assert isinstance(rcpt, RcptTo)
    assert rcpt.options.notify == ("NEVER",)
