"""target.smtp and target.lmtp against our own endpoint, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import pytest

from mailmodule import ConfigError, ConfigMap, Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.interfaces import DeliveryTarget, PartialDelivery
from mailmodule.metadata import MailOptions
from mailmodule.modules import FileTLSLoader, PassTable, SMTPTarget
from mailmodule.modules.targets import ClientSettings, SMTPClient, Upstream
from mailmodule.pipeline import Destination, Pipeline
from mailmodule.server import Server
from mailmodule.testing import DeliveryTargetSuite
from tests.endpoint_kit import endpoint, self_signed
from tests.modules_kit import build, new_registry
from tests.pipeline_kit import MemoryTarget

HEADER = Header([("From", "a@example.net"), ("Subject", "Hello")])
BODY = b"Hi there.\r\n.dot line\r\n"


class Collector:
    def __init__(self) -> None:
        self.statuses: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        assert rcpt_to not in self.statuses
        self.statuses[rcpt_to] = err


def target(*upstreams: str, module: str = "target.smtp", **settings: object) -> SMTPTarget:
    t = SMTPTarget(module, "out")
    t.init(ConfigMap({"targets": list(upstreams), "hostname": "relay.test", **settings}))
    return t


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_upstream(handler: Handler) -> AsyncIterator[str]:
    """A server that misbehaves as `handler` does (an injected fault); its URL."""
    done: list[asyncio.Future[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        finished = asyncio.get_running_loop().create_future()
        done.append(finished)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            finished.set_result(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await asyncio.gather(*done)
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def running(ep: SMTPEndpoint) -> str:
    ((host, port),) = await ep.start()
    return f"tcp://{host}:{port}"


async def send(t: SMTPTarget, rcpts: list[str], body: bytes = BODY) -> None:
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    try:
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.body(HEADER, MemoryBuffer(body))
    except BaseException:
        await delivery.abort()
        raise
    await delivery.commit()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[MemoryTarget, str]]:
    """Our SMTP endpoint, keeping what it receives in a MemoryTarget."""
    memory = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[memory])))
    yield memory, await running(ep)
    await ep.stop()


async def test_a_message_is_relayed_with_its_envelope_and_body(
    upstream: tuple[MemoryTarget, str],
) -> None:
    memory, url = upstream
    t = target(url)
    await send(t, ["joe@example.org", "ann@example.org"])
    t.close()
    (stored,) = memory.messages
    assert stored.mail_from == "a@example.net"
    assert stored.rcpts == ["joe@example.org", "ann@example.org"]
    assert stored.body == BODY
    header = Header.parse(stored.header)
    assert header.get("Subject") == "Hello"
    assert (header.get("Received") or "").startswith("from relay.test")


async def test_the_upstreams_refusal_of_a_recipient_keeps_its_code(
    upstream: tuple[MemoryTarget, str],
) -> None:
    memory, url = upstream
    memory.refuse.add("bad@example.org")
    t = target(url)
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    with pytest.raises(SMTPError) as info:
        await delivery.add_rcpt("bad@example.org")
    assert info.value.code == 550
    assert info.value.target_name == "target.smtp"
    assert info.value.misc["remote_server"] == url
    await delivery.add_rcpt("joe@example.org")
    await delivery.add_rcpt("JOE@example.org")  # the same recipient: ignored
    await delivery.body(HEADER, MemoryBuffer(BODY))
    await delivery.commit()
    t.close()
    assert [m.rcpts for m in memory.messages] == [["joe@example.org"]]


async def test_upstreams_are_tried_in_order_until_one_answers(
    upstream: tuple[MemoryTarget, str],
) -> None:
    memory, url = upstream
    t = target(f"tcp://127.0.0.1:{closed_port()}", url)
    await send(t, ["joe@example.org"])
    t.close()
    assert len(memory.messages) == 1


async def test_no_upstream_answering_is_a_temporary_failure() -> None:
    t = target(f"tcp://127.0.0.1:{closed_port()}", f"tcp://127.0.0.1:{closed_port()}")
    with pytest.raises(SMTPError) as info:
        await t.start(MsgMetadata(id="m1"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 4, 1))
    assert info.value.is_temporary
    assert isinstance(info.value.__cause__, OSError)


async def test_messages_reuse_one_connection(upstream: tuple[MemoryTarget, str]) -> None:
    memory, url = upstream
    t = target(url)
    for _ in range(3):
        await send(t, ["joe@example.org"])
    t.close()
    peers = {m.meta.conn.remote_addr for m in memory.messages if m.meta.conn is not None}
    assert len(memory.messages) == 3
    assert len(peers) == 1


async def test_an_aborted_message_leaves_nothing_and_the_next_one_goes_through(
    upstream: tuple[MemoryTarget, str],
) -> None:
    memory, url = upstream
    t = target(url)
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    await delivery.add_rcpt("joe@example.org")
    await delivery.abort()
    await send(t, ["ann@example.org"])
    t.close()
    assert [m.rcpts for m in memory.messages] == [["ann@example.org"]]


async def test_a_message_above_the_upstreams_size_is_refused_permanently() -> None:
    memory = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[memory])), max_message_size=100)
    url = await running(ep)
    t = target(url)
    with pytest.raises(SMTPError) as declared:
        await t.start(MsgMetadata(id="m1", smtp_opts=MailOptions(size=1000)), "a@example.net")
    with pytest.raises(SMTPError) as actual:
        await send(t, ["joe@example.org"], body=b"x" * 200)
    t.close()
    await ep.stop()
    assert (declared.value.code, declared.value.enhanced_code) == (552, (5, 3, 4))
    assert (actual.value.code, actual.value.enhanced_code) == (552, (5, 3, 4))
    assert memory.messages == []


async def test_a_garbled_upstream_is_a_temporary_protocol_error() -> None:
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()
        writer.write(b"hello? this is no reply\r\n")
        await writer.drain()
        await reader.read()

    async with fake_upstream(garbled) as url:
        with pytest.raises(SMTPError) as info:
            await target(url).start(MsgMetadata(id="m"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 5, 0))


async def test_an_upstream_that_stops_answering_times_out_as_a_temporary_failure() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.read()

    async with fake_upstream(silent) as url:
        t = target(url, connect_timeout="200ms")
        with pytest.raises(SMTPError) as info:
            await t.start(MsgMetadata(id="m"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 4, 2))


async def test_a_421_greeting_is_carried_back_as_temporary() -> None:
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 4.3.2 Too busy\r\n")
        await writer.drain()

    async with fake_upstream(busy) as url:
        with pytest.raises(SMTPError) as info:
            await target(url).start(MsgMetadata(id="m"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code, info.value.message) == (
        421,
        (4, 3, 2),
        "Too busy",
    )


# TLS.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed(tmp_path_factory.mktemp("tls"), "localhost")


async def tls_upstream(certificate: tuple[str, str], memory: MemoryTarget) -> SMTPEndpoint:
    loader = FileTLSLoader("tls.loader.file", "certs")
    loader.init(ConfigMap({"certs": [list(certificate)]}))
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[memory])))
    ep.tls = loader
    return ep


async def with_tls_upstream(
    certificate: tuple[str, str], run: Callable[[str, MemoryTarget], Awaitable[None]]
) -> MemoryTarget:
    memory = MemoryTarget()
    ep = await tls_upstream(certificate, memory)
    url = await running(ep)
    try:
        await run(url.replace("127.0.0.1", "localhost"), memory)
    finally:
        await ep.stop()
    return memory


async def test_starttls_is_used_with_the_certificate_checked(
    certificate: tuple[str, str],
) -> None:
    async def run(url: str, memory: MemoryTarget) -> None:
        t = target(url, tls_root_ca=certificate[0], require_tls=True)
        await send(t, ["joe@example.org"])
        t.close()

    memory = await with_tls_upstream(certificate, run)
    (stored,) = memory.messages
    assert stored.meta.conn is not None
    assert stored.meta.conn.tls is not None


async def test_a_certificate_that_does_not_verify_fails_the_connection(
    certificate: tuple[str, str],
) -> None:
    async def run(url: str, memory: MemoryTarget) -> None:
        with pytest.raises(SMTPError) as info:
            await target(url).start(MsgMetadata(id="m"), "a@example.net")
        assert (info.value.code, info.value.enhanced_code) == (451, (4, 7, 5))

    assert (await with_tls_upstream(certificate, run)).messages == []


async def test_certificate_checks_can_be_turned_off(certificate: tuple[str, str]) -> None:
    async def run(url: str, memory: MemoryTarget) -> None:
        t = target(url, tls_verify=False)
        await send(t, ["joe@example.org"])
        t.close()

    assert len((await with_tls_upstream(certificate, run)).messages) == 1


async def test_require_tls_skips_an_upstream_without_it(
    upstream: tuple[MemoryTarget, str],
) -> None:
    _memory, url = upstream
    with pytest.raises(SMTPError) as info:
        await target(url, require_tls=True).start(MsgMetadata(id="m"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 7, 10))


async def test_credentials_are_not_sent_without_tls(upstream: tuple[MemoryTarget, str]) -> None:
    _memory, url = upstream
    t = target(url, auth_username="joe", auth_password="secret", attempt_starttls=False)
    with pytest.raises(SMTPError) as info:
        await t.start(MsgMetadata(id="m"), "a@example.net")
    assert (info.value.code, info.value.enhanced_code) == (451, (4, 7, 10))


# LMTP.


async def test_lmtp_reports_each_recipients_outcome_over_a_unix_socket(tmp_path: Path) -> None:
    memory = MemoryTarget(partial=True)
    memory.fail_in_body.add("ann@example.org")
    path = tmp_path / "lmtp.sock"
    ep = SMTPEndpoint("lmtp", [f"unix://{path}"])
    ep.init(ConfigMap({"hostname": "mx.test"}))
    ep.pipeline = Pipeline(default=Destination(targets=[memory]))
    await ep.start()
    t = target(f"unix://{path}", module="target.lmtp")
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    for rcpt in ("joe@example.org", "ann@example.org", "bob@example.org"):
        await delivery.add_rcpt(rcpt)
    assert isinstance(delivery, PartialDelivery)
    collector = Collector()
    await delivery.body_non_atomic(collector, HEADER, MemoryBuffer(BODY))
    await delivery.commit()
    t.close()
    await ep.stop()
    assert set(collector.statuses) == {"joe@example.org", "ann@example.org", "bob@example.org"}
    failed = collector.statuses["ann@example.org"]
    assert isinstance(failed, SMTPError)
    assert failed.target_name == "target.lmtp"
    assert collector.statuses["joe@example.org"] is None
    assert collector.statuses["bob@example.org"] is None
    assert len(memory.messages) == 1


async def test_an_smtp_delivery_is_not_partial(upstream: tuple[MemoryTarget, str]) -> None:
    _memory, url = upstream
    t = target(url)
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    assert not isinstance(delivery, PartialDelivery)
    await delivery.abort()
    t.close()


# Configuration.


def test_the_targets_are_registered_under_maddys_names() -> None:
    registry = new_registry()
    t = build(registry, "target.lmtp", "out", {"targets": ["unix:///run/lmtp.sock"]})
    assert isinstance(t, SMTPTarget)
    assert t.lmtp
    assert t.upstreams == (Upstream(text="unix:///run/lmtp.sock", path="/run/lmtp.sock"),)


@pytest.mark.parametrize(
    "text", ["127.0.0.1:25", "tcp://:25", "tcp://host", "tcp://host:0", "udp://h:1", "unix://x"]
)
def test_a_malformed_upstream_is_a_config_error_naming_targets(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        target(text)
    assert info.value.key == "targets"
    assert info.value.module == "target.smtp"


def test_no_upstream_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        SMTPTarget("target.smtp", "out").init(ConfigMap({}))


def test_a_bad_password_setting_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        target("tcp://127.0.0.1:25", auth_username="joe", auth_password=["hunter2"])
    assert info.value.key == "auth_password"
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("name", ["", "bad name", "a\r\nb"])
def test_a_hostname_that_is_no_domain_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        target("tcp://127.0.0.1:25", hostname=name)
    assert info.value.key == "hostname"


def test_an_idn_hostname_is_sent_as_a_labels() -> None:
    t = target("tcp://127.0.0.1:25", hostname="bücher.example")
    assert t.pool.settings.hostname == "xn--bcher-kva.example"


async def test_auth_plain_logs_in_over_starttls(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    registry = new_registry()
    (tmp_path / "users").write_text("")
    build(registry, "table.file", "users", {"file": str(tmp_path / "users")})
    auth = build(registry, "auth.pass_table", "authdb", {"table": "&users"})
    assert isinstance(auth, PassTable)
    await asyncio.to_thread(auth.create_user, "joe@example.org", "s3cret")
    memory = MemoryTarget()
    ep = SMTPEndpoint("submission", ["127.0.0.1:0"])
    ep.init(ConfigMap({"hostname": "mx.test", "auth": "&authdb"}, resolver=registry.get_instance))
    ep.tls = (await tls_upstream(certificate, memory)).tls
    ep.pipeline = Pipeline(default=Destination(targets=[memory]))
    url = (await running(ep)).replace("127.0.0.1", "localhost")
    login = {"tls_root_ca": certificate[0], "auth_username": "joe@example.org"}
    wrong = target(url, **login, auth_password="guess")
    t = target(url, **login, auth_password="s3cret")
    try:
        with pytest.raises(SMTPError) as refused:
            await wrong.start(MsgMetadata(id="m0"), "joe@example.org")
        await send(t, ["b@example.org"])
        t.close()
    finally:
        await ep.stop()
    assert (refused.value.code, refused.value.enhanced_code) == (535, (5, 7, 8))
    (stored,) = memory.messages
    assert stored.meta.conn is not None
    assert stored.meta.conn.auth_user == "joe@example.org"


async def tiny_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    said: list[bytes],
    ehlo: bytes = b"250 tiny\r\n",
    ignore: bytes = b"-",
    ignored: asyncio.Event | None = None,
) -> None:
    """Just enough of an SMTP server for a fault to inject: it never answers the
    commands starting with `ignore` (and sets `ignored` when one came)."""
    writer.write(b"220 tiny\r\n")
    while line := await reader.readline():
        said.append(line.rstrip(b"\r\n"))
        if line.startswith(ignore):
            if ignored is not None:
                ignored.set()
            continue
        if line.startswith(b"EHLO"):
            writer.write(ehlo)
        elif line.startswith(b"DATA"):
            writer.write(b"354 go\r\n")
            while await reader.readline() not in (b".\r\n", b""):
                pass
            writer.write(b"250 OK\r\n")
        elif line.startswith(b"QUIT"):
            writer.write(b"221 bye\r\n")
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()


async def test_a_cancelled_command_closes_its_session_instead_of_reusing_it() -> None:
    sessions: list[list[bytes]] = []
    stalled = asyncio.Event()

    async def stalls_on_rcpt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        said: list[bytes] = []
        sessions.append(said)
        ignore = b"RCPT" if len(sessions) == 1 else b"-"  # the first one never answers RCPT
        await tiny_server(reader, writer, said=said, ignore=ignore, ignored=stalled)

    async with fake_upstream(stalls_on_rcpt) as url:
        t = target(url)
        delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
        task = asyncio.ensure_future(delivery.add_rcpt("joe@example.org"))
        await stalled.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await delivery.abort()
        await send(t, ["ann@example.org"])  # on a new session: the first is gone
        t.close()
    assert len(sessions) == 2
    assert b"DATA" not in sessions[0]
    assert b"DATA" in sessions[1]


async def test_an_idle_session_the_server_dropped_is_replaced() -> None:
    memory = MemoryTarget()
    pipeline = Pipeline(default=Destination(targets=[memory]))
    first = endpoint("smtp", pipeline)
    url = await running(first)
    t = target(url)
    await send(t, ["joe@example.org"])
    await first.stop()  # closes the session the pool keeps
    second = SMTPEndpoint("smtp", [url])
    second.init(ConfigMap({"hostname": "mx.test"}))
    second.pipeline = pipeline
    await second.start()
    try:
        await send(t, ["ann@example.org"])
        t.close()
    finally:
        await second.stop()
    assert [m.rcpts for m in memory.messages] == [["joe@example.org"], ["ann@example.org"]]


async def test_a_server_refusing_ehlo_is_greeted_with_helo() -> None:
    said: list[bytes] = []

    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await tiny_server(reader, writer, said=said, ehlo=b"502 5.5.1 What is EHLO?\r\n")

    async with fake_upstream(old) as url:
        t = target(url)
        await send(t, ["joe@example.org"])
        t.close()
    assert [line.split(b" ")[0] for line in said[:5]] == [
        b"EHLO",
        b"HELO",
        b"MAIL",
        b"RCPT",
        b"DATA",
    ]


async def test_the_clients_auth_identity_is_never_passed_on() -> None:
    said: list[bytes] = []

    async def offers_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ehlo = b"250-tiny\r\n250-AUTH PLAIN\r\n250 SIZE 1000000\r\n"
        await tiny_server(reader, writer, said=said, ehlo=ehlo)

    async with fake_upstream(offers_auth) as url:
        t = target(url)
        opts = MailOptions(auth="boss@example.net", size=10)
        delivery = await t.start(MsgMetadata(id="m", smtp_opts=opts), "a@example.net")
        await delivery.abort()
        t.close()
    assert b"MAIL FROM:<a@example.net> SIZE=10" in said


async def test_a_body_that_cannot_be_read_fails_every_lmtp_recipient(tmp_path: Path) -> None:
    memory = MemoryTarget(partial=True)
    ep = endpoint("lmtp", Pipeline(default=Destination(targets=[memory])))
    t = target(await running(ep), module="target.lmtp")
    delivery = await t.start(MsgMetadata(id="m1"), "a@example.net")
    await delivery.add_rcpt("joe@example.org")
    await delivery.add_rcpt("ann@example.org")
    gone = MemoryBuffer(BODY)
    gone.remove()
    assert isinstance(delivery, PartialDelivery)
    collector = Collector()
    await delivery.body_non_atomic(collector, HEADER, gone)
    await delivery.abort()
    t.close()
    await ep.stop()
    assert set(collector.statuses) == {"joe@example.org", "ann@example.org"}
    for status in collector.statuses.values():
        assert isinstance(status, SMTPError)
        assert (status.code, status.enhanced_code) == (451, (4, 3, 0))
    assert memory.messages == []


# The client shell on its own.


@pytest.mark.parametrize("lmtp", [False, True])
async def test_a_body_goes_in_bdat_chunks_where_chunking_is_asked_and_offered(
    lmtp: bool, caplog: pytest.LogCaptureFixture
) -> None:
    memory = MemoryTarget(partial=lmtp)
    ep = endpoint("lmtp" if lmtp else "smtp", Pipeline(default=Destination(targets=[memory])))
    upstream = Upstream.parse(await running(ep))
    settings = ClientSettings(lmtp=lmtp, chunking=True, chunk_size=1000)
    body = b"".join(b"line %d\r\n.dot\r\n" % i for i in range(400))
    caplog.set_level(logging.DEBUG, logger="mailmodule.endpoint")
    client = await SMTPClient.connect(upstream, settings)
    try:
        await client.mail("a@example.net")
        await client.rcpt("joe@example.org")
        await client.rcpt("ann@example.org")
        if lmtp:
            assert [r.code for r in await client.data_lmtp(HEADER, MemoryBuffer(body))] == [
                250,
                250,
            ]
        else:
            await client.data(HEADER, MemoryBuffer(body))
    finally:
        await client.aclose()
        await ep.stop()
    (stored,) = memory.messages
    assert stored.body == body
    chunk_ends = [r for r in caplog.records if "ChunkEnd" in r.getMessage()]
    assert len(chunk_ends) >= len(body) // 1000 - 1  # each chunk but the last was answered


def test_a_chunk_size_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        ClientSettings(chunk_size=0)


async def test_a_server_from_toml_relays_through_target_lmtp(tmp_path: Path) -> None:
    """A TOML-built pipeline with target.lmtp in it, as an operator writes it: the
    pipeline's own per-recipient delivery reaches the LMTP upstream's verdicts."""
    memory = MemoryTarget(partial=True)
    memory.fail_in_body.add("ann@example.org")
    path = tmp_path / "lmtp.sock"
    ep = SMTPEndpoint("lmtp", [f"unix://{path}"])
    ep.init(ConfigMap({"hostname": "mx.test"}))
    ep.pipeline = Pipeline(default=Destination(targets=[memory]))
    await ep.start()
    text = f"""
