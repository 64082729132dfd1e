"""The server side of SMTP and LMTP as a state machine: bytes in, events out, replies back.

No sockets and no asyncio: the caller moves the bytes, as with h11.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, final

import attrs

from mailmodule.errors import SMTPError
from mailmodule.smtp._auth import (
    LOGIN_PASSWORD_PROMPT,
    LOGIN_USERNAME_PROMPT,
    MECHANISMS,
    decode_login_field,
    decode_plain,
)
from mailmodule.smtp._commands import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    Verb,
    is_valid_hello_name,
    parse_bdat,
    parse_mail_from,
    parse_rcpt_to,
    split_command,
)
from mailmodule.smtp._config import ServerConfig
from mailmodule.smtp._data import ChunkDecoder, DotDecoder
from mailmodule.smtp._errors import ProtocolError
from mailmodule.smtp._events import (
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
    NoEvent,
    ProtocolReply,
    RcptTo,
    Reset,
    StartData,
    StartTLS,
)
from mailmodule.smtp._replies import Reply, format_reply
from mailmodule.smtp._state import ON_REFUSAL, TRANSITIONS, State, Step, Trigger

__all__ = ["ServerConnection"]

_AUTH_LINE_LENGTH: Final = 12288  # RFC 4954 section 4
_VERBS: Final = {verb.value: verb for verb in Verb}
_HELLOS: Final = frozenset({Verb.HELO, Verb.EHLO, Verb.LHLO})
_TOO_LONG: Final = object()
_CLOSED: Final = ConnectionClosed()


@final
class ServerConnection:
    """One SMTP or LMTP session, server side, as a sans-IO state machine.

    Feed the peer's bytes to `receive_data`, take events from `next_event`, answer each
    `Command` event with `send` (whose bytes you write to the peer), and write the `data`
    of each `ProtocolReply` event: those are the replies the protocol gives by itself
    (syntax errors 501 5.5.4, unknown commands 500 5.5.1, bad sequence 503 5.5.1, lines
    too long 500 5.5.6, NOOP, HELP, VRFY, QUIT's 221, AUTH's 334 challenges, 421 after
    too many errors). Start by sending the greeting (220, or 554 to refuse the session).

    Callers may assume: events come in the order of the commands, and one command is
    served at a time: after a `Command` event `next_event` returns `PAUSED` until its
    reply was sent, so pipelined commands wait in the buffer (stop reading from the peer
    while paused). A body arrives as `DataChunk`s as the bytes do, never held whole.
    After `ConnectionClosed`, every call to `next_event` returns it again and input is
    ignored. Not safe to share between threads.

        >>> conn = ServerConnection(ServerConfig(max_message_size=1000))
        >>> conn.send(Reply(code=220, lines="mx.example.org ESMTP"))
        b'220 mx.example.org ESMTP\\r\\n'
        >>> conn.receive_data(b"EHLO client.example.org\\r\\nMAIL FROM:<a@example.org>\\r\\n")
        >>> conn.next_event()
        Hello(verb='EHLO', name='client.example.org', valid=True)
        >>> conn.next_event()  # MAIL FROM waits for the answer to EHLO
        <NoEvent.PAUSED: 'PAUSED'>
        >>> conn.send(Reply(code=250, lines="mx.example.org"))
        b'250-mx.example.org\\r\\n250-PIPELINING\\r\\n250-8BITMIME\\r\\n...250 CHUNKING\\r\\n'
        >>> conn.next_event().sender
        'a@example.org'
        >>> conn.send(Reply(code=250, enhanced_code=(2, 1, 0), lines="OK"))
        b'250 2.1.0 OK\\r\\n'
        >>> conn.receive_data(b"RCPT TO:<b@example.org>\\r\\nDATA\\r\\n")
        >>> conn.next_event().recipient, conn.send(Reply(code=250, enhanced_code=(2, 1, 5)))
        ('b@example.org', b'250 2.1.5 OK\\r\\n')
        >>> conn.next_event(), conn.send(Reply(code=354, lines="Go ahead"))
        (StartData(), b'354 Go ahead\\r\\n')
        >>> conn.receive_data(b"Subject: hi\\r\\n\\r\\n..dot\\r\\n.\\r\\nQUIT\\r\\n")
        >>> conn.next_event()
        DataChunk(data=<21 bytes>)
        >>> conn.next_event()
        DataEnd(too_big=False, recipients=('b@example.org',))
        >>> conn.send(Reply(code=250, enhanced_code=(2, 0, 0), lines="Queued"))
        b'250 2.0.0 Queued\\r\\n'
        >>> conn.next_event().data, conn.next_event()
        (b'221 2.0.0 Bye\\r\\n', ConnectionClosed())

    Raises:
        ProtocolError: from any method, when the application misuses the state machine
            (see each method); the peer's errors never raise.
    """

    __slots__ = (
        "_auth_mechanism",
        "_auth_username",
        "_authenticated",
        "_body_size",
        "_buf",
        "_chunk",
        "_chunk_last",
        "_chunk_left",
        "_config",
        "_discard",
        "_dot",
        "_eof",
        "_errors",
        "_esmtp",
        "_hello",
        "_lmtp_due",
        "_mail",
        "_pending",
        "_rcpt_refused",
        "_recipients",
        "_skip_line",
        "_state",
        "_tls",
        "_too_big",
        "_trigger",
    )

    def __init__(self, config: ServerConfig | None = None, *, tls: bool = False) -> None:
        """Start a session; `tls` is true when the connection is already encrypted (the
        implicit TLS of port 465), so STARTTLS is not offered."""
        self._config = config if config is not None else ServerConfig()
        self._state = State.GREETING
        self._buf = bytearray()
        self._eof = False
        self._tls = tls
        self._authenticated = False
        self._esmtp = False
        self._hello: Hello | None = None
        self._pending: Command | None = None
        self._trigger: Trigger = Step.GREETED
        self._lmtp_due = 0
        self._errors = 0
        self._skip_line = False  # skipping the rest of a line that was too long
        self._discard = 0  # bytes of a refused BDAT chunk still to skip
        self._auth_mechanism = ""
        self._auth_username: str | None = None
        self._mail: MailFrom | None = None
        self._recipients: list[str] = []
        self._rcpt_refused = 0
        self._dot: DotDecoder | None = None  # None once DATA's end was read
        self._chunk = ChunkDecoder()
        self._chunk_left = 0
        self._chunk_last = False
        self._body_size = 0
        self._too_big = False

    # What the application may read.

    @property
    def config(self) -> ServerConfig:
        """The extensions and limits of this session."""
        return self._config

    @property
    def state(self) -> State:
        """Where the session is."""
        return self._state

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (from the start, or after `tls_started`)."""
        return self._tls

    @property
    def authenticated(self) -> bool:
        """Whether an AUTH exchange was accepted (2xx) in this TLS session."""
        return self._authenticated

    @property
    def hello(self) -> Hello | None:
        """The HELO, EHLO or LHLO the application accepted last, None before (and after
        STARTTLS, until the client greets again)."""
        return self._hello

    @property
    def mail_from(self) -> MailFrom | None:
        """The accepted MAIL FROM of the transaction under way, None outside one."""
        return self._mail

    @property
    def recipients(self) -> tuple[str, ...]:
        """The accepted recipients of the transaction under way, in order."""
        return tuple(self._recipients)

    def extensions(self) -> tuple[str, ...]:
        """The extension lines an EHLO or LHLO answer gets now, such as "SIZE 1000"."""
        cfg = self._config
        out: list[str] = []
        if cfg.pipelining:
            out.append("PIPELINING")
        if cfg.eightbitmime:
            out.append("8BITMIME")
        if cfg.smtputf8:
            out.append("SMTPUTF8")
        out.append(f"SIZE {cfg.max_message_size}" if cfg.max_message_size else "SIZE")
        if cfg.enhanced_status_codes:
            out.append("ENHANCEDSTATUSCODES")
        if cfg.starttls and not self._tls:
            out.append("STARTTLS")
        if self._auth_allowed():
            out.append("AUTH " + " ".join(MECHANISMS))
        if cfg.dsn:
            out.append("DSN")
        if cfg.requiretls and self._tls:
            out.append("REQUIRETLS")
        if cfg.chunking:
            out.append("CHUNKING")
        return tuple(out)

    # Input.

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; b"" means the peer closed its side.

        Input is ignored once the session is closed.

        Raises:
            ProtocolError: bytes after the peer's close, or during the TLS handshake
                (feed the decrypted bytes only after `tls_started`).
        """
        if self._state is State.CLOSED:
            return
        if self._eof:
            raise ProtocolError("receive_data() after the peer closed the connection")
        if not data:
            self._eof = True
        elif self._state is State.TLS_HANDSHAKE:
            raise ProtocolError("receive_data() during the TLS handshake: call tls_started()")
        else:
            self._buf += data

    def next_event(self) -> Event | NoEvent:
        """The next event, or `NEED_DATA` (feed more bytes), or `PAUSED` (a reply is due
        from you: the greeting or a `Command`'s answer; or the TLS handshake is on)."""
        state = self._state
        if state is State.CLOSED:
            return _CLOSED
        if self._pending is not None or state is State.GREETING or state is State.TLS_HANDSHAKE:
            return PAUSED
        if self._discard and not self._skip_chunk():
            return self._need_data()
        if state is State.DATA:
            return self._next_data()
        if state is State.CHUNK:
            return self._next_chunk()
        line = self._next_line()
        if line is None:
            return self._need_data()
        if line is _TOO_LONG:
            return self._refuse(500, (5, 5, 6), "Line too long")
        assert isinstance(line, bytes)
        if state is State.AUTH:
            return self._auth_response(line)
        return self._command(line)

    # Output.

    def send(self, reply: Reply) -> bytes:
        """Answer the pending `Command` (or send the greeting); returns the bytes to write.

        The greeting must be 220 (554 refuses the session: only QUIT is served then). A
        2xx answer to EHLO or LHLO gets `extensions()` appended and, as RFC 2034 asks, no
        enhanced status code; other 2xx/4xx/5xx replies carry one when
        ENHANCEDSTATUSCODES is on. A 421 may be sent at any time: it closes the session.

        Raises:
            ProtocolError: no reply is due; the reply is of the wrong kind (DATA takes
                354 or 4xx/5xx, RSET 2xx, a too-big body 4xx/5xx, nothing else a 3xx);
                or, in LMTP, more replies than recipients are sent after the body.
        """
        if not isinstance(reply, Reply):
            raise TypeError(f"send() takes a Reply, got {type(reply).__name__}")
        if self._state is State.CLOSED:
            raise ProtocolError("send() on a closed connection")
        if reply.code == 421:
            self._pending = None
            self._close()
            return self._format(reply)
        pending = self._pending
        if pending is None:
            if self._state is State.GREETING:
                return self._greet(reply)
            raise ProtocolError(f"send({reply.code}): no reply is due")
        self._check_reply(pending, reply)
        if isinstance(pending, DataEnd) and self._config.lmtp:
            self._lmtp_due -= 1
            if self._lmtp_due:
                return self._format(reply)
        data = self._format_answer(pending, reply)
        self._pending = None
        self._apply(pending, reply.is_positive)
        return data

    def send_lmtp_replies(self, replies: Sequence[Reply]) -> bytes:
        """Answer an LMTP `DataEnd` with one reply per accepted recipient, in order.

        Raises:
            ProtocolError: no LMTP `DataEnd` is waiting, the number of replies is not the
                number of recipients still to answer, or a reply is of the wrong kind;
                nothing is sent then.
        """
        pending = self._pending
        if not (self._config.lmtp and isinstance(pending, DataEnd)):
            raise ProtocolError("send_lmtp_replies(): no LMTP DataEnd is waiting for replies")
        if len(replies) != self._lmtp_due:
            raise ProtocolError(
                f"send_lmtp_replies(): {self._lmtp_due} replies are due, got {len(replies)}"
            )
        for reply in replies:
            self._check_reply(pending, reply)
        return b"".join(self.send(reply) for reply in replies)

    def tls_started(self) -> None:
        """Say the TLS handshake after STARTTLS succeeded: the session starts over.

        What the client said before is forgotten (its EHLO, the authentication); it must
        greet again, and STARTTLS is no longer offered.

        Raises:
            ProtocolError: no STARTTLS was accepted.
        """
        self._transition(Step.TLS_STARTED, accepted=True)
        self._tls = True
        self._authenticated = False
        self._hello = None
        self._esmtp = False

    # Commands.

    def _command(self, line: bytes) -> Event:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(500, (5, 5, 2), "Command is not valid UTF-8")
        word, arg = split_command(text)
        verb = _VERBS.get(word)
        if verb is Verb.BDAT:
            return self._bdat(arg)
        if verb is None or not self._offered(verb):
            if verb is None or verb in _HELLOS:
                return self._refuse(500, (5, 5, 1), "Command not recognized")
            return self._refuse(502, (5, 5, 1), "Command not implemented")
        if (self._state, verb) not in TRANSITIONS:
            return self._out_of_sequence(verb)
        if verb in _HELLOS:
            if not arg:
                return self._refuse(501, (5, 5, 4), f"Syntax: {verb} <domain>")
            valid = is_valid_hello_name(arg)
            return self._await(Hello(verb=verb.value, name=arg, valid=valid), verb)
        if verb is Verb.MAIL:
            return self._mail_from(arg)
        if verb is Verb.RCPT:
            return self._rcpt_to(arg)
        if verb is Verb.AUTH:
            return self._auth_start(arg)
        if verb is Verb.VRFY:
            if not arg:
                return self._refuse(501, (5, 5, 4), "Syntax: VRFY <address>")
            return self._reply(252, (2, 0, 0), "Cannot VRFY user, but will accept mail for it")
        if verb is Verb.NOOP:
            return self._reply(250, (2, 0, 0), "OK")
        if verb is Verb.HELP:
            return self._reply(214, (2, 0, 0), "Commands: " + " ".join(self._help()))
        if arg:
            return self._refuse(501, (5, 5, 4), f"Syntax: {verb} takes no argument")
        if verb is Verb.QUIT:
            self._transition(verb, accepted=True)
            return self._reply(221, (2, 0, 0), "Bye")
        if verb is Verb.RSET:
            return self._await(Reset(), verb)
        if verb is Verb.STARTTLS:
            if self._tls:
                return self._refuse(503, (5, 5, 1), "TLS is already active")
            return self._await(StartTLS(), verb)
        # DATA
        if not self._recipients:
            return self._no_recipients()
        return self._await(StartData(), verb)

    def _offered(self, verb: Verb) -> bool:
        cfg = self._config
        if verb in _HELLOS:
            return cfg.lmtp == (verb is Verb.LHLO)
        if verb is Verb.STARTTLS:
            return cfg.starttls
        if verb is Verb.AUTH:
            return cfg.auth
        if verb is Verb.BDAT:
            return cfg.chunking
        return verb is not Verb.EXPN

    def _help(self) -> list[str]:
        return [v.value for v in Verb if self._offered(v)]

    def _out_of_sequence(self, verb: Verb) -> ProtocolReply:
        state = self._state
        if state is State.REFUSED:
            text = "No service here: QUIT only"
        elif state is State.NEED_HELLO:
            text = "Send LHLO first" if self._config.lmtp else "Send EHLO or HELO first"
        elif verb is Verb.MAIL:
            text = "Nested MAIL command"
        elif verb in (Verb.RCPT, Verb.DATA, Verb.BDAT) and state is State.READY:
            text = "Need MAIL command"
        elif state is State.CHUNKED:
            text = f"{verb} after BDAT: only BDAT or RSET may follow"
        elif state is State.MAIL:
            text = f"{verb} is not allowed in a mail transaction"
        else:
            text = "Bad sequence of commands"
        return self._refuse(503, (5, 5, 1), text)

    def _no_recipients(self) -> ProtocolReply:
        if self._rcpt_refused:
            return self._refuse(554, (5, 5, 1), "No valid recipients")
        return self._refuse(503, (5, 5, 1), "Need RCPT command")

    def _mail_from(self, arg: str) -> Event:
        try:
            sender, options = parse_mail_from(
                arg, allowed=self._mail_parameters(), max_size=self._config.max_message_size
            )
        except SMTPError as err:
            return self._refuse_error(err)
        return self._await(MailFrom(sender, options), Verb.MAIL)

    def _mail_parameters(self) -> frozenset[str]:
        if not self._esmtp:
            return frozenset()
        cfg = self._config
        offered = {
            "SIZE": True,
            "BODY": cfg.eightbitmime,
            "SMTPUTF8": cfg.smtputf8,
            "REQUIRETLS": cfg.requiretls and self._tls,
            "RET": cfg.dsn or cfg.dsn_parameters,
            "ENVID": cfg.dsn or cfg.dsn_parameters,
            "AUTH": self._auth_allowed(),
        }
        return frozenset(k for k, on in offered.items() if on) & MAIL_PARAMETERS

    def _rcpt_to(self, arg: str) -> Event:
        if len(self._recipients) >= self._config.max_recipients:
            return self._reply(452, (4, 5, 3), "Too many recipients")
        cfg = self._config
        dsn = cfg.dsn or cfg.dsn_parameters
        allowed = RCPT_PARAMETERS if self._esmtp and dsn else frozenset()
        utf8 = self._mail is not None and self._mail.options.utf8
        try:
            recipient, options = parse_rcpt_to(arg, allowed=allowed, utf8=utf8)
        except SMTPError as err:
            return self._refuse_error(err)
        return self._await(RcptTo(recipient, options), Verb.RCPT)

    # AUTH.

    def _auth_allowed(self) -> bool:
        cfg = self._config
        return cfg.auth and (self._tls or cfg.auth_without_tls)

    def _auth_start(self, arg: str) -> Event:
        if not self._esmtp:
            return self._refuse(503, (5, 5, 1), "Send EHLO first")
        if self._authenticated:
            return self._refuse(503, (5, 5, 1), "Already authenticated")
        if not self._auth_allowed():
            return self._refuse(538, (5, 7, 11), "Encryption required for authentication")
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        initial = initial.strip(" ")
        if mechanism not in MECHANISMS:
            return self._refuse(504, (5, 5, 4), "Unrecognized authentication type")
        self._transition(Verb.AUTH, accepted=True)
        self._auth_mechanism = mechanism
        self._auth_username = None
        if initial:
            return self._auth_text(initial)
        prompt = "" if mechanism == "PLAIN" else LOGIN_USERNAME_PROMPT
        return self._reply(334, None, prompt)

    def _auth_response(self, line: bytes) -> Event:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            text = "\0"  # not base64: refused below
        if text.strip(" ") == "*":
            self._transition(Step.AUTH_DONE, accepted=False)
            return self._refuse(501, (5, 0, 0), "Authentication cancelled")
        return self._auth_text(text.strip(" "))

    def _auth_text(self, text: str) -> Event:
        try:
            if self._auth_mechanism == "PLAIN":
                authzid, username, password = decode_plain(text)
            elif self._auth_username is None:
                self._auth_username = decode_login_field(text)
                return self._reply(334, None, LOGIN_PASSWORD_PROMPT)
            else:
                authzid, username = "", self._auth_username
                password = decode_login_field(text)
        except SMTPError as err:
            self._transition(Step.AUTH_DONE, accepted=False)
            return self._refuse_error(err)
        event = AuthCredentials(
            mechanism=self._auth_mechanism,
            authorization_id=authzid,
            username=username,
            password=password,
        )
        return self._await(event, Step.AUTH_DONE)

    # Bodies.

    def _bdat(self, arg: str) -> Event:
        parsed = parse_bdat(arg)
        if parsed is None:
            return self._refuse(501, (5, 5, 4), "Syntax: BDAT <size> [LAST]")
        size, last = parsed
        # A refused chunk is still read and dropped: its bytes are never commands.
        if not self._offered(Verb.BDAT):
            self._discard = size
            return self._refuse(502, (5, 5, 1), "Command not implemented")
        if (self._state, Verb.BDAT) not in TRANSITIONS:
            self._discard = size
            return self._out_of_sequence(Verb.BDAT)
        if self._state is State.MAIL:
            if not self._recipients:
                self._discard = size
                return self._no_recipients()
            self._start_body()
        self._transition(Verb.BDAT, accepted=True)
        self._chunk_left = size
        self._chunk_last = last
        return ChunkStart(size=size, last=last)

    def _skip_chunk(self) -> bool:
        """Drop buffered bytes of a refused BDAT chunk; True once all are dropped."""
        take = min(self._discard, len(self._buf))
        del self._buf[:take]
        self._discard -= take
        return not self._discard

    def _start_body(self) -> None:
        self._body_size = 0
        self._too_big = False
        self._dot = DotDecoder()
        self._chunk = ChunkDecoder()

    def _count(self, data: bytes) -> bytes:
        """What of `data` fits within the size limit; once past it, the body is too big."""
        if not data or self._too_big:
            return b""
        before = self._body_size
        self._body_size += len(data)
        limit = self._config.max_message_size
        if limit is not None and self._body_size > limit:
            self._too_big = True
            return data[: limit - before]
        return data

    def _next_data(self) -> Event | NoEvent:
        decoder = self._dot
        if decoder is None:
            return self._body_end()
        if not self._buf:
            return self._need_data()
        data = bytes(self._buf)
        self._buf.clear()
        out, end = decoder.feed(data)
        if end >= 0:
            self._dot = None
            self._buf += memoryview(data)[end:]
        out = self._count(out)
        if out:
            return DataChunk(out)
        if self._dot is None:
            return self._body_end()
        return self._need_data()

    def _next_chunk(self) -> Event | NoEvent:
        out = b""
        if self._chunk_left:
            if not self._buf:
                return self._need_data()
            take = min(self._chunk_left, len(self._buf))
            raw = bytes(self._buf[:take])
            del self._buf[:take]
            self._chunk_left -= take
            out = self._chunk.feed(raw)
        if not self._chunk_left and self._chunk_last:
            out += self._chunk.feed(b"", final=True)
        out = self._count(out)
        if out:
            return DataChunk(out)
        if self._chunk_left:
            return self._need_data()
        if self._chunk_last:
            return self._body_end()
        return self._await(ChunkEnd(self._too_big), Step.CHUNK_END)

    def _body_end(self) -> DataEnd:
        event = DataEnd(self._too_big, tuple(self._recipients))
        self._lmtp_due = len(self._recipients)
        self._await(event, Step.BODY_END)
        return event

    # Lines.

    def _line_limit(self) -> int:
        limit = self._config.max_line_length
        if self._state is State.AUTH or self._buf[:5].upper() == b"AUTH ":
            return max(limit, _AUTH_LINE_LENGTH)
        return limit

    def _next_line(self) -> bytes | object | None:
        """A command line without its line end; None if incomplete; _TOO_LONG."""
        buf = self._buf
        if self._skip_line:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._skip_line = False
        limit = self._line_limit()
        end = buf.find(b"\n", 0, limit)
        if end < 0:
            if len(buf) < limit:
                return None
            end = buf.find(b"\n", limit)
            if end < 0:
                buf.clear()
                self._skip_line = True
            else:
                del buf[: end + 1]
            return _TOO_LONG
        line = bytes(buf[:end])
        del buf[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    # Replies and transitions.

    def _greet(self, reply: Reply) -> bytes:
        if reply.code not in (220, 554):
            raise ProtocolError(f"the greeting must be 220, 554 or 421, got {reply.code}")
        self._transition(Step.GREETED, accepted=reply.code == 220)
        return format_reply(reply, enhanced=False)

    def _check_reply(self, pending: Command, reply: Reply) -> None:
        kind = reply.code // 100
        name = type(pending).__name__
        if isinstance(pending, StartData):
            if kind == 2 or (kind == 3 and reply.code != 354):
                raise ProtocolError(f"DATA takes 354 or a 4xx/5xx reply, got {reply.code}")
        elif kind == 3:
            raise ProtocolError(f"{name} takes a 2xx, 4xx or 5xx reply, got {reply.code}")
        elif isinstance(pending, Reset) and kind != 2:
            raise ProtocolError(f"RSET takes a 2xx reply, got {reply.code}")
        elif isinstance(pending, DataEnd) and pending.too_big and kind == 2:
            raise ProtocolError(f"a body that was too big takes a 4xx/5xx reply, got {reply.code}")

    def _format(self, reply: Reply) -> bytes:
        return format_reply(reply, enhanced=self._config.enhanced_status_codes)

    def _format_answer(self, pending: Command, reply: Reply) -> bytes:
        if isinstance(pending, Hello) and reply.code // 100 == 2:
            if pending.verb != Verb.HELO:
                reply = attrs.evolve(reply, lines=reply.lines + self.extensions())
            return format_reply(reply, enhanced=False)
        return self._format(reply)

    def _apply(self, pending: Command, accepted: bool) -> None:
        """Move on after the application answered `pending`."""
        self._transition(self._trigger, accepted=accepted)
        if isinstance(pending, RcptTo):
            if accepted:
                self._recipients.append(pending.recipient)
            else:
                self._rcpt_refused += 1
        elif isinstance(pending, MailFrom):
            if accepted:
                self._mail = pending
        elif isinstance(pending, StartData):
            if accepted:
                self._start_body()
        elif isinstance(pending, AuthCredentials):
            self._authenticated = accepted
        elif isinstance(pending, StartTLS):
            if accepted:
                self._buf.clear()  # what came after STARTTLS was not encrypted: drop it
                self._skip_line = False
                self._reset_transaction()
        elif isinstance(pending, Hello):
            if accepted:
                self._hello = pending
                self._esmtp = pending.verb != Verb.HELO
                self._reset_transaction()
        elif not (isinstance(pending, ChunkEnd) and accepted):
            self._reset_transaction()  # RSET, the end of a body, a refused chunk

    def _reset_transaction(self) -> None:
        self._mail = None
        self._recipients = []
        self._rcpt_refused = 0
        self._dot = None
        self._too_big = False

    def _transition(self, trigger: Trigger, *, accepted: bool) -> None:
        key = (self._state, trigger)
        target = TRANSITIONS.get(key)
        if target is None:
            raise ProtocolError(f"{trigger.value} is not legal in state {self._state.value}")
        self._state = target if accepted else ON_REFUSAL.get(key, self._state)

    def _await(self, event: Command, trigger: Trigger) -> Command:
        self._pending = event
        self._trigger = trigger
        return event

    def _reply(self, code: int, enhanced: tuple[int, int, int] | None, text: str) -> ProtocolReply:
        reply = Reply(code=code, enhanced_code=enhanced, lines=text)
        return ProtocolReply(reply, self._format(reply))

    def _refuse(self, code: int, enhanced: tuple[int, int, int], text: str) -> ProtocolReply:
        if enhanced[:2] == (5, 5):  # the client's mistakes count, the policy's do not
            self._errors += 1
            if self._errors > self._config.max_errors:
                self._close()
                return self._reply(421, (4, 7, 0), "Too many errors, closing connection")
        return self._reply(code, enhanced, text)

    def _refuse_error(self, err: SMTPError) -> ProtocolReply:
        reply = Reply.from_error(err)
        return self._refuse(
            reply.code, reply.enhanced_code or (reply.code // 100, 0, 0), err.message
        )

    def _need_data(self) -> NoEvent | ConnectionClosed:
        if self._eof:
            self._close()
            return _CLOSED
        return NEED_DATA

    def _close(self) -> None:
        self._state = State.CLOSED
        self._buf.clear()
        self._reset_transaction()
