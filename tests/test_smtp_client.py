"""The SMTP/LMTP client state machine, driven without sockets: against our own server
state machine in memory, and against hostile byte streams."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import mailmodule.smtp._client
import mailmodule.smtp._client_body
import mailmodule.smtp._client_extensions
from mailmodule import address
from mailmodule.errors import SMTPError
from mailmodule.metadata import MailOptions, RcptOptions
from mailmodule.smtp import (
    NEED_DATA,
    BodyReply,
    ChunkEnd,
    ChunkStart,
    ClientConnection,
    ClientState,
    Command,
    CommandReply,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DotEncoder,
    Event,
    Extensions,
    Greeting,
    ProtocolError,
    ProtocolReply,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartData,
    Verb,
    dot_stuff,
    xtext_encode,
)
from mailmodule.smtp._data import normalize_line_endings
from mailmodule.testing import strategies

OK = Reply(code=250, enhanced_code=(2, 0, 0), lines="OK")
NO_SUCH_USER = Reply(code=550, enhanced_code=(5, 1, 1), lines="No such user")
GREETING = b"220 mx.example.org ESMTP\r\n"


class Wire:
    """A `ClientConnection` wired to a `ServerConnection` whose application accepts all
    but the `refused` recipients and keeps the body it is given."""

    def __init__(self, config: ServerConfig | None = None, *, refused: tuple[str, ...] = ()):
        self.config = config or ServerConfig()
        self.server = ServerConnection(self.config)
        self.client = ClientConnection(lmtp=self.config.lmtp)
        self.refused = refused
        self.body = bytearray()
        self.bodies: list[bytes] = []
        self.server_rcpt_options: list[RcptOptions] = []
        self.client.receive_data(self.server.send(Reply(code=220, lines="mx.example.org")))
        assert isinstance(self.client.next_event(), Greeting)

    def send(self, data: bytes) -> list[Event]:
        """Give the client's bytes to the server, answer, return the client's events."""
        self.server.receive_data(data)
        while True:
            event = self.server.next_event()
            if not isinstance(event, Event) or isinstance(event, ConnectionClosed):
                break
            answer = self._answer(event)
            if answer:
                self.client.receive_data(answer)
        events: list[Event] = []
        while isinstance(got := self.client.next_event(), Event):
            events.append(got)
            if isinstance(got, ConnectionClosed):
                break
        return events

    def _answer(self, event: Event) -> bytes:
        if isinstance(event, ProtocolReply):
            return event.data
        if isinstance(event, DataChunk):
            self.body += event.data
            return b""
        if isinstance(event, ChunkStart):
            return b""
        if isinstance(event, RcptTo):
            if event.recipient in self.refused:
                return self.server.send(NO_SUCH_USER)
            self.server_rcpt_options.append(event.options)
        if isinstance(event, StartData):
            return self.server.send(Reply(code=354, lines="Go ahead"))
        if isinstance(event, DataEnd):
            self.bodies.append(bytes(self.body))
            self.body.clear()
            if self.config.lmtp:
                return self.server.send_lmtp_replies([OK] * len(event.recipients))
        assert isinstance(event, Command | ChunkEnd), event
        return self.server.send(OK)

    def greet(self) -> Extensions:
        (reply,) = self.send(self.client.hello("client.example.org"))
        assert isinstance(reply, CommandReply)
        assert reply.reply.code == 250
        return self.client.extensions

    def transaction(self, rcpts: tuple[str, ...], options: MailOptions | None = None) -> None:
        data = self.client.mail("a@example.org", options)
        events = self.send(data + b"".join(self.client.rcpt(r) for r in rcpts))
        assert next(e.reply.code for e in events if isinstance(e, CommandReply)) == 250


def drain(conn: ClientConnection) -> list[Event]:
    events: list[Event] = []
    while isinstance(event := conn.next_event(), Event):
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def greeted(ehlo: bytes = b"250-mx.example.org\r\n250 PIPELINING\r\n") -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(GREETING)
    conn.next_event()
    conn.hello("client.example.org")
    conn.receive_data(ehlo)
    event = conn.next_event()
    assert isinstance(event, CommandReply)
    assert event.reply.code == 250
    return conn


def test_docstring_examples_run() -> None:
    for module in (
        mailmodule.smtp._client,
        mailmodule.smtp._client_body,
        mailmodule.smtp._client_extensions,
    ):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0
        assert result.failed == 0


# Against our own server.


def test_the_server_offer_is_read_from_the_ehlo_reply() -> None:
    ext = Wire(ServerConfig(max_message_size=1000, dsn=True)).greet()
    assert ext.pipelining
    assert ext.eightbitmime
    assert ext.smtputf8
    assert ext.chunking
    assert ext.dsn
    assert ext.size == 1000
    assert ext.enhanced_status_codes
    assert not ext.starttls
    assert not ext.auth


def test_a_message_goes_through_with_a_refused_recipient_reported_as_its_reply() -> None:
    wire = Wire(refused=("c@example.org",))
    wire.greet()
    events = wire.send(
        wire.client.mail("a@example.org")
        + wire.client.rcpt("b@example.org")
        + wire.client.rcpt("c@example.org")
    )
    codes = [(e.command, e.argument, e.reply.code) for e in events if isinstance(e, CommandReply)]
    assert codes == [
        (Verb.MAIL, "", 250),
        (Verb.RCPT, "b@example.org", 250),
        (Verb.RCPT, "c@example.org", 550),
    ]
    assert wire.client.recipients == ("b@example.org",)
    (go,) = wire.send(wire.client.data())
    assert isinstance(go, CommandReply)
    assert go.reply.code == 354
    (done,) = wire.send(
        wire.client.send_body(b"Subject: hi\r\n\r\nbody\r\n") + wire.client.end_body()
    )
    assert isinstance(done, BodyReply)
    assert done.reply.code == 250
    assert wire.bodies == [b"Subject: hi\r\n\r\nbody\r\n"]
    assert wire.client.state is ClientState.READY


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_any_body_in_any_pieces_arrives_as_the_server_reads_it(
    body: bytes, cuts: list[int]
) -> None:
    """Dot-stuffing and CRLF normalisation survive any split: the server reads the body
    with CRLF line endings, ending in CRLF, and nothing of it as commands."""
    wire = Wire()
    wire.greet()
    wire.transaction(("b@example.org",))
    wire.send(wire.client.data())
    out = b""
    start = 0
    for cut in sorted(cuts):
        out += wire.client.send_body(body[start:cut])
        start = max(start, cut)
    out += wire.client.send_body(body[start:]) + wire.client.end_body()
    (done,) = wire.send(out)
    assert isinstance(done, BodyReply)
    assert done.reply.code == 250
    expected = normalize_line_endings(body)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert wire.bodies == [expected]
    assert out == dot_stuff(body)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.binary(max_size=100), min_size=1, max_size=5))
def test_a_body_in_bdat_chunks_arrives_with_crlf_line_endings(chunks: list[bytes]) -> None:
    wire = Wire()
    wire.greet()
    wire.transaction(("b@example.org",))
    for chunk in chunks[:-1]:
        (reply,) = wire.send(wire.client.bdat(chunk))
        assert isinstance(reply, CommandReply)
        assert reply.reply.code == 250
    (done,) = wire.send(wire.client.bdat(chunks[-1], last=True))
    assert isinstance(done, BodyReply)
    assert done.reply.code == 250
    assert wire.bodies == [normalize_line_endings(b"".join(chunks))]


@pytest.mark.parametrize(
    "smuggled", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]
)
def test_a_smuggled_end_of_data_stays_inside_the_body(smuggled: bytes) -> None:
    wire = Wire()
    wire.greet()
    wire.transaction(("b@example.org",))
    wire.send(wire.client.data())
    evil = b"Subject: x\r\n\r\nhi" + smuggled + b"MAIL FROM:<evil@example.org>\r\n"
    (done,) = wire.send(wire.client.send_body(evil) + wire.client.end_body())
    assert isinstance(done, BodyReply)
    assert len(wire.bodies) == 1
    assert b"MAIL FROM:<evil@example.org>" in wire.bodies[0]
    assert wire.server.mail_from is None


def test_lmtp_gives_one_body_reply_per_accepted_recipient_in_order() -> None:
    wire = Wire(ServerConfig(lmtp=True), refused=("c@example.org",))
    wire.greet()
    wire.transaction(("b@example.org", "c@example.org", "d@example.org"))
    wire.send(wire.client.data())
    events = wire.send(wire.client.send_body(b"hi\r\n") + wire.client.end_body())
    assert [(e.recipient, e.reply.code) for e in events if isinstance(e, BodyReply)] == [
        ("b@example.org", 250),
        ("d@example.org", 250),
    ]
    assert wire.client.state is ClientState.READY


def test_lmtp_bdat_last_gives_one_reply_per_recipient() -> None:
    wire = Wire(ServerConfig(lmtp=True))
    wire.greet()
    wire.transaction(("b@example.org", "d@example.org"))
    events = wire.send(wire.client.bdat(b"hi\r\n", last=True))
    assert [e.recipient for e in events if isinstance(e, BodyReply)] == [
        "b@example.org",
        "d@example.org",
    ]


def test_a_second_message_follows_rset_on_the_same_session() -> None:
    wire = Wire()
    wire.greet()
    wire.transaction(("b@example.org",))
    (reset,) = wire.send(wire.client.rset())
    assert isinstance(reset, CommandReply)
    assert reset.command is Verb.RSET
    assert wire.client.recipients == ()
    wire.transaction(("c@example.org",))
    wire.send(wire.client.data())
    wire.send(wire.client.send_body(b"x") + wire.client.end_body())
    assert wire.bodies == [b"x\r\n"]


def test_quit_closes_the_session() -> None:
    wire = Wire()
    wire.greet()
    events = wire.send(wire.client.quit())
    assert isinstance(events[0], CommandReply)
    assert events[0].reply.code == 221
    assert wire.client.state is ClientState.CLOSED
    assert isinstance(wire.client.next_event(), ConnectionClosed)


def test_mail_parameters_the_server_takes_are_sent() -> None:
    wire = Wire(ServerConfig(dsn=True))
    wire.greet()
    opts = MailOptions(size=10, body="8BITMIME", utf8=True, return_="HDRS", envelope_id="id+1")
    data = wire.client.mail("jöe@example.org", opts)
    params = "SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1"
    assert data == f"MAIL FROM:<jöe@example.org> {params}\r\n".encode()
    (reply,) = wire.send(data)
    assert isinstance(reply, CommandReply)
    assert reply.reply.code == 250
    assert wire.server.mail_from is not None
    assert wire.server.mail_from.options.envelope_id == "id+1"
    rcpt = wire.client.rcpt(
        "b@example.org", RcptOptions(notify=("FAILURE",), original_recipient="o@x.org")
    )
    assert rcpt == b"RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=rfc822;o@x.org\r\n"


# What is sent only where the server offers it.


def test_parameters_the_server_does_not_offer_are_left_out() -> None:
    conn = greeted(b"250-mx.example.org\r\n250 PIPELINING\r\n")
    opts = MailOptions(size=10, body="8BITMIME", return_="FULL", envelope_id="x", auth="a@b.org")
    assert conn.mail("a@example.org", opts) == b"MAIL FROM:<a@example.org>\r\n"
    rcpt = conn.rcpt("b@example.org", RcptOptions(notify=("NEVER",)))
    assert rcpt == b"RCPT TO:<b@example.org>\r\n"


def test_an_idn_sender_becomes_a_labels_without_smtputf8() -> None:
    conn = greeted()
    assert conn.mail("a@bücher.example", MailOptions(utf8=True)) == (
        b"MAIL FROM:<a@xn--bcher-kva.example>\r\n"
    )


def test_a_non_ascii_local_part_without_smtputf8_is_a_permanent_5_6_7() -> None:
    conn = greeted()
    with pytest.raises(SMTPError) as info:
        conn.mail("jöe@example.org", MailOptions(utf8=True))
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 6, 7))
    assert conn.state is ClientState.READY
    conn.mail("a@example.org")
    with pytest.raises(SMTPError) as info:
        conn.rcpt("jöe@example.org")
    assert (info.value.code, info.value.enhanced_code) == (553, (5, 6, 7))


def test_requiretls_to_a_server_without_it_is_a_permanent_5_7_30() -> None:
    with pytest.raises(SMTPError) as info:
        greeted().mail("a@example.org", MailOptions(require_tls=True))
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 7, 30))


@pytest.mark.parametrize(
    "addr",
    [
        "a@example.org>\r\nRSET",
        "a@example.org\nDATA",
        "a\0@example.org",
        "<a@example.org>",
        "a b@x.org",
        "",
    ],
)
def test_an_address_that_could_inject_a_command_is_refused(addr: str) -> None:
    conn = greeted()
    conn.mail("a@example.org")
    with pytest.raises(SMTPError) as info:
        conn.rcpt(addr)
    assert info.value.code == 501
    assert conn.pending == 1  # only the MAIL went out


@pytest.mark.parametrize("name", ["client\r\nMAIL FROM:<a@b.org>", "", "a b", "bücher.example"])
def test_a_hello_name_that_is_no_ascii_domain_is_refused(name: str) -> None:
    conn = ClientConnection()
    conn.receive_data(GREETING)
    conn.next_event()
    with pytest.raises(ProtocolError):
        conn.hello(name)
    assert conn.state is ClientState.NEED_HELLO


def test_commands_wait_for_replies_when_the_server_offers_no_pipelining() -> None:
    conn = greeted(b"250 mx.example.org\r\n")
    conn.mail("a@example.org")
    with pytest.raises(ProtocolError, match="must wait"):
        conn.rcpt("b@example.org")


def test_mail_may_follow_rset_in_one_pipelined_group() -> None:
    conn = greeted()
    assert conn.rset() + conn.mail("a@example.org") == (b"RSET\r\nMAIL FROM:<a@example.org>\r\n")
    conn.receive_data(b"250 2.0.0 OK\r\n250 2.1.0 OK\r\n")
    assert [e.command for e in drain(conn) if isinstance(e, CommandReply)] == [
        Verb.RSET,
        Verb.MAIL,
    ]
    assert conn.state is ClientState.MAIL


def test_mail_waits_for_the_replies_to_a_body_even_with_pipelining() -> None:
    conn = ClientConnection(lmtp=True)
    steps: list[tuple[Callable[[], bytes], bytes]] = [
        (lambda: b"", b"220 mx\r\n"),
        (lambda: conn.hello("client.example.org"), b"250-mx\r\n250 PIPELINING\r\n"),
        (lambda: conn.mail("a@example.org") + conn.rcpt("b@x.org") + conn.rcpt("c@x.org"), b""),
        (lambda: b"", b"250 OK\r\n250 OK\r\n250 OK\r\n"),
        (conn.data, b"354 Go\r\n"),
        (conn.end_body, b"250 b is done\r\n"),
    ]
    for command, replies in steps:
        command()
        if replies:
            conn.receive_data(replies)
        drain(conn)
    assert conn.state is ClientState.READY
    assert conn.pending == 1  # c's reply
    with pytest.raises(ProtocolError, match="must wait"):
        conn.mail("a@example.org")


def test_a_command_out_of_sequence_is_refused_and_changes_nothing() -> None:
    conn = greeted()
    with pytest.raises(ProtocolError, match="not legal"):
        conn.rcpt("b@example.org")
    with pytest.raises(ProtocolError):
        conn.send_body(b"x")
    assert conn.state is ClientState.READY
    assert conn.pending == 0


def test_data_needs_an_accepted_recipient() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.receive_data(b"250 OK\r\n550 no\r\n")
    drain(conn)
    with pytest.raises(ProtocolError, match="recipient"):
        conn.data()


# A hostile or broken server.


def test_a_reply_line_longer_than_the_limit_raises_and_is_not_held() -> None:
    conn = ClientConnection(max_line_length=512)
    conn.receive_data(b"220 " + b"x" * 600)
    with pytest.raises(RemoteProtocolError, match="longer"):
        conn.next_event()
    conn.receive_data(b"y" * 1000)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is ClientState.CLOSED


def test_a_reply_of_too_many_lines_raises() -> None:
    conn = ClientConnection(max_reply_lines=5)
    conn.receive_data(b"220-x\r\n" * 10)
    with pytest.raises(RemoteProtocolError, match="lines"):
        conn.next_event()


def test_a_reply_nobody_asked_for_raises() -> None:
    conn = greeted()
    conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="nobody asked"):
        conn.next_event()


def test_an_unsolicited_421_closes_and_is_kept() -> None:
    conn = greeted()
    conn.receive_data(b"421 4.3.2 Shutting down\r\n")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.closing_reply is not None
    assert conn.closing_reply.enhanced_code == (4, 3, 2)


def test_a_421_answers_the_command_then_closes() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.receive_data(b"421 4.4.2 Timeout\r\n")
    (reply, closed) = drain(conn)
    assert isinstance(reply, CommandReply)
    assert reply.command is Verb.MAIL
    assert reply.reply.code == 421
    assert isinstance(closed, ConnectionClosed)


def test_bytes_after_starttls_reply_before_the_handshake_are_an_injection() -> None:
    conn = greeted(b"250-mx.example.org\r\n250 STARTTLS\r\n")
    conn.starttls()
    conn.receive_data(b"220 Go ahead\r\n250 injected\r\n")
    with pytest.raises(RemoteProtocolError, match="STARTTLS"):
        conn.next_event()


def test_starttls_then_hello_again_forgets_the_old_offer() -> None:
    conn = greeted(b"250-mx.example.org\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n")
    conn.starttls()
    conn.receive_data(b"220 Go ahead\r\n")
    assert isinstance(conn.next_event(), CommandReply)
    assert conn.state is ClientState.TLS_HANDSHAKE
    conn.tls_started()
    assert conn.tls
    assert conn.extensions == Extensions()
    assert conn.hello("client.example.org") == b"EHLO client.example.org\r\n"


def test_auth_plain_sends_the_initial_response() -> None:
    conn = greeted(b"250-mx.example.org\r\n250 AUTH PLAIN LOGIN\r\n")
    assert conn.auth_plain("joe", "pw") == b"AUTH PLAIN AGpvZQBwdw==\r\n"
    conn.receive_data(b"235 2.7.0 OK\r\n")
    assert isinstance(conn.next_event(), CommandReply)
    assert conn.state is ClientState.READY


def test_a_250_to_data_is_a_protocol_error() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.receive_data(b"250 OK\r\n250 OK\r\n")
    drain(conn)
    conn.data()
    conn.receive_data(b"250 OK\r\n")
    with pytest.raises(RemoteProtocolError, match="354"):
        conn.next_event()


def test_the_server_closing_ends_the_session() -> None:
    conn = greeted()
    conn.mail("a@example.org")
    conn.receive_data(b"250 part")
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.state is ClientState.CLOSED


@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(
                [
                    b"220 hi\r\n",
                    b"250-x\r\n",
                    b"250 OK\r\n",
                    b"250-PIPELINING\r\n250-STARTTLS\r\n250 CHUNKING\r\n",
                    b"354 go\r\n",
                    b"421 bye\r\n",
                    b"550 5.1.1 no\r\n",
                    b"334 \r\n",
                    b"\r\n",
                    b"999 x\r\n",
                    b"250 2.0.0 \xff\xfe\r\n",
                ]
            ),
        ),
        max_size=16,
    ),
    lmtp=st.booleans(),
)
def test_any_server_byte_stream_gives_events_or_a_remote_protocol_error(
    stream: list[bytes], lmtp: bool
) -> None:
    """Whatever the server sends, a client going through a whole transaction (as far as
    the replies let it) gets events, or a RemoteProtocolError that sticks."""
    conn = ClientConnection(lmtp=lmtp)
    sent: list[Callable[[], bytes]] = [
        lambda: conn.hello("client.example.org"),
        lambda: conn.mail("a@example.org"),
        lambda: conn.rcpt("b@x.org"),
        lambda: conn.rcpt("c@x.org"),
        conn.data,
        lambda: conn.send_body(b"x\n.\n") + conn.end_body(),
        conn.rset,
        conn.quit,
    ]
    error: RemoteProtocolError | None = None
    try:
        for piece in stream:
            conn.receive_data(piece)
            while isinstance(event := conn.next_event(), Event):
                if isinstance(event, ConnectionClosed):
                    return
                if conn.pending == 0 and sent:
                    try:
                        sent.pop(0)()
                    except ProtocolError:
                        pass  # not legal in the state the server's replies led to
                if conn.state is ClientState.TLS_HANDSHAKE:
                    return
    except RemoteProtocolError as exc:
        error = exc
    if error is None:
        assert conn.next_event() is NEED_DATA
        return
    assert error.code == 451
    assert error.is_temporary
    assert conn.state is ClientState.CLOSED
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@given(st.lists(st.text(max_size=30), max_size=10))
def test_any_ehlo_lines_parse_without_raising(lines: list[str]) -> None:
    ext = Extensions.parse(lines)
    assert all(name == name.upper() for name in ext.names)


def test_a_size_offer_that_is_no_number_means_no_limit() -> None:
    assert Extensions.parse(["mx", "SIZE lots"]).size == 0
    assert Extensions.parse(["mx", "SIZE"]).size == 0
    assert Extensions.parse(["mx"]).size is None


def test_a_dot_encoder_holds_a_cr_until_it_knows_what_follows() -> None:
    enc = DotEncoder()
    assert enc.feed(b"a\r") == b"a"
    assert enc.feed(b".b") == b"\r\n..b"
    assert enc.end() == b"\r\n.\r\n"


@settings(max_examples=60, deadline=None)
@given(
    sender=strategies.addresses.filter(lambda a: "@" in a),
    rcpt=strategies.addresses,
    options=strategies.mail_options,
    rcpt_options=strategies.rcpt_options,
)
def test_what_the_client_sends_our_server_reads_back_as_the_same_values(
    sender: str, rcpt: str, options: MailOptions, rcpt_options: RcptOptions
) -> None:
    # Neither REQUIRETLS nor AUTH is offered here, nor BINARYMIME; a non-ASCII recipient
    # needs SMTPUTF8 from MAIL on.
    options = attrs.evolve(
        options,
        require_tls=False,
        auth=None,
        body="" if options.body == "BINARYMIME" else options.body,
        utf8=options.utf8 or not rcpt.isascii(),
    )
    assume(len(xtext_encode(options.envelope_id)) <= 100)  # RFC 3461's limit, the server's
    wire = Wire(ServerConfig(dsn=True))
    wire.greet()
    (mail,) = wire.send(wire.client.mail(sender, options))
    assert isinstance(mail, CommandReply)
    assert mail.reply.code == 250, mail.reply
    got = wire.server.mail_from
    assert got is not None
    assert got.sender == address.clean_domain(sender)
    assert got.options == attrs.evolve(options, utf8=options.utf8 or not sender.isascii())
    (reply,) = wire.send(wire.client.rcpt(rcpt, rcpt_options))
    assert isinstance(reply, CommandReply)
    assert reply.reply.code == 250, reply.reply
    orcpt = rcpt_options.original_recipient
    kind = (rcpt_options.original_recipient_type or "rfc822") if orcpt else ""
    expected = attrs.evolve(rcpt_options, original_recipient_type=kind)
    assert wire.server_rcpt_options == [expected]


def test_binarymime_needs_the_servers_offer_and_bdat() -> None:
    with pytest.raises(SMTPError) as info:
        greeted().mail("a@example.org", MailOptions(body="BINARYMIME"))
    assert (info.value.code, info.value.enhanced_code) == (554, (5, 6, 3))
    conn = greeted(b"250-mx\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250 8BITMIME\r\n")
    assert conn.mail("a@example.org", MailOptions(body="BINARYMIME")) == (
        b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"
    )
    conn.receive_data(b"250 OK\r\n")
    drain(conn)
    conn.rcpt("b@example.org")
    conn.receive_data(b"250 OK\r\n")
    drain(conn)
    assert conn.binary
    with pytest.raises(ProtocolError, match="BDAT"):
        conn.data()
    assert conn.bdat(b"\0\1", last=True) == b"BDAT 2 LAST\r\n\0\1"