[modules.dovecot]
module = "target.lmtp"
targets = ["unix://{path.as_posix()}"]
hostname = "relay.test"

[pipeline]
default = {{ targets = ["&dovecot"] }}
"""
    server = Server(tomllib.loads(text), source="t.toml")
    server.initialize()
    try:
        statuses = Collector()
        async with await server.pipeline.start(MsgMetadata(id="m1"), "a@example.net") as d:
            await d.add_rcpt("joe@example.org")
            await d.add_rcpt("ann@example.org")
            await d.body_non_atomic(statuses, HEADER, MemoryBuffer(BODY))
            await d.commit()
    finally:
        server.registry.close_all()
        await ep.stop()
    assert statuses.statuses["joe@example.org"] is None
    assert isinstance(statuses.statuses["ann@example.org"], SMTPError)
    assert len(memory.messages) == 1


class RelayConformance(DeliveryTargetSuite):
    """The DeliveryTarget contract, with our endpoint of `kind` and a MemoryTarget as the
    upstream's store."""

    kind: ClassVar[str] = "smtp"

    @pytest.fixture
    async def target(self, tmp_path: Path) -> AsyncIterator[DeliveryTarget]:
        self.memory = MemoryTarget(partial=True)
        ep = endpoint(self.kind, Pipeline(default=Destination(targets=[self.memory])))
        t = target(await running(ep), module=f"target.{self.kind}")
        yield t
        t.close()
        await ep.stop()

    def delivered(self, target: DeliveryTarget) -> int:
        return len(self.memory.messages)

    # A relay cannot be atomic (RFC 5321 has no two-phase commit; maddy's target.smtp
    # says as much): the two tests of visibility before commit become what holds instead.

    async def test_nothing_is_visible_before_commit(self, target: DeliveryTarget) -> None:
        """Instead: the message is the upstream's once body returned, before commit."""
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        await delivery.body(HEADER, MemoryBuffer(BODY))
        assert self.delivered(target) == 1
        await delivery.commit()
        assert self.delivered(target) == 1

    async def test_abort_leaves_nothing(self, target: DeliveryTarget) -> None:
        """Instead: abort before the body sends nothing; after it, takes nothing back."""
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        await delivery.abort()
        assert self.delivered(target) == 0


