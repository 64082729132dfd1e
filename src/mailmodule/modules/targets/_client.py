"""The asyncio shell of the SMTP/LMTP client: one session with one upstream server.

It moves the bytes of a sans-IO `ClientConnection` over TCP or a Unix socket, does the
TLS handshakes (implicit, or after STARTTLS), bounds every step with a timeout, and
turns every failure into an `SMTPError`: the upstream's own reply (its code kept, so 4xx
stays temporary), or a 4xx for a connection that failed. Shared by the outbound targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import BinaryIO, Final, TypeVar, final

import attrs

from mailmodule.buffer import Buffer, MemoryBuffer
from mailmodule.errors import SMTPError, StorageError
from mailmodule.header import Header
from mailmodule.metadata import MailOptions, RcptOptions
from mailmodule.modules.targets._upstream import Upstream
from mailmodule.smtp import (
    NEED_DATA,
    BodyReply,
    ClientConnection,
    ClientState,
    CommandReply,
    ConnectionClosed,
    Event,
    Greeting,
    RemoteProtocolError,
    Reply,
)

__all__ = ["ClientSettings", "SMTPClient", "tls_context"]

_E = TypeVar("_E", bound=Event)
_READ: Final = 1 << 16
_BODY_CHUNK: Final = 1 << 18


def tls_context(*, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context: certificates checked against the system's CAs (or `ca_file`)
    and the server's name, unless `verify` is false.

    Raises:
        OSError, ssl.SSLError: `ca_file` cannot be read (callers turn it into a
            ConfigError).
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@final
@attrs.frozen(kw_only=True)
class ClientSettings:
    """How an `SMTPClient` talks to its upstream; one value serves many sessions.

    `hostname` is said in EHLO/LHLO (ASCII). `lmtp` speaks LMTP. `starttls` asks for
    STARTTLS where offered; `require_tls` refuses a session that ends up unencrypted.
    `tls` is the client context (None: `tls_context()`, certificates checked against
    the system's CAs, made once per process when first needed).
    `auth` is a username and password for AUTH PLAIN, sent only over TLS unless
    `auth_without_tls`. `chunking` sends bodies with BDAT (in chunks of `chunk_size`
    bytes) where the upstream offers CHUNKING, DATA otherwise. Timeouts in seconds:
    `connect_timeout` (connecting, the greeting, EHLO, STARTTLS, AUTH),
    `command_timeout` (each later command), `data_timeout` (a whole body and its
    replies). `target_name` is put in the errors.
    """

    hostname: str = "localhost.localdomain"
    lmtp: bool = False
    starttls: bool = True
    require_tls: bool = False
    tls: ssl.SSLContext | None = attrs.field(default=None, eq=False)
    auth: tuple[str, str] | None = attrs.field(default=None, repr=False)
    auth_without_tls: bool = False
    connect_timeout: float = 60.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    chunking: bool = False
    chunk_size: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(1))
    target_name: str | None = None


@functools.cache
def _default_context() -> ssl.SSLContext:
    return tls_context()


def _context(settings: ClientSettings) -> ssl.SSLContext:
    return settings.tls if settings.tls is not None else _default_context()


def _failure(
    settings: ClientSettings, upstream: Upstream, enhanced: tuple[int, int, int], text: str
) -> SMTPError:
    """A 451 for a session that could not be had or went wrong."""
    return SMTPError(
        451,
        enhanced,
        text,
        target_name=settings.target_name,
        misc={"remote_server": upstream.text},
    )


def _reply_error(reply: Reply, settings: ClientSettings, upstream: Upstream) -> SMTPError:
    """The upstream's refusal as ours: its code, enhanced code and text."""
    enhanced = reply.enhanced_code or (reply.code // 100, 0, 0)
    return SMTPError(
        reply.code,
        enhanced,
        "\n".join(reply.lines),
        target_name=settings.target_name,
        misc={"remote_server": upstream.text},
    )


@final
class SMTPClient:
    """One SMTP or LMTP session with an upstream server, ready for mail once `connect`ed.

    Callers may assume: each method sends its command and waits for its reply; a
    refusal raises the upstream's reply as an `SMTPError` (4xx temporary, 5xx
    permanent) and leaves the session usable (`usable`); a failure of the connection, a
    timeout or a protocol error raises a 451 `SMTPError` and leaves it closed. Not safe
    for two tasks at once.

    Cancellation: a cancelled call leaves the session unusable (it is closed by
    `aclose`); the message under way is not sent.
    """

    __slots__ = ("_conn", "_reader", "_settings", "_upstream", "_writer")

    def __init__(
        self,
        upstream: Upstream,
        settings: ClientSettings,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._upstream = upstream
        self._settings = settings
        self._reader = reader
        self._writer = writer
        self._conn = ClientConnection(lmtp=settings.lmtp, tls=upstream.tls)

    @classmethod
    async def connect(cls, upstream: Upstream, settings: ClientSettings) -> SMTPClient:
        """Connect, read the greeting, EHLO (LHLO), STARTTLS where asked and offered,
        EHLO again, AUTH PLAIN where configured.

        Raises:
            SMTPError: the upstream's refusal (its code), or 451 4.4.1 (no connection),
                451 4.7.5 (TLS failed), 451 4.7.10 (TLS required or needed for AUTH and
                not offered), 451 4.4.2 (the connection broke), 451 4.5.0 (protocol).
        """
        try:
            async with asyncio.timeout(settings.connect_timeout):
                reader, writer = await cls._open(upstream, settings)
        except ssl.SSLError as exc:  # implicit TLS
            raise _failure(settings, upstream, (4, 7, 5), "TLS with the upstream failed") from exc
        except OSError as exc:  # TimeoutError is one
            text = f"Cannot connect to the upstream {upstream.text}"
            raise _failure(settings, upstream, (4, 4, 1), text) from exc
        client = cls(upstream, settings, reader, writer)
        try:
            async with client._deadline(settings.connect_timeout):
                await client._start()
        except BaseException:
            client.abort()
            raise
        return client

    @staticmethod
    async def _open(
        upstream: Upstream, settings: ClientSettings
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = _context(settings) if upstream.tls else None
        if upstream.path:
            return await asyncio.open_unix_connection(upstream.path, limit=_READ)
        return await asyncio.open_connection(
            upstream.host,
            upstream.port,
            ssl=tls,
            server_hostname=upstream.server_name if tls else None,
            limit=_READ,
        )

    async def _start(self) -> None:
        greeting = await self._await(Greeting)
        if greeting.reply.code != 220:
            raise self._refused(greeting.reply)
        await self._hello()
        ext = self._conn.extensions
        if self._settings.starttls and ext.starttls and not self._conn.tls:
            await self._command(self._conn.starttls())
            with self._io():
                await self._writer.start_tls(
                    _context(self._settings), server_hostname=self._upstream.server_name
                )
            self._conn.tls_started()
            await self._hello()
        if self._settings.require_tls and not self._conn.tls:
            raise self._fail((4, 7, 10), "TLS is required, but the upstream offers none")
        if self._settings.auth is not None:
            await self._auth(*self._settings.auth)

    async def _hello(self) -> None:
        reply = await self._command(self._conn.hello(self._settings.hostname), check=False)
        if reply.code // 100 != 5 or self._settings.lmtp:
            self._check(reply)
            return
        # A server that does not know EHLO (RFC 5321 section 3.2): HELO, no extensions.
        self._check(await self._command(self._conn.helo(self._settings.hostname), check=False))

    async def _auth(self, username: str, password: str) -> None:
        if not self._conn.tls and not self._settings.auth_without_tls:
            raise self._fail((4, 7, 10), "Not sending credentials without TLS")
        if "PLAIN" not in self._conn.extensions.auth:
            raise self._fail((4, 7, 0), "The upstream does not offer AUTH PLAIN")
        await self._command(self._conn.auth_plain(username, password))

    # What a delivery uses.

    @property
    def upstream(self) -> Upstream:
        """The server this session is with."""
        return self._upstream

    @property
    def connection(self) -> ClientConnection:
        """The sans-IO session (read its `extensions`, `tls`, `recipients`)."""
        return self._conn

    @property
    def peer_certificates(self) -> tuple[bytes, ...]:
        """The server's certificate as DER once TLS is up, else (); the leaf only, as
        Python 3.11's ssl module gives no chain (so DANE-TA cannot match through it)."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return ()
        der = ssl_object.getpeercert(binary_form=True)
        return (der,) if der else ()

    @property
    def closed_by_peer(self) -> bool:
        """Whether the upstream is known to have closed the connection (seen while idle)."""
        return self._reader.at_eof() or self._writer.is_closing()

    @property
    def usable(self) -> bool:
        """Whether another command can be sent (the session is neither closed nor broken
        nor in the middle of a body)."""
        conn = self._conn
        ready = conn.state in (ClientState.READY, ClientState.MAIL) and not conn.pending
        return ready and not self._writer.is_closing()

    async def mail(
        self, sender: str, options: MailOptions | None = None, *, reset: bool = False
    ) -> None:
        """MAIL FROM; the parameters the upstream does not take are dropped. With
        `reset`, RSET first (in the same write where the upstream offers PIPELINING), as
        a session reused for another message starts.

        Raises:
            SMTPError: the upstream's refusal; 550/553 5.6.7 or 550 5.7.30 for what the
                upstream cannot take (see `ClientConnection.mail`); 451 on failure.
        """
        conn = self._conn
        async with self._deadline(self._settings.command_timeout):
            data = b""
            if reset:
                data = conn.rset()
                if not conn.extensions.pipelining:
                    await self._command(data)
                    data = b""
            try:
                data += self._named(lambda: conn.mail(sender, options))
            except SMTPError:
                if data:
                    await self._command(data)  # the RSET alone
                raise
            await self._write(data)
            if conn.pending > 1:  # the RSET's reply comes first
                self._check((await self._await(CommandReply)).reply)
            self._check((await self._await(CommandReply)).reply)

    async def rcpt(self, recipient: str, options: RcptOptions | None = None) -> None:
        """RCPT TO. A 552 is taken as 452, as RFC 5321 section 4.5.3.1.10 asks.

        Raises:
            SMTPError: the upstream's refusal; 553 5.6.7 for a recipient it cannot take;
                451 on failure.
        """
        async with self._deadline(self._settings.command_timeout):
            reply = await self._command(
                self._named(lambda: self._conn.rcpt(recipient, options)), check=False
            )
        if reply.code == 552:
            ec = reply.enhanced_code
            reply = Reply(code=452, enhanced_code=ec and (4, ec[1], ec[2]), lines=reply.lines)
        self._check(reply)

    async def data(self, header: Header, body: Buffer) -> None:
        """DATA, the header and body, the final dot; returns on the upstream's 250.

        Raises:
            SMTPError: the upstream's refusal of DATA or of the message; 451 on failure.
        """
        replies = await self._send_message(header, body)
        self._check(replies[0].reply)

    async def data_lmtp(self, header: Header, body: Buffer) -> list[Reply | SMTPError]:
        """DATA, the header and body, the final dot, as LMTP: the outcome for each
        accepted recipient, in the order of `connection.recipients`: its reply, or the
        error that kept it from coming (DATA refused, the connection failed). Never
        raises an `SMTPError`."""
        got: list[Reply | SMTPError] = []
        expected = len(self._conn.recipients)
        try:
            await self._send_message(header, body, got)
        except SMTPError as exc:
            got += [exc] * (expected - len(got))
        return got

    async def _send_message(
        self, header: Header, body: Buffer, got: list[Reply | SMTPError] | None = None
    ) -> list[BodyReply]:
        conn = self._conn
        expected = len(conn.recipients) if self._settings.lmtp else 1
        replies: list[BodyReply] = []
        try:
            stream = body.open()
        except StorageError as exc:
            raise self._fail((4, 3, 0), "Cannot read the message body") from exc
        async with self._deadline(self._settings.data_timeout):
            with stream:
                if conn.binary or (self._settings.chunking and conn.extensions.chunking):
                    await self._send_chunks(header, body, stream)
                else:
                    await self._send_dotted(header, body, stream)
            for _ in range(expected):
                replies.append(await self._await(BodyReply))
                if got is not None:
                    got.append(replies[-1].reply)
        return replies

    async def _send_dotted(self, header: Header, body: Buffer, stream: BinaryIO) -> None:
        conn = self._conn
        await self._command(conn.data())
        # Pieces are gathered into writes of _BODY_CHUNK or more: each write is a send,
        # and a small message goes in one.
        out = [conn.send_body(header.to_bytes())]
        size = len(out[0])
        with self._io():
            while chunk := await self._read(body, stream):
                out.append(conn.send_body(chunk))
                size += len(out[-1])
                if size >= _BODY_CHUNK:
                    self._writer.write(b"".join(out))
                    await self._writer.drain()
                    out, size = [], 0
            out.append(conn.end_body())
            self._writer.write(b"".join(out))
            await self._writer.drain()

    async def _send_chunks(self, header: Header, body: Buffer, stream: BinaryIO) -> None:
        """BDAT chunks, each but the last answered before the next one goes."""
        size = self._settings.chunk_size
        pending = header.to_bytes()
        while True:
            while len(pending) < size and (more := await self._read(body, stream)):
                pending += more
            if len(pending) <= size:
                break
            chunk, pending = pending[:size], pending[size:]
            await self._command(self._conn.bdat(chunk))
        with self._io():
            self._writer.write(self._conn.bdat(pending, last=True))
            await self._writer.drain()

    @staticmethod
    async def _read(body: Buffer, stream: BinaryIO) -> bytes:
        if isinstance(body, MemoryBuffer):  # no file to wait for
            return stream.read(_BODY_CHUNK)
        return await asyncio.to_thread(stream.read, _BODY_CHUNK)

    async def rset(self) -> None:
        """RSET: the transaction under way (if any) is dropped.

        Raises:
            SMTPError: 451 on failure (RSET's reply is always 250 where servers work).
        """
        async with self._deadline(self._settings.command_timeout):
            await self._command(self._conn.rset())

    async def aclose(self) -> None:
        """QUIT (briefly, if the session is usable), then close the connection.
        Idempotent; never raises for a connection that is gone."""
        if self.usable:
            with contextlib.suppress(SMTPError):
                async with self._deadline(min(5.0, self._settings.command_timeout)):
                    await self._command(self._conn.quit(), check=False)
        self.abort()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._writer.wait_closed()

    def abort(self) -> None:
        """Close the connection at once, without QUIT."""
        with contextlib.suppress(RuntimeError):  # its event loop is closed, and it with it
            self._writer.close()

    # Plumbing.

    def _named(self, build: Callable[[], bytes]) -> bytes:
        """Call `build`, giving the SMTPErrors it raises (addresses the upstream cannot
        take) this target's name."""
        try:
            data: bytes = build()
        except SMTPError as exc:
            raise SMTPError(
                exc.code,
                exc.enhanced_code,
                exc.message,
                target_name=self._settings.target_name,
                misc={"remote_server": self._upstream.text},
            ) from exc
        return data

    async def _write(self, data: bytes) -> None:
        with self._io():
            self._writer.write(data)
            await self._writer.drain()

    async def _command(self, data: bytes, *, check: bool = True) -> Reply:
        await self._write(data)
        event = await self._await(CommandReply)
        if check:
            self._check(event.reply)
        return event.reply

    def _check(self, reply: Reply) -> None:
        if reply.code >= 400:
            raise self._refused(reply)

    def _refused(self, reply: Reply) -> SMTPError:
        return _reply_error(reply, self._settings, self._upstream)

    def _fail(self, enhanced: tuple[int, int, int], text: str) -> SMTPError:
        return _failure(self._settings, self._upstream, enhanced, text)

    async def _await(self, kind: type[_E]) -> _E:
        """The next event, which must be a `kind`; reads as much as it takes."""
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self.abort()
                raise self._fail(exc.enhanced_code, exc.message) from exc
            if event is NEED_DATA:
                with self._io():
                    data = await self._reader.read(_READ)
                conn.receive_data(data)
                continue
            if isinstance(event, kind):
                return event
            self.abort()
            if isinstance(event, ConnectionClosed):
                closing = conn.closing_reply
                if closing is not None:
                    raise self._refused(closing)
                raise self._fail((4, 4, 2), "The upstream closed the connection")
            raise self._fail((4, 5, 0), f"Unexpected {type(event).__name__}")

    @contextlib.asynccontextmanager
    async def _deadline(self, seconds: float) -> AsyncIterator[None]:
        """Bound a step: past `seconds`, the connection is closed and 451 4.4.2 raised."""
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError as exc:
            self.abort()
            raise self._fail((4, 4, 2), "Timed out waiting for the upstream") from exc

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """Socket and TLS failures as 451 4.4.2 (4.7.5 for TLS); the connection is closed."""
        try:
            yield
        except ssl.SSLError as exc:
            self.abort()
            raise self._fail((4, 7, 5), "TLS with the upstream failed") from exc
        except (OSError, EOFError) as exc:
            self.abort()
            raise self._fail((4, 4, 2), "Network I/O error with the upstream") from exc
