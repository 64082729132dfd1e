"""SMTP and LMTP sessions on aiosmtpd, driving a Pipeline.

aiosmtpd supplies the protocol state machine, DATA reading, STARTTLS and AUTH framing. We
override what it cannot do for a mail server: MAIL FROM and RCPT TO with their extension
parameters (DSN, REQUIRETLS, AUTH=, kept per recipient), AUTH checked by a PlainAuth module
off the event loop, an EarlyCheck before the greeting, and one reply per recipient after
LMTP's DATA.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import ipaddress
import logging
import ssl
from typing import TYPE_CHECKING, final

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from mailmodule.buffer import Buffer, buffer_body
from mailmodule.endpoint._commands import parse_mail, parse_rcpt
from mailmodule.errors import AuthError, HeaderError, MailModuleError, SMTPError
from mailmodule.header import Header, read_header
from mailmodule.metadata import ConnState, MsgMetadata, Resolved, TLSState, generate_msg_id

if TYPE_CHECKING:
    from mailmodule.endpoint._endpoint import SMTPEndpoint
    from mailmodule.pipeline import PipelineDelivery

__all__ = ["LMTPProtocol", "SMTPProtocol"]

_log = logging.getLogger("mailmodule.endpoint")


def _host_port(addr: object) -> tuple[str, str]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), str(addr[1])
    return str(addr or ""), ""


def _join(host: str, port: str) -> str:
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _reverse_dns(ip: str) -> str | None:
    import dns.asyncresolver
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve_address(ip, lifetime=5)
    except (dns.exception.DNSException, OSError):
        return None
    name = str(answer[0]).rstrip(".") if len(answer) else ""
    return name or None


@final
class _Session(Session):
    """One connection: its ConnState and the message under way."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.conn = ConnState()
        self.delivery: PipelineDelivery | None = None
        self.rcpts: list[str] = []
        self.rdns_task: asyncio.Task[str | None] | None = None