class TestTargetSMTPConforms(RelayConformance):
    kind = "smtp"


class TestTargetLMTPConforms(RelayConformance):
    kind = "lmtp"


async def test_a_reused_session_that_fails_its_rset_is_replaced_at_once() -> None:
    """The upstream gave up on the idle session without the client seeing it (a 421 in
    answer to the RSET that reuses it): the message goes on over a new session."""
    sessions: list[list[bytes]] = []

    async def gives_up_on_reuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        said: list[bytes] = []
        sessions.append(said)
        if len(sessions) > 1:
            await tiny_server(reader, writer, said=said)
            return
        writer.write(b"220 tiny\r\n")
        while line := await reader.readline():
            said.append(line.rstrip(b"\r\n"))
            if line.startswith(b"RSET"):
                writer.write(b"421 4.4.2 Idle too long\r\n")
                return
            if line.startswith(b"DATA"):
                writer.write(b"354 go\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
            writer.write(b"250 OK\r\n")
            await writer.drain()

    async with fake_upstream(gives_up_on_reuse) as url:
        t = target(url)
        await send(t, ["joe@example.org"])
        await send(t, ["ann@example.org"])
        t.close()
    assert len(sessions) == 2
    assert sessions[0][-1] == b"RSET"
    assert b"RCPT TO:<ann@example.org>" in sessions[1]
