"""The client side of SMTP and LMTP as a state machine: commands out, replies in, events.

No sockets and no asyncio: the caller moves the bytes, as with h11. Every command line is
built here from checked values, so nothing the application passes can inject a line.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Final, final

import attrs

from mailmodule import address
from mailmodule.errors import AddressError, SMTPError
from mailmodule.metadata import MailOptions, RcptOptions
from mailmodule.smtp._auth import encode_plain
from mailmodule.smtp._client_body import ChunkEncoder, DotEncoder
from mailmodule.smtp._client_errors import RemoteProtocolError
from mailmodule.smtp._client_events import BodyReply, CommandReply, Greeting
from mailmodule.smtp._client_extensions import Extensions
from mailmodule.smtp._client_state import (
    MUST_WAIT,
    ON_REPLY,
    SEND,
    ClientState,
    ClientStep,
    ClientTrigger,
)
from mailmodule.smtp._commands import Verb, format_mail_from, format_rcpt_to, is_valid_hello_name
from mailmodule.smtp._errors import ProtocolError
from mailmodule.smtp._events import NEED_DATA, ConnectionClosed, Event, NoEvent
from mailmodule.smtp._replies import Reply

__all__ = ["ClientConnection"]

_CLOSED: Final = ConnectionClosed()
_ENHANCED: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_BODY_ENDS: Final = (ClientStep.BODY_END, ClientStep.BDAT_LAST)
_FORBIDDEN: Final = frozenset("\r\n\0")


def _line(text: str) -> bytes:
    return text.encode("utf-8") + b"\r\n"


def _positive(trigger: ClientTrigger, code: int) -> bool:
    if trigger is Verb.DATA:
        return code == 354
    return code // 100 == 2


def _checked_address(addr: str, *, sender: bool) -> str:
    """`addr` if it is an address a command line may carry.

    Raises:
        SMTPError: 501 5.1.7 (sender) or 501 5.1.3 (recipient).
    """
    ok = bool(addr) and not _FORBIDDEN.intersection(addr) and address.is_valid(addr)
    if not ok or (sender and "@" not in addr):
        which = ((5, 1, 7), "sender") if sender else ((5, 1, 3), "recipient")
        raise SMTPError(501, which[0], f"Bad {which[1]} address syntax: {addr!r}")
    return addr


@final
@attrs.frozen
class _Pending:
    trigger: ClientTrigger
    argument: str = ""


@final
class ClientConnection:
    """One SMTP or LMTP session, client side, as a sans-IO state machine.

    Each command method (`hello`, `starttls`, `auth_plain`, `mail`, `rcpt`, `data`,
    `send_body`, `end_body`, `bdat`, `rset`, `noop`, `quit`) returns the bytes to write
    to the server. Feed the server's bytes to `receive_data` and take replies from
    `next_event`: the `Greeting` first, then one `CommandReply` per command line sent,
    in order, and `BodyReply`s after a body (one per accepted recipient in LMTP).

    What the server offers decides what is sent: after EHLO/LHLO, `extensions` holds its
    offer; MAIL FROM carries SIZE, BODY, SMTPUTF8, REQUIRETLS, DSN and AUTH parameters only
    where the server offers their extension (SMTPUTF8 and DSN parameters are dropped, the
    addresses turned to A-labels, where it does not). Commands may be pipelined (sent
    before earlier replies) only when the server offers PIPELINING, and then only those
    RFC 2920 lets continue a group (RCPT, RSET, NOOP, QUIT; MAIL after RSET or NOOP).

    Limits against a hostile server: a reply line longer than `max_line_length` bytes
    (with its CRLF), a reply of more than `max_reply_lines` lines, a reply nobody asked
    for (but an unsolicited 421), bytes sent after STARTTLS's 220 before the handshake:
    each raises `RemoteProtocolError`, which is raised again by every later
    `next_event`. A 421 reply ends the session: it is given as the answer to the
    command it came for (or kept in `closing_reply`), then `ConnectionClosed`.

        >>> conn = ClientConnection()
        >>> conn.receive_data(b"220 mx.example.org ESMTP\\r\\n")
        >>> conn.next_event()
        Greeting(reply=Reply(code=220, enhanced_code=None, lines=('mx.example.org ESMTP',)))
        >>> conn.hello("client.example.org")
        b'EHLO client.example.org\\r\\n'
        >>> conn.receive_data(b"250-mx.example.org\\r\\n250-PIPELINING\\r\\n250 SIZE 100\\r\\n")
        >>> conn.next_event().command, conn.extensions.size
        (<Verb.EHLO: 'EHLO'>, 100)
        >>> conn.mail("a@example.org", MailOptions(size=10)) + conn.rcpt("b@example.org")
        b'MAIL FROM:<a@example.org> SIZE=10\\r\\nRCPT TO:<b@example.org>\\r\\n'
        >>> conn.receive_data(b"250 2.1.0 OK\\r\\n550 5.1.1 No such user\\r\\n")
        >>> conn.next_event().reply.code, conn.next_event().reply.enhanced_code
        (250, (5, 1, 1))
        >>> conn.recipients
        ()

    Callers may assume: events come in the order of the commands; no method blocks.
    Not safe to share between threads.

    Raises:
        ProtocolError: from a command method when the command is not legal now (its
            state, or it must wait for replies, or the server does not offer it, or DATA
            in a BINARYMIME transaction), or a value is malformed by the application's
            fault (a hello name); nothing is changed then.
        SMTPError: from `mail` and `rcpt` when an address cannot be sent: malformed (501
            5.1.7 / 5.1.3), non-ASCII without SMTPUTF8 and no ASCII form (550 / 553
            5.6.7, as maddy), REQUIRETLS not offered (550 5.7.30).
        RemoteProtocolError: from `next_event`, when the server breaks the protocol.
    """

    __slots__ = (
        "_binary",
        "_broken",
        "_buf",
        "_chunks",
        "_closing_reply",
        "_dots",
        "_eof",
        "_extensions",
        "_lmtp",
        "_max_line",
        "_max_lines",
        "_pending",
        "_recipients",
        "_reply_code",
        "_reply_lines",
        "_state",
        "_tls",
        "_utf8",
    )

    def __init__(
        self,
        *,
        lmtp: bool = False,
        tls: bool = False,
        max_line_length: int = 2048,
        max_reply_lines: int = 128,
    ) -> None:
        """Start a session: the server's greeting is awaited first. `tls` is true when
        the connection is encrypted from the start (implicit TLS)."""
        if max_line_length < 512 or max_reply_lines < 1:
            raise ValueError("max_line_length must be >= 512 and max_reply_lines >= 1")
        self._lmtp = lmtp
        self._tls = tls
        self._max_line = max_line_length
        self._max_lines = max_reply_lines
        self._state = ClientState.GREETING
        self._pending: deque[_Pending] = deque([_Pending(ClientStep.GREETING)])
        self._buf = bytearray()
        self._eof = False
        self._broken: RemoteProtocolError | None = None
        self._extensions = Extensions()
        self._recipients: list[str] = []
        self._utf8 = False
        self._binary = False
        self._reply_code = ""
        self._reply_lines: list[str] = []
        self._dots = DotEncoder()
        self._chunks = ChunkEncoder()
        self._closing_reply: Reply | None = None

    # What the application may read.

    @property
    def state(self) -> ClientState:
        """Where the session is."""
        return self._state

    @property
    def lmtp(self) -> bool:
        """Whether this session speaks LMTP."""
        return self._lmtp

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (from the start, or after `tls_started`)."""
        return self._tls

    @property
    def extensions(self) -> Extensions:
        """What the server offered in its last EHLO/LHLO reply (nothing before, or after
        HELO or STARTTLS)."""
        return self._extensions

    @property
    def recipients(self) -> tuple[str, ...]:
        """The recipients the server accepted in the transaction under way, in order, as
        sent (A-labels where converted)."""
        return tuple(self._recipients)

    @property
    def binary(self) -> bool:
        """Whether the transaction under way is BODY=BINARYMIME: its body goes by BDAT only."""
        return self._binary

    @property
    def pending(self) -> int:
        """How many replies are still awaited."""
        return len(self._pending)

    @property
    def closing_reply(self) -> Reply | None:
        """The 421 the server closed the session with, when it came unasked."""
        return self._closing_reply

    # Input.

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the server; b"" means the server closed its side.

        Raises:
            ProtocolError: bytes after the server's close, or during the TLS handshake.
        """
        if self._state is ClientState.CLOSED:
            return
        if self._eof:
            raise ProtocolError("receive_data() after the server closed the connection")
        if not data:
            self._eof = True
        elif self._state is ClientState.TLS_HANDSHAKE:
            raise ProtocolError("receive_data() during the TLS handshake: call tls_started()")
        else:
            self._buf += data

    def next_event(self) -> Event | NoEvent:
        """The next reply as an event, `NEED_DATA` (feed more bytes), or
        `ConnectionClosed` (again and again once the session is over).

        Raises:
            RemoteProtocolError: the server broke the protocol (see the class).
        """
        if self._broken is not None:
            raise self._broken
        if self._state is ClientState.CLOSED:
            return _CLOSED
        try:
            reply = self._next_reply()
        except RemoteProtocolError as exc:
            self._break(exc)
            raise
        if reply is None:
            if self._eof:
                self._close()
                return _CLOSED
            return NEED_DATA
        try:
            return self._dispatch(reply)
        except RemoteProtocolError as exc:
            self._break(exc)
            raise

    # Commands.

    def hello(self, name: str) -> bytes:
        """EHLO (LHLO in LMTP) with our host `name` (a domain in A-labels, or an address
        literal).

        Raises:
            ProtocolError: not legal now, or `name` is no valid hello name.
        """
        return self._hello(Verb.LHLO if self._lmtp else Verb.EHLO, name)

    def helo(self, name: str) -> bytes:
        """HELO, for servers that refuse EHLO (not in LMTP).

        Raises:
            ProtocolError: not legal now, in LMTP, or `name` is no valid hello name.
        """
        if self._lmtp:
            raise ProtocolError("LMTP has no HELO: use hello() (LHLO)")
        return self._hello(Verb.HELO, name)

    def _hello(self, verb: Verb, name: str) -> bytes:
        if not name.isascii() or _FORBIDDEN.intersection(name) or not is_valid_hello_name(name):
            raise ProtocolError(f"not a valid hello name (ASCII domain or literal): {name!r}")
        self._send(verb)
        return _line(f"{verb} {name}")

    def starttls(self) -> bytes:
        """STARTTLS; after its 220, do the handshake, then call `tls_started`.

        Raises:
            ProtocolError: not legal now, already encrypted, or the server does not offer it.
        """
        if self._tls or not self._extensions.starttls:
            raise ProtocolError("STARTTLS is not offered on this connection")
        self._send(Verb.STARTTLS)
        return _line("STARTTLS")

    def tls_started(self) -> None:
        """Say the TLS handshake succeeded: the session starts over (hello is due again,
        what the server offered before is forgotten).

        Raises:
            ProtocolError: no STARTTLS was accepted.
        """
        self._send(ClientStep.TLS_STARTED)
        self._tls = True
        self._extensions = Extensions()

    def auth_plain(self, username: str, password: str, authorization_id: str = "") -> bytes:
        """AUTH PLAIN with the credentials as the initial response (RFC 4954, 4616).

        Raises:
            ProtocolError: not legal now, the server does not offer PLAIN, or a field
                holds NUL.
        """
        if "PLAIN" not in self._extensions.auth:
            raise ProtocolError("the server does not offer AUTH PLAIN")
        if any("\0" in part for part in (username, password, authorization_id)):
            raise ProtocolError("AUTH PLAIN credentials must not contain NUL")
        self._send(Verb.AUTH)
        return _line("AUTH PLAIN " + encode_plain(authorization_id, username, password))

    def mail(self, sender: str, options: MailOptions | None = None) -> bytes:
        """MAIL FROM `sender` ("" for `<>`), with the parameters of `options` the server
        takes (see the class).

        Raises:
            ProtocolError: not legal now.
            SMTPError: the sender cannot be sent (see the class); 554 5.6.3 for
                BODY=BINARYMIME to a server without BINARYMIME.
        """
        self._check(Verb.MAIL)
        opts = options or MailOptions()
        ext = self._extensions
        if opts.require_tls and not ext.requiretls:
            raise SMTPError(550, (5, 7, 30), "REQUIRETLS is not supported by the server")
        binary = opts.body == "BINARYMIME"
        if binary and not ext.binarymime:
            # Through DATA its bytes would not arrive as they are: no conversion here.
            raise SMTPError(554, (5, 6, 3), "BINARYMIME is not supported by the server")
        utf8 = (opts.utf8 or not sender.isascii()) and ext.smtputf8
        if sender:
            sender = _checked_address(sender, sender=True)
            if not sender.isascii() and not utf8:
                sender = self._ascii(sender, 550, "sender")
        dsn = ext.dsn
        line = format_mail_from(
            sender,
            MailOptions(
                size=opts.size if ext.size is not None else 0,
                body=opts.body if ext.eightbitmime or binary else "",
                utf8=utf8,
                require_tls=opts.require_tls,
                return_=opts.return_ if dsn else "",
                envelope_id=opts.envelope_id if dsn else "",
                auth=self._mail_auth(opts.auth) if ext.auth else None,
            ),
        )
        self._send(Verb.MAIL)
        self._recipients = []
        self._utf8 = utf8
        self._binary = binary
        return _line(line)

    @staticmethod
    def _mail_auth(identity: str | None) -> str | None:
        if identity is None or identity == "":
            return identity
        try:
            return _checked_address(identity, sender=True)
        except SMTPError:
            return ""  # an identity we cannot vouch for is sent as AUTH=<> (RFC 4954 5)

    def _ascii(self, addr: str, code: int, which: str) -> str:
        try:
            return address.to_ascii(addr)
        except AddressError as exc:
            raise SMTPError(
                code, (5, 6, 7), f"SMTPUTF8 is unsupported, cannot convert {which} address"
            ) from exc

    def rcpt(self, recipient: str, options: RcptOptions | None = None) -> bytes:
        """RCPT TO `recipient`, with DSN parameters where the server offers DSN.

        Raises:
            ProtocolError: not legal now.
            SMTPError: the recipient cannot be sent (see the class).
        """
        self._check(Verb.RCPT)
        recipient = _checked_address(recipient, sender=False)
        if not recipient.isascii() and not self._utf8:
            recipient = self._ascii(recipient, 553, "recipient")
        opts = options or RcptOptions()
        if not self._extensions.dsn:
            opts = RcptOptions()
        elif opts.original_recipient and not _KEYWORD.fullmatch(opts.original_recipient_type):
            opts = attrs.evolve(opts, original_recipient_type="rfc822")
        self._send(Verb.RCPT, recipient)
        return _line(format_rcpt_to(recipient, opts))

    def data(self) -> bytes:
        """DATA; after its 354 (a `CommandReply`), send the body with `send_body` and
        `end_body`.

        Raises:
            ProtocolError: not legal now, or no recipient was accepted.
        """
        self._check(Verb.DATA)
        if not self._recipients:
            raise ProtocolError("DATA without an accepted recipient")
        if self._binary:
            raise ProtocolError("a BODY=BINARYMIME transaction sends its body by BDAT")
        self._send(Verb.DATA)
        self._dots = DotEncoder()
        return _line("DATA")

    def send_body(self, data: bytes) -> bytes:
        """The bytes to write for the next piece of the body, dot-stuffed, CRLF only.

        Raises:
            ProtocolError: no DATA's 354 was received.
        """
        if self._state is not ClientState.BODY:
            raise ProtocolError(f"send_body() in state {self._state.value}: DATA's 354 first")
        return self._dots.feed(bytes(data))

    def end_body(self) -> bytes:
        """The bytes that end the body ("." CRLF, after a CRLF the body may lack); its
        reply (one per accepted recipient in LMTP) comes as `BodyReply`s.

        Raises:
            ProtocolError: no DATA's 354 was received.
        """
        self._send(ClientStep.BODY_END)
        self._expect_body_replies(ClientStep.BODY_END)
        return self._dots.end()

    def bdat(self, data: bytes, *, last: bool = False) -> bytes:
        """A BDAT chunk (CHUNKING, RFC 3030) with its command line; line endings made
        CRLF. The reply to a chunk comes as a `CommandReply`, to the LAST one as
        `BodyReply`s.

        Raises:
            ProtocolError: not legal now, the server does not offer CHUNKING, or no
                recipient was accepted.
        """
        trigger: ClientTrigger = ClientStep.BDAT_LAST if last else Verb.BDAT
        self._check(trigger)
        if not self._extensions.chunking:
            raise ProtocolError("the server does not offer CHUNKING")
        if not self._recipients:
            raise ProtocolError("BDAT without an accepted recipient")
        if self._state is ClientState.MAIL:
            self._chunks = ChunkEncoder()
        chunk = self._chunks.feed(bytes(data), last=last)
        self._send(trigger)
        if last:
            self._expect_body_replies(trigger)
            return _line(f"BDAT {len(chunk)} LAST") + chunk
        return _line(f"BDAT {len(chunk)}") + chunk

    def rset(self) -> bytes:
        """RSET: the transaction under way is dropped.

        Raises:
            ProtocolError: not legal now.
        """
        self._send(Verb.RSET)
        self._recipients = []
        return _line("RSET")

    def noop(self) -> bytes:
        """NOOP, to see whether the server is still there.

        Raises:
            ProtocolError: not legal now.
        """
        self._send(Verb.NOOP)
        return _line("NOOP")

    def quit(self) -> bytes:
        """QUIT; after its reply the session is over.

        Raises:
            ProtocolError: not legal now.
        """
        self._send(Verb.QUIT)
        return _line("QUIT")

    # Transitions.

    def _check(self, trigger: ClientTrigger) -> None:
        if (self._state, trigger) not in SEND:
            raise ProtocolError(f"{trigger.value} is not legal in state {self._state.value}")
        pipelining = self._extensions.pipelining
        if self._pending and (trigger in MUST_WAIT or not pipelining):
            if trigger is Verb.MAIL and pipelining and self._only_resets_pending():
                return  # RFC 2920: MAIL may follow RSET in a group; no transaction is open
            raise ProtocolError(
                f"{trigger.value} must wait for the {len(self._pending)} reply(ies) awaited"
            )

    def _only_resets_pending(self) -> bool:
        return all(p.trigger in (Verb.RSET, Verb.NOOP) for p in self._pending)

    def _send(self, trigger: ClientTrigger, argument: str = "") -> None:
        self._check(trigger)
        self._state = SEND[self._state, trigger]
        if trigger is not ClientStep.TLS_STARTED and trigger not in _BODY_ENDS:
            self._pending.append(_Pending(trigger, argument))

    def _expect_body_replies(self, trigger: ClientTrigger) -> None:
        if self._lmtp:
            self._pending.extend(_Pending(trigger, rcpt) for rcpt in self._recipients)
        else:
            self._pending.append(_Pending(trigger))

    def _dispatch(self, reply: Reply) -> Event | NoEvent:
        if not self._pending:
            if reply.code == 421:
                self._closing_reply = reply
                self._close()
                return _CLOSED
            raise RemoteProtocolError(f"a reply nobody asked for: {reply.code}")
        head = self._pending.popleft()
        trigger = head.trigger
        event = self._event(head, reply)
        if reply.code == 421:
            self._close()
            return event
        kind = reply.code // 100
        if kind == 3 and trigger is not Verb.DATA:
            raise RemoteProtocolError(f"{reply.code} to {trigger.value}, which asks nothing more")
        if trigger is Verb.DATA and kind == 2:
            raise RemoteProtocolError(f"{reply.code} to DATA instead of 354")
        positive = _positive(trigger, reply.code)
        state = self._state
        if trigger is Verb.RCPT and positive and state is ClientState.MAIL:
            self._recipients.append(head.argument)
        elif positive and trigger in (Verb.EHLO, Verb.LHLO):
            self._extensions = Extensions.parse(reply.lines)
        elif trigger is Verb.HELO:
            self._extensions = Extensions()
        elif trigger is Verb.STARTTLS and positive and self._buf:
            # Bytes before the handshake would be read as if they came over TLS: an
            # injection (CVE-2011-0411, the other way round).
            raise RemoteProtocolError("bytes after STARTTLS's reply, before the handshake")
        self._state = ON_REPLY.get((state, trigger, positive), state)
        if self._state is ClientState.CLOSED:
            self._close()
        return event

    def _event(self, head: _Pending, reply: Reply) -> Event:
        if head.trigger is ClientStep.GREETING:
            return Greeting(reply)
        if head.trigger in _BODY_ENDS:
            return BodyReply(reply=reply, recipient=head.argument)
        return CommandReply(command=head.trigger, reply=reply, argument=head.argument)

    def _close(self) -> None:
        self._state = ClientState.CLOSED
        self._pending.clear()
        self._buf.clear()
        self._recipients = []

    def _break(self, exc: RemoteProtocolError) -> None:
        self._broken = exc
        self._close()

    # Replies.

    def _next_reply(self) -> Reply | None:
        """The next complete reply in the buffer, or None."""
        while True:
            buf = self._buf
            end = buf.find(b"\n", 0, self._max_line)
            if end < 0:
                if len(buf) >= self._max_line:
                    raise RemoteProtocolError(f"a reply line longer than {self._max_line} bytes")
                return None
            raw = bytes(buf[:end])
            del buf[: end + 1]
            reply = self._reply_line(raw[:-1] if raw.endswith(b"\r") else raw)
            if reply is not None:
                return reply

    def _reply_line(self, raw: bytes) -> Reply | None:
        code = raw[:3]
        sep = raw[3:4]
        if len(code) != 3 or not code.isdigit() or sep not in (b"", b" ", b"-"):
            raise RemoteProtocolError(f"not a reply line: {raw[:40]!r}")
        text = raw[4:].decode("utf-8", "replace").replace("\r", " ")
        if self._reply_lines and code.decode() != self._reply_code:
            raise RemoteProtocolError("a multiline reply whose lines have different codes")
        self._reply_code = code.decode()
        self._reply_lines.append(text)
        if sep == b"-":
            if len(self._reply_lines) >= self._max_lines:
                raise RemoteProtocolError(f"a reply of more than {self._max_lines} lines")
            return None
        lines, self._reply_lines = self._reply_lines, []
        value = int(self._reply_code)
        if not 200 <= value <= 599:
            raise RemoteProtocolError(f"reply code {value} is not 2xx to 5xx")
        enhanced: tuple[int, int, int] | None = None
        first = _ENHANCED.match(lines[0])
        if first and first.group(1) == self._reply_code[0]:
            prefix = first.group(0)
            if all(line.startswith(prefix) for line in lines):
                enhanced = (int(first.group(1)), int(first.group(2)), int(first.group(3)))
                lines = [line[len(prefix) :] for line in lines]
        return Reply(code=value, enhanced_code=enhanced, lines=tuple(lines))
