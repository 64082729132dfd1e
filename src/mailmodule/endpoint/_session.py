"""One connection: the asyncio shell around a `mailmodule.smtp.ServerConnection`.

The protocol object moves bytes: what arrives is fed to the state machine, and reading is
paused while the session is busy with what it already has (pipelined commands wait in the
state machine's buffer, never more than one read's worth). One task per session takes the
events, answers each command (through the pipeline where it must), streams bodies into a
spill buffer as their bytes arrive, and keeps the timeouts: `command_timeout` from the
last command line, `data_timeout` from the last bytes of a body, `session_timeout` from
the connection's start, whatever the client does.

When the server reloads its configuration, a session moves to the new settings (and so
the new pipeline, TLS certificates and auth module) at its next command outside a
message; the message under way finishes on the settings it began with.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

from mailmodule import address
from mailmodule.endpoint._body import MessageReader
from mailmodule.endpoint._limits import AuthFailures, SessionCount
from mailmodule.endpoint._received import protocol_name, received_field
from mailmodule.errors import AddressError, AuthError, MailModuleError, SMTPError, StorageError
from mailmodule.metadata import ConnState, MsgMetadata, RcptOptions, Resolved, generate_msg_id
from mailmodule.smtp import (
    NEED_DATA,
    AuthCredentials,
    ChunkEnd,
    ChunkStart,
    Command,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    Hello,
    MailFrom,
    ProtocolError,
    ProtocolReply,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
    StartData,
    StartTLS,
    State,
)

if TYPE_CHECKING:
    from mailmodule.buffer import Buffer
    from mailmodule.endpoint._settings import Settings
    from mailmodule.header import Header
    from mailmodule.pipeline import PipelineDelivery

__all__ = ["Session", "Sessions"]

_log = logging.getLogger("mailmodule.endpoint")

# Why the session task woke up while waiting for bytes.
_DATA: Final = 0
_TIMEOUT: Final = 1
_STOP: Final = 2
_LOST: Final = 3

_SHUTDOWN: Final = Reply(code=421, enhanced_code=(4, 3, 2), lines="Service shutting down")
_TIMED_OUT: Final = Reply(code=421, enhanced_code=(4, 4, 2), lines="Timeout, closing connection")
_INTERNAL: Final = SMTPError(451, (4, 0, 0), "Temporary internal error")
_TOO_MANY: Final = Reply(code=421, enhanced_code=(4, 7, 0), lines="Too many connections")
_AUTH_REQUIRED: Final = Reply(code=530, enhanced_code=(5, 7, 0), lines="Authentication required")
_NO_RCPT_OPTIONS: Final = RcptOptions()
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_BODY_STATES: Final = frozenset({State.DATA, State.CHUNK})


class _SessionOver(Exception):
    """Raised inside a session when it must end without another word (the peer is gone,
    or does not read what we write)."""


@final
class Sessions:
    """The open sessions of one endpoint: counted against the limits, each with the task
    that serves it, which the endpoint awaits when it stops; and the settings that new
    sessions and messages take (`settings`, set when the endpoint starts)."""

    __slots__ = ("active", "count", "settings", "started", "tasks")

    def __init__(self, count: SessionCount) -> None:
        self.count = count
        self.settings: Settings | None = None
        self.active: set[Session] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: Sessions admitted since the endpoint was made.
        self.started = 0


def _host_port(addr: object) -> tuple[str, str]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), str(addr[1])
    return str(addr or ""), ""


def _join(host: str, port: str) -> str:
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _reverse_dns(ip: str) -> str | None:
    import dns.asyncresolver
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve_address(ip, lifetime=5)
    except (dns.exception.DNSException, OSError):
        return None
    name = str(answer[0]).rstrip(".") if len(answer) else ""
    return name or None


def _reply_of(err: BaseException) -> Reply:
    return Reply.from_error(err if isinstance(err, SMTPError) else _INTERNAL)


def _key(rcpt: str) -> str:
    try:
        return address.for_lookup(rcpt)
    except AddressError:
        return rcpt


@final
class _Statuses:
    """The per-recipient outcomes of an LMTP body, by lookup key."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.errors.setdefault(_key(rcpt_to), err)