class SMTPProtocol(SMTP):
    """One SMTP session of an `SMTPEndpoint`."""

    proto_name = "SMTP"

    def __init__(self, endpoint: SMTPEndpoint, tls_context: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint
        mechanisms: list[str] = [] if endpoint.auth is not None else ["PLAIN", "LOGIN"]
        super().__init__(
            _Handler(endpoint),
            hostname=endpoint.hostname,
            ident="mailmodule",
            data_size_limit=endpoint.max_message_size,
            enable_SMTPUTF8=True,
            tls_context=tls_context,
            auth_require_tls=endpoint.auth_require_tls,
            auth_required=endpoint.auth_required,
            auth_exclude_mechanism=mechanisms,
            timeout=endpoint.timeout,
            loop=asyncio.get_running_loop(),
        )
        self._session: _Session | None = None
        self.in_data = False

    @property
    def busy(self) -> bool:
        """Whether a message is under way: shutdown waits for it."""
        return self.in_data or (self._session is not None and self._session.delivery is not None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.endpoint.active.add(self)

    def shut_down(self) -> None:
        """Say goodbye and hang up (the server is stopping)."""
        if self.transport is not None and not self.transport.is_closing():
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(b"421 4.3.2 Service shutting down\r\n")
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        self.in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self.in_data = False
            self.endpoint.changed.set()

    def _create_session(self) -> Session:
        self._session = _Session(self.loop)
        return self._session

    @property
    def state(self) -> _Session:
        assert self._session is not None
        return self._session

    # Connection

    async def _handle_client(self) -> None:
        session = self.state
        transport = self.transport
        assert transport is not None
        peer_host, peer_port = _host_port(transport.get_extra_info("peername"))
        local_host, local_port = _host_port(transport.get_extra_info("sockname"))
        conn = session.conn
        conn.remote_addr = _join(peer_host, peer_port)
        conn.local_addr = _join(local_host, local_port)
        conn.proto = self.proto_name
        conn.rdns_name = self._rdns(peer_host)
        self.endpoint.sessions_started += 1
        try:
            await self.endpoint.pipeline.early_check(conn)
        except SMTPError as err:
            _log.info("connection from %s refused early: %s", conn.remote_addr, err)
            await self.push(f"554 {err.enhanced_code_str} {err.message}")
            transport.close()
            return
        await super()._handle_client()

    def _rdns(self, host: str) -> Resolved[str | None] | asyncio.Task[str | None] | None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None  # a Unix socket: reverse DNS does not apply
        if ip.is_loopback:
            return Resolved("localhost")  # no query leaves the machine for loopback
        if not self.endpoint.rdns:
            return None
        task = asyncio.ensure_future(_reverse_dns(str(ip)))
        self.state.rdns_task = task
        return task

    def connection_lost(self, error: Exception | None) -> None:
        self.endpoint.active.discard(self)
        self.endpoint.changed.set()
        session = self._session
        super().connection_lost(error)
        if session is None:
            return
        if session.rdns_task is not None:
            session.rdns_task.cancel()
        delivery, session.delivery = session.delivery, None
        if delivery is not None:  # a client gone in the middle of a message
            self.endpoint.clean_up(delivery.aclose())

    # Commands

    def _proto(self) -> str:
        name = (
            self.proto_name
            if self.proto_name == "LMTP"
            else ("ESMTP" if self.state.extended_smtp else "SMTP")
        )
        if self._tls_protocol is not None:
            name += "S"
        if self.state.authenticated:
            name += "A"
        return name

    async def _abort_pending(self) -> None:
        delivery, self.state.delivery = self.state.delivery, None
        self.state.rcpts = []
        if delivery is not None:
            await delivery.aclose()
            self.endpoint.changed.set()

    async def smtp_RSET(self, arg: str) -> None:
        await self._abort_pending()
        await super().smtp_RSET(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("MAIL"):
            return
        if self.state.delivery is not None:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        try:
            sender, opts = parse_mail(
                arg or "", max_size=self.data_size_limit, smtputf8=self.enable_SMTPUTF8
            )
        except SMTPError as err:
            await self.push(str(err))
            return
        session = self.state
        conn = session.conn
        conn.proto = self._proto()
        tls = self.transport.get_extra_info("ssl_object") if self.transport else None
        if tls is not None and conn.tls is None:
            cipher = tls.cipher()
            conn.tls = TLSState(
                version=tls.version() or "",
                cipher=cipher[0] if cipher else "",
            )
        meta = MsgMetadata(id=generate_msg_id(), original_from=sender, smtp_opts=opts, conn=conn)
        try:
            delivery = await self.endpoint.pipeline.start(meta, sender)
        except MailModuleError as err:
            await self.push(str(_smtp(err)))
            return
        session.delivery = delivery
        session.rcpts = []
        assert self.envelope is not None
        self.envelope.mail_from = sender or "<>"
        await self.push("250 2.1.0 Sender OK")

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("RCPT"):
            return
        delivery = self.state.delivery
        if delivery is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        if len(self.state.rcpts) >= self.endpoint.max_recipients:
            await self.push("452 4.5.3 Too many recipients")
            return
        try:
            rcpt, opts = parse_rcpt(arg or "", utf8=delivery.meta.smtp_opts.utf8)
            if opts != type(opts)():
                delivery.meta.rcpt_opts[rcpt] = opts
            await delivery.add_rcpt(rcpt)
        except MailModuleError as err:
            await self.push(str(_smtp(err)))
            return
        if rcpt not in self.state.rcpts:
            self.state.rcpts.append(rcpt)
        assert self.envelope is not None
        self.envelope.rcpt_tos.append(rcpt)
        await self.push("250 2.1.5 Recipient OK")

    # AUTH through the PlainAuth module, off the event loop

    async def auth_PLAIN(self, _: object, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check_login(parts[1], parts[2])

    async def auth_LOGIN(self, _: object, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False)
        assert isinstance(login, bytes)
        assert isinstance(password, bytes)
        return await self._check_login(login, password)

    async def _check_login(self, login: bytes, password: bytes) -> AuthResult:
        auth = self.endpoint.auth
        if auth is None:
            return AuthResult(success=False, handled=False)
        try:
            user, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        try:
            await asyncio.to_thread(auth.auth_plain, user, secret)
        except AuthError as err:
            _log.info("authentication of %r failed: %s", user, type(err).__name__)
            return AuthResult(success=False, handled=False)
        except MailModuleError as err:
            _log.error("authentication of %r could not be checked: %s", user, err)
            return AuthResult(
                success=False, handled=False, message="454 4.7.0 Temporary authentication failure"
            )
        self.state.conn.auth_user = user
        self.state.conn.auth_password = secret
        return AuthResult(success=True, auth_data=user)


class LMTPProtocol(SMTPProtocol, LMTP):
    """One LMTP session: LHLO instead of EHLO, and a reply per recipient after DATA."""

    proto_name = "LMTP"


_INTERNAL = SMTPError(451, (4, 0, 0), "Temporary internal error")


def _smtp(err: MailModuleError) -> SMTPError:
    return err if isinstance(err, SMTPError) else _INTERNAL


class _Collector:
    def __init__(self) -> None:
        self.errors: dict[str, Exception] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        if err is not None:
            self.errors.setdefault(rcpt_to, err)


@final
class _Handler:
    """aiosmtpd's hooks: HELO/EHLO names, and DATA through the pipeline."""

    def __init__(self, endpoint: SMTPEndpoint) -> None:
        self.endpoint = endpoint

    async def handle_HELO(
        self, server: SMTPProtocol, session: _Session, envelope: Envelope, hostname: str
    ) -> str:
        await server._abort_pending()
        session.host_name = hostname
        session.conn.hostname = hostname
        return f"250 {server.hostname}"

    async def handle_EHLO(
        self,
        server: SMTPProtocol,
        session: _Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        await server._abort_pending()
        session.host_name = hostname
        session.conn.hostname = hostname
        if not responses:
            return responses
        lines = [r[4:] for r in responses]  # "250-SIZE 123" -> "SIZE 123"
        # Not ENHANCEDSTATUSCODES: aiosmtpd's own replies lack enhanced codes.
        lines[1:1] = ["DSN"]
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_DATA(self, server: SMTPProtocol, session: _Session, envelope: Envelope) -> str:
        delivery, session.delivery = session.delivery, None
        rcpts, session.rcpts = session.rcpts, []
        if delivery is None:
            return "503 5.5.1 Error: need MAIL command"
        content = envelope.original_content or b""
        try:
            header, offset = read_header(content)
        except HeaderError as err:
            await delivery.aclose()
            return f"554 5.6.0 Malformed message header: {err.message}"
        body = await buffer_body(memoryview(content)[offset:], directory=self.endpoint.buffer_dir)
        try:
            meta = delivery.meta
            header.add("Received", self._received(server, meta, rcpts))
            if isinstance(server, LMTPProtocol):
                return await self._lmtp(delivery, header, body, rcpts)
            await delivery.body(header, body)
            await delivery.commit()
            return f"250 2.0.0 OK: queued as {meta.id}"
        except MailModuleError as err:
            await delivery.aclose()
            return str(_smtp(err))
        except Exception:
            _log.exception("message %s failed", delivery.meta.id)
            await delivery.aclose()
            return "451 4.0.0 Temporary internal error"
        finally:
            body.remove()

    async def _lmtp(
        self, delivery: PipelineDelivery, header: Header, body: Buffer, rcpts: list[str]
    ) -> str:
        collector = _Collector()
        await delivery.body_non_atomic(collector, header, body)
        if len(collector.errors) < len(rcpts):
            await delivery.commit()
        else:
            await delivery.aclose()
        replies = []
        for rcpt in rcpts:
            err = collector.errors.get(rcpt)
            if err is None:
                replies.append(f"250 2.0.0 <{rcpt}> OK: queued as {delivery.meta.id}")
            else:
                known = err if isinstance(err, MailModuleError) else None
                replies.append(str(_smtp(known) if known else _INTERNAL))
        return "\r\n".join(replies)

    def _received(self, server: SMTPProtocol, meta: MsgMetadata, rcpts: list[str]) -> str:
        conn = meta.conn
        parts = []
        if conn is not None and not meta.dont_trace_sender:
            rdns = conn.rdns_name
            name = rdns.value if isinstance(rdns, Resolved) else None
            if isinstance(rdns, asyncio.Future) and rdns.done() and not rdns.cancelled():
                name = rdns.result() if rdns.exception() is None else None
            ip = conn.remote_addr.rsplit(":", 1)[0].strip("[]")
            parts.append(f"from {conn.hostname or 'unknown'} ({name or 'unknown'} [{ip}])")
        proto = conn.proto if conn is not None else "ESMTP"
        parts.append(f"by {server.hostname} (mailmodule) with {proto} id {meta.id}")
        if len(rcpts) == 1:
            parts.append(f"for <{rcpts[0]}>")
        return " ".join(parts) + "; " + email.utils.format_datetime(email.utils.localtime())