@final
class Session(asyncio.Protocol):
    """One SMTP or LMTP connection of an endpoint.

    Callers may assume: every admitted connection gets exactly one task, registered in
    `Sessions.tasks` until it ends; when it ends the transport is closed, the message
    under way (if any) aborted and its spill file removed, and the session uncounted.
    `shutdown` and `abort` may be called at any time from the event loop.
    """

    def __init__(self, sessions: Sessions, *, implicit_tls: bool) -> None:
        settings = sessions.settings
        assert settings is not None  # set before the endpoint accepts
        self._s = settings
        self._sessions = sessions
        self._loop = asyncio.get_running_loop()
        self._sc = ServerConnection(settings.server, tls=implicit_tls)
        self._transport: asyncio.Transport | None = None
        self._tls_on = implicit_tls
        self._conn = ConnState()
        self._ip: str | None = None
        self._peer = ""
        self._task: asyncio.Task[None] | None = None
        self._rdns_task: asyncio.Task[str | None] | None = None
        self._waiter: asyncio.Future[int] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._read_paused = False
        self._early = bytearray()  # bytes read during the TLS handshake
        self._write_paused = False
        self._out: list[bytes] = []  # replies not yet written: pipelined ones go out together
        self._lost = False
        self._closing = False
        self._stopping = False
        self._in_body = False
        self._goodbye: Reply | None = None
        self._helo_valid = False
        self._esmtp = False
        self._failures = AuthFailures(
            limit=settings.max_auth_failures, delay=settings.auth_failure_delay
        )
        self._command_deadline = 0.0
        self._session_deadline = 0.0
        self._debug = _log.isEnabledFor(logging.DEBUG)
        # The transaction under way.
        self._delivery: PipelineDelivery | None = None
        self._reader: MessageReader | None = None
        self._mail_at = 0.0
        self._sender = ""
        self._rcpts = 0

    # What the endpoint may ask.

    @property
    def conn(self) -> ConnState:
        """The connection's state, shared by all its messages and kept across STARTTLS."""
        return self._conn

    @property
    def busy(self) -> bool:
        """Whether a message body is under way: shutdown lets it finish within its grace."""
        return self._in_body

    def shutdown(self) -> None:
        """The endpoint is stopping: say 421 4.3.2 and close now, unless a message body is
        under way, in which case after its reply."""
        self._stopping = True
        if self._in_body:
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_STOP)
        else:
            self.abort()

    def abort(self) -> None:
        """Say 421 4.3.2 and close now, abandoning whatever is under way."""
        self._goodbye = _SHUTDOWN
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        host, port = _host_port(transport.get_extra_info("peername"))
        ip = _ip_of(host)
        self._ip = str(ip) if ip is not None else None
        sessions = self._sessions
        if not sessions.count.admit(self._ip):
            _log.info("connection from %s refused: too many sessions", host or "a unix socket")
            self._count_refusal("connect", _TOO_MANY)
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        sessions.started += 1
        sessions.active.add(self)
        self._s.generation.hold()
        if self._s.metrics is not None:
            self._s.metrics.session_opened(self._s.name)
        conn = self._conn
        local_host, local_port = _host_port(transport.get_extra_info("sockname"))
        conn.remote_addr = _join(host, port)
        conn.local_addr = _join(local_host, local_port)
        conn.proto = "LMTP" if self._s.lmtp else "ESMTP"
        self._peer = self._ip or conn.remote_addr or "unix"
        conn.rdns_name = self._rdns(ip)
        if self._tls_on and self._s.tls is not None:
            conn.tls = self._s.tls.state(transport.get_extra_info("ssl_object"))
        task = self._task = self._loop.create_task(self._run())
        sessions.tasks.add(task)
        task.add_done_callback(sessions.tasks.discard)

    def _rdns(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    ) -> Resolved[str | None] | asyncio.Task[str | None] | None:
        if ip is None:
            return None  # a Unix socket: reverse DNS does not apply
        if ip.is_loopback:
            return Resolved("localhost")  # no query leaves the machine for loopback
        if not self._s.rdns:
            return None
        task = self._rdns_task = self._loop.create_task(_reverse_dns(str(ip)))
        return task

    def data_received(self, data: bytes) -> None:
        if self._sc.state is State.TLS_HANDSHAKE:
            # Decrypted bytes that came right after the handshake, before start_tls()
            # returned (a client that greets at once); plaintext never lands here.
            self._early += data
            return
        try:
            self._sc.receive_data(data)
        except ProtocolError:
            return  # after our close, or the peer's EOF: nothing more is read
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_DATA)
        elif not self._read_paused and self._transport is not None:
            self._transport.pause_reading()  # busy: what came waits in the state machine
            self._read_paused = True

    def eof_received(self) -> bool:
        # The peer wrote all it will: serve what it sent (say, a whole message and QUIT),
        # then close. TLS transports cannot stay half open.
        with contextlib.suppress(ProtocolError):
            self._sc.receive_data(b"")
        self._wake(_DATA)
        return not self._tls_on

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        with contextlib.suppress(ProtocolError):
            self._sc.receive_data(b"")
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_LOST)
        elif self._task is not None and not self._task.done() and not self._closing:
            self._task.cancel()  # the peer is gone: whatever is under way is for nobody

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self, why: int) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(why)

    # The session task.

    async def _run(self) -> None:
        try:
            await self._serve()
        except _SessionOver:
            pass
        except (OSError, ssl.SSLError) as exc:
            _log.debug("session with %s: %s", self._peer, exc)
        except Exception:  # a bug: log it, say 421 and end this session, not the server
            _log.exception("session with %s failed", self._peer)
            self._goodbye = Reply(code=421, enhanced_code=(4, 3, 0), lines="Internal error")
        finally:
            await self._end()

    async def _end(self) -> None:
        """Close the connection and release what the session holds; bounded."""
        transport = self._transport
        self._closing = True
        outcome = "aborted: " + (
            "shutdown" if self._stopping else "timeout" if self._goodbye is _TIMED_OUT else "gone"
        )
        if transport is not None and not transport.is_closing():
            goodbye = self._goodbye
            if goodbye is not None and not self._lost and self._sc.state is not State.CLOSED:
                self._out.append(self._sc.send(goodbye))
            if self._out and not self._lost:
                transport.write(b"".join(self._out))
            self._out.clear()
            transport.close()
        if self._rdns_task is not None:
            self._rdns_task.cancel()
        self._sessions.active.discard(self)
        self._sessions.count.release(self._ip)
        try:
            await self._abort_transaction(outcome)
        finally:
            s = self._s
            if s.metrics is not None:
                s.metrics.session_closed(s.name)
            s.generation.release()

    async def _serve(self) -> None:
        s = self._s
        sc = self._sc
        loop = self._loop
        now = loop.time()
        self._session_deadline = now + s.session_timeout
        self._command_deadline = now + s.command_timeout
        await self._send(sc.send(await self._greeting()))
        while True:
            event = sc.next_event()
            if type(event) is DataChunk:
                reader = self._reader
                assert reader is not None
                reader.feed(event.data)
                continue
            if event is NEED_DATA:
                if self._stopping and not self._in_body:
                    self._goodbye = _SHUTDOWN
                    return
                await self._flush()  # every command read so far is answered
                why = await self._wait()
                if why == _DATA:
                    continue
                if why == _TIMEOUT:
                    self._goodbye = _TIMED_OUT
                    _log.info("session with %s timed out in %s", self._peer, sc.state.value)
                elif why == _STOP:
                    self._goodbye = _SHUTDOWN
                return
            if isinstance(event, ProtocolReply):
                self._command_deadline = loop.time() + s.command_timeout
                if self._debug:
                    _log.debug("%s > %s", self._peer, event.reply.lines[0])
                await self._send(event.data)
                continue
            if isinstance(event, ChunkStart):
                self._command_deadline = loop.time() + s.command_timeout
                if self._reader is None:
                    self._reader = self._new_reader()
                    self._in_body = True
                continue
            if isinstance(event, ConnectionClosed):
                return
            assert isinstance(event, Command), event  # PAUSED: every command is answered
            self._command_deadline = loop.time() + s.command_timeout
            if self._debug and not isinstance(event, AuthCredentials):
                _log.debug("%s < %r", self._peer, event)
            await self._send(await self._answer(event))
            if self._stopping and not self._in_body and sc.state is not State.CLOSED:
                self._goodbye = _SHUTDOWN
                return

    async def _wait(self) -> int:
        """Wait for bytes from the peer, at most until the timeout that applies."""
        transport = self._transport
        assert transport is not None
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        loop = self._loop
        if self._sc.state in _BODY_STATES:
            deadline = loop.time() + self._s.data_timeout
        else:
            deadline = self._command_deadline
        waiter: asyncio.Future[int] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(min(deadline, self._session_deadline), self._wake, _TIMEOUT)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _send(self, data: bytes) -> None:
        """Queue a reply; `_flush` writes the queue when the session waits for the peer,
        so the replies to pipelined commands leave in one write."""
        if data:
            self._out.append(data)

    async def _flush(self) -> None:
        transport = self._transport
        out = self._out
        if not out or transport is None or transport.is_closing():
            out.clear()
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        if self._write_paused:
            # The peer does not read what we write: wait for it, but not forever.
            drained = self._drained = self._loop.create_future()
            try:
                async with asyncio.timeout(self._s.command_timeout):
                    await drained
            except TimeoutError:
                transport.abort()
                raise _SessionOver from None
            finally:
                self._drained = None
            if self._lost:
                raise _SessionOver

    async def _greeting(self) -> Reply:
        s = self._s
        try:
            await s.pipeline.early_check(self._conn)
        except SMTPError as err:
            _log.info("connection from %s refused: %s", self._peer, err.message)
            self._count_refusal("connect", Reply.from_error(err))
            if err.code // 100 == 4:  # try later: say so and hang up
                code = err.enhanced_code if err.enhanced_code[0] == 4 else (4, 7, 0)
                return Reply(code=421, enhanced_code=code, lines=" ".join(err.message.split()))
            text = " ".join(f"{err.enhanced_code_str} {err.message}".split())
            return Reply(code=554, lines=text)  # then only QUIT is served (RFC 5321 3.1)
        return Reply(code=220, lines=f"{s.hostname} {'LMTP' if s.lmtp else 'ESMTP'} ready")

    # Commands.

    async def _answer(self, event: Command) -> bytes:
        sc = self._sc
        if self._delivery is None and self._reader is None:
            self._adopt_settings()
        if isinstance(event, RcptTo):
            return sc.send(await self._rcpt(event))
        if isinstance(event, MailFrom):
            return sc.send(await self._mail(event))
        if isinstance(event, DataEnd):
            return await self._data_end(event)
        if isinstance(event, StartData):
            self._reader = self._new_reader()
            self._in_body = True
            return sc.send(Reply(code=354, lines="Start mail input; end with <CRLF>.<CRLF>"))
        if isinstance(event, ChunkEnd):
            return sc.send(Reply(code=250, enhanced_code=(2, 0, 0), lines="Chunk OK"))
        if isinstance(event, Hello):
            return await self._hello(event)
        if isinstance(event, Reset):
            await self._abort_transaction("aborted: reset")
            return sc.send(Reply(code=250, enhanced_code=(2, 0, 0), lines="OK"))
        if isinstance(event, AuthCredentials):
            return sc.send(await self._auth(event))
        if isinstance(event, StartTLS):
            await self._start_tls()
            return b""
        raise ProtocolError(f"no answer for {type(event).__name__}")

    def _adopt_settings(self) -> None:
        """Move to the endpoint's newest settings, if the server reloaded since this
        session took its own, and they keep what the client was told (the state
        machine's extensions and limits); else keep the old ones to the end."""
        new = self._sessions.settings
        old = self._s
        if new is None or new is old or new.server != old.server:
            return
        new.generation.hold()
        self._s = new
        old.generation.release()

    def _count_refusal(self, stage: str, reply: Reply) -> None:
        metrics = self._s.metrics
        if metrics is not None:
            metrics.rejected(self._s.name, stage, reply.code, reply.enhanced_code)

    async def _hello(self, event: Hello) -> bytes:
        sc = self._sc
        name = event.name
        if _CONTROL.search(name):
            reply = Reply(code=501, enhanced_code=(5, 5, 4), lines="Syntax: control characters")
            return sc.send(reply)
        if not event.valid and self._s.strict_helo:
            reply = Reply(
                code=501, enhanced_code=(5, 5, 2), lines="Not a domain or address literal"
            )
            return sc.send(reply)
        await self._abort_transaction("aborted: reset by " + event.verb)
        self._conn.hostname = name
        self._helo_valid = event.valid
        self._esmtp = event.verb != "HELO"
        return sc.send(Reply(code=250, lines=self._s.hostname))

    async def _mail(self, event: MailFrom) -> Reply:
        s = self._s
        sc = self._sc
        if s.auth_required and not sc.authenticated:
            self._count_refusal("mail", _AUTH_REQUIRED)
            return _AUTH_REQUIRED
        conn = self._conn
        opts = event.options
        conn.proto = protocol_name(
            lmtp=s.lmtp, esmtp=self._esmtp, tls=sc.tls, auth=sc.authenticated, utf8=opts.utf8
        )
        meta = MsgMetadata(
            id=generate_msg_id(), original_from=event.sender, smtp_opts=opts, conn=conn
        )
        self._mail_at = self._loop.time()
        self._sender = event.sender
        self._rcpts = 0
        try:
            self._delivery = await s.pipeline.start(meta, event.sender)
        except MailModuleError as err:
            reply = _reply_of(err)
            self._log_message(meta.id, f"rejected {reply.code} at MAIL", 0)
            self._count_refusal("mail", reply)
            return reply
        return Reply(code=250, enhanced_code=(2, 1, 0), lines="Sender OK")

    async def _rcpt(self, event: RcptTo) -> Reply:
        delivery = self._delivery
        assert delivery is not None  # the state machine only gives RCPT after MAIL's 2xx
        rcpt = event.recipient
        opts = event.options
        if opts != _NO_RCPT_OPTIONS:
            delivery.meta.rcpt_opts[rcpt] = opts
        try:
            await delivery.add_rcpt(rcpt)
        except MailModuleError as err:
            if opts != _NO_RCPT_OPTIONS:
                delivery.meta.rcpt_opts.pop(rcpt, None)
            reply = _reply_of(err)
            self._count_refusal("rcpt", reply)
            return reply
        self._rcpts += 1
        return Reply(code=250, enhanced_code=(2, 1, 5), lines="Recipient OK")

    async def _auth(self, event: AuthCredentials) -> Reply:
        auth = self._s.auth
        assert auth is not None  # AUTH is offered only with an auth module
        username = event.username
        try:
            if event.authorization_id and event.authorization_id != username:
                raise AuthError("authorization identity differs from the user")
            await asyncio.to_thread(auth.auth_plain, username, event.password)
        except AuthError:
            failures = self._failures
            delay = failures.failed()
            _log.info(
                "authentication from %s failed (%d of %d)",
                self._peer,
                failures.count,
                failures.limit,
            )
            if self._s.metrics is not None:
                self._s.metrics.auth_failed(self._s.name)
            await asyncio.sleep(delay)
            if failures.exhausted:
                return Reply(
                    code=421, enhanced_code=(4, 7, 0), lines="Too many authentication failures"
                )
            return Reply(code=535, enhanced_code=(5, 7, 8), lines="Authentication failed")
        except MailModuleError as err:
            _log.error("authentication from %s could not be checked: %s", self._peer, err)
            return Reply(
                code=454, enhanced_code=(4, 7, 0), lines="Temporary authentication failure"
            )
        self._conn.auth_user = username
        self._conn.auth_password = event.password
        if self._debug:
            _log.debug("%s authenticated as %r", self._peer, username)
        return Reply(code=235, enhanced_code=(2, 7, 0), lines="Authentication succeeded")

    async def _start_tls(self) -> None:
        tls = self._s.tls
        transport = self._transport
        assert tls is not None  # STARTTLS is offered only with certificates
        assert transport is not None
        reply = Reply(code=220, enhanced_code=(2, 0, 0), lines="Ready to start TLS")
        # Nothing may await between this write and start_tls: the protocol is swapped
        # before another byte is read, so no plaintext reaches the TLS session.
        self._out.append(self._sc.send(reply))
        transport.write(b"".join(self._out))
        self._out.clear()
        self._read_paused = False
        try:
            new = await self._loop.start_tls(
                transport,
                self,
                tls.context,
                server_side=True,
                ssl_handshake_timeout=self._s.handshake_timeout,
            )
        except (OSError, ssl.SSLError) as exc:
            _log.info("TLS handshake with %s failed: %s", self._peer, exc)
            raise _SessionOver from exc
        if new is None:
            raise _SessionOver
        self._transport = new
        self._tls_on = True
        self._sc.tls_started()
        early, self._early = bytes(self._early), bytearray()
        if early:
            self._sc.receive_data(early)
        self._conn.tls = tls.state(new.get_extra_info("ssl_object"))

    # Messages.

    def _new_reader(self) -> MessageReader:
        s = self._s
        return MessageReader(
            max_header_size=s.max_header_size,
            max_header_fields=s.max_header_fields,
            max_memory=s.buffer_max_memory,
            directory=s.buffer_dir,
        )

    async def _data_end(self, event: DataEnd) -> bytes:
        delivery = self._delivery
        reader = self._reader
        assert delivery is not None
        assert reader is not None
        s = self._s
        rcpts = event.recipients
        size = reader.size
        meta = delivery.meta
        body = None
        try:
            if event.too_big:
                limit = s.server.max_message_size
                raise SMTPError(552, (5, 3, 4), f"Message too big (limit is {limit} bytes)")
            header, body = reader.finish()
            header.add("Received", self._received(meta, rcpts))
            if s.lmtp:
                replies, outcome = await self._lmtp_body(delivery, header, body, rcpts)
            else:
                await delivery.body(header, body)
                await delivery.commit()
                replies = [
                    Reply(code=250, enhanced_code=(2, 0, 0), lines=f"OK: queued as {meta.id}")
                ]
                outcome = "quarantined" if meta.quarantine else "accepted"
        except Exception as exc:  # the pipeline's boundary: every failure gets its replies
            if not isinstance(exc, MailModuleError):
                _log.exception("msg %s failed", meta.id)
            reply = _reply_of(exc)
            replies = [reply] * (len(rcpts) if s.lmtp else 1)
            outcome = f"rejected {reply.code}"
            await delivery.aclose()
        finally:
            if body is not None:
                try:
                    body.remove()
                except StorageError as exc:
                    _log.warning("msg %s: %s", meta.id, exc)
        self._reader = None
        self._delivery = None
        self._in_body = False
        self._log_message(meta.id, outcome, size)
        self._count_message(replies, quarantined=meta.quarantine)
        if s.lmtp:
            return self._sc.send_lmtp_replies(replies)
        return self._sc.send(replies[0])

    async def _lmtp_body(
        self,
        delivery: PipelineDelivery,
        header: Header,
        body: Buffer,
        rcpts: Sequence[str],
    ) -> tuple[list[Reply], str]:
        statuses = _Statuses()
        await delivery.body_non_atomic(statuses, header, body)
        errors = statuses.errors
        keys = [_key(r) for r in rcpts]
        if any(k in errors and errors[k] is None for k in keys):
            await delivery.commit()
        else:
            await delivery.aclose()
        meta = delivery.meta
        replies = []
        accepted = 0
        for rcpt, k in zip(rcpts, keys, strict=True):
            if k not in errors:
                replies.append(Reply(code=451, enhanced_code=(4, 3, 0), lines="No delivery status"))
                continue
            err = errors[k]
            if err is None:
                accepted += 1
                text = f"<{rcpt}> OK: queued as {meta.id}"
                replies.append(Reply(code=250, enhanced_code=(2, 0, 0), lines=text))
            else:
                replies.append(_reply_of(err))
        outcome = f"accepted for {accepted} of {len(rcpts)}" if accepted else "rejected"
        if accepted and meta.quarantine:
            outcome += ", quarantined"
        return replies, outcome

    def _count_message(self, replies: Sequence[Reply], *, quarantined: bool) -> None:
        """Received when any recipient was accepted (LMTP answers each), else refused with
        the first reply."""
        metrics = self._s.metrics
        if metrics is None:
            return
        if any(r.is_positive for r in replies):
            metrics.received(self._s.name, quarantined=quarantined)
        elif replies:
            self._count_refusal("data", replies[0])

    def _received(self, meta: MsgMetadata, rcpts: Sequence[str]) -> str:
        conn = self._conn
        rdns = conn.rdns_name
        name: str | None = None
        if isinstance(rdns, Resolved):
            name = rdns.value
        elif isinstance(rdns, asyncio.Task) and rdns.done() and not rdns.cancelled():
            name = rdns.result() if rdns.exception() is None else None
        single = {_key(r) for r in rcpts}
        return received_field(
            helo=conn.hostname,
            helo_valid=self._helo_valid,
            ip=self._ip,
            rdns=name,
            hostname=self._s.hostname,
            proto=conn.proto,
            msg_id=meta.id,
            rcpt=rcpts[0] if len(single) == 1 else None,
            utf8=meta.smtp_opts.utf8,
            trace_sender=not meta.dont_trace_sender,
        )

    async def _abort_transaction(self, outcome: str) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            size = reader.size
            reader.abort()
        else:
            size = 0
        self._in_body = False
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            self._log_message(delivery.meta.id, outcome, size)
            await delivery.aclose()

    def _log_message(self, msg_id: str, outcome: str, size: int) -> None:
        _log.info(
            "msg %s: %s; client %s helo %r sender <%s> %d recipient(s) %d bytes %.3fs",
            msg_id,
            outcome,
            self._peer,
            self._conn.hostname,
            self._sender,
            self._rcpts,
            size,
            self._loop.time() - self._mail_at,
        )
