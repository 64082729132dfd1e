"""The asyncio shell over real sockets: STARTTLS, LMTP replies, AUTH, limits, timeouts,
shutdown, extensions, logs."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import ssl
import time
from pathlib import Path

import pytest

from mailmodule import ConfigMap, Header, Registry
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.modules import FileTLSLoader
from mailmodule.pipeline import Destination, Pipeline
from tests.endpoint_kit import (
    LineClient,
    delivered,
    endpoint,
    greeted,
    leftovers,
    self_signed,
    to_maildir,
)
from tests.modules_kit import build
from tests.pipeline_kit import MemoryTarget

MESSAGE = b"From: a@example.net\r\nSubject: Hello\r\n\r\nHi there.\r\n"


def no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def loader(tmp_path: Path) -> FileTLSLoader:
    cert, key = self_signed(tmp_path)
    tls = FileTLSLoader("tls.loader.file", "certs")
    tls.init(ConfigMap({"certs": [[cert, key]]}))
    return tls


async def serve(ep: SMTPEndpoint) -> tuple[str, int]:
    ((host, port),) = await ep.start()
    return host, port


def received_of(path: Path) -> str:
    header = Header.parse(path.read_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    return header.get("Received") or ""


# STARTTLS


async def test_starttls_keeps_the_connection_facts_and_forgets_the_transaction(
    tmp_path: Path,
) -> None:
    target = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[target])))
    ep.tls = loader(tmp_path)
    host, port = await serve(ep)

    def client() -> int:
        with smtplib.SMTP(host, port) as s:
            s.ehlo("client.example.net")
            s.starttls(context=no_verify())
            code, _ = s.docmd("MAIL FROM:<a@example.net>")  # EHLO again first (RFC 3207)
            s.ehlo("client.example.net")
            s.sendmail("a@example.net", ["b@example.org"], MESSAGE)
            return code

    assert await asyncio.to_thread(client) == 503
    await ep.stop()
    meta = target.messages[0].meta
    assert meta.conn is not None
    assert meta.conn.remote_addr.startswith("127.0.0.1:")
    assert meta.conn.rdns_name is not None
    assert await meta.conn.rdns_name == "localhost"
    assert meta.conn.tls is not None
    assert meta.conn.tls.version.startswith("TLS")
    assert meta.conn.proto == "ESMTPS"
    received = Header.parse(target.messages[0].header).get("Received") or ""
    assert received.startswith("from client.example.net (localhost [127.0.0.1]) by mx.test")
    assert "with ESMTPS id" in received


async def test_commands_pipelined_after_starttls_are_dropped(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path / "mail"))
    ep.tls = loader(tmp_path)
    host, port = await serve(ep)

    def client() -> tuple[str, str]:
        c = greeted(host, port)
        c.sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n")
        ready = c.reply()
        with no_verify().wrap_socket(c.sock, server_hostname="localhost") as tls:
            f = tls.makefile("rb")
            tls.sendall(b"EHLO client\r\n")
            while f.readline()[3:4] == b"-":
                pass
            tls.sendall(b"RCPT TO:<joe@example.org>\r\n")
            rcpt = f.readline().decode()
            f.close()
        c.file.close()
        return ready, rcpt

    ready, rcpt = await asyncio.to_thread(client)
    await ep.stop()
    assert ready.startswith("220")
    assert rcpt.startswith("503")  # the injected MAIL FROM never counted


async def test_implicit_tls_serves_tls_from_the_first_byte(tmp_path: Path) -> None:
    target = MemoryTarget()
    ep = SMTPEndpoint("submissions", ["tls://127.0.0.1:0"])
    ep.init(ConfigMap({"hostname": "mx.test", "auth_required": False}))
    ep.tls = loader(tmp_path)
    ep.pipeline = Pipeline(default=Destination(targets=[target]))
    host, port = await serve(ep)

    def client() -> bool:
        with smtplib.SMTP_SSL(host, port, context=no_verify()) as s:
            s.ehlo("client")
            starttls = s.has_extn("starttls")
            s.sendmail("a@example.net", ["b@example.org"], MESSAGE)
            return starttls

    assert await asyncio.to_thread(client) is False
    await ep.stop()
    meta = target.messages[0].meta
    assert meta.conn is not None
    assert meta.conn.tls is not None
    assert meta.conn.proto == "ESMTPS"


# LMTP


def lmtp_session(host: str, port: int, rcpts: list[str], message: bytes) -> list[str]:
    c = LineClient(host, port)
    c.reply()
    c.command("LHLO client")
    c.command("MAIL FROM:<a@example.net>")
    accepted = sum(c.command(f"RCPT TO:<{r}>").startswith("250") for r in rcpts)
    assert c.command("DATA").startswith("354")
    c.send(message + b".")
    replies = [c.reply() for _ in range(accepted)]
    replies.append(c.command("NOOP"))  # nothing more was due before this
    c.close()
    return replies


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (MESSAGE, "250 2.0.0"),
        (b"Subject: x\r\nno header field\r\n\r\nbody\r\n", "554 5.6.0"),
        (b"Subject: big\r\n\r\n" + b"y" * 2000 + b"\r\n", "552 5.3.4"),
    ],
)
async def test_lmtp_gives_one_reply_per_accepted_recipient_whatever_happens(
    tmp_path: Path, message: bytes, code: str
) -> None:
    ep = endpoint("lmtp", to_maildir(tmp_path), max_message_size="1K")
    host, port = await serve(ep)
    rcpts = ["joe@example.org", "JOE@example.org", "bob@example.org", "joe@example.org"]
    replies = await asyncio.to_thread(lmtp_session, host, port, rcpts, message)
    await ep.stop()
    assert len(replies) == 5
    assert all(r.startswith(code) for r in replies[:4]), replies
    assert replies[4].startswith("250 2.0.0 OK")
    expected = 2 if code.startswith("250") else 0
    assert len(delivered(tmp_path)) == expected
    assert leftovers(tmp_path) == []


async def test_lmtp_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    ep = SMTPEndpoint("lmtp", [f"unix://{path}"])
    ep.init(ConfigMap({"hostname": "mx.test"}))
    ep.pipeline = to_maildir(tmp_path / "mail")
    assert await ep.start() == [(str(path), 0)]

    def client() -> list[str]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            f = sock.makefile("rb")

            def reply() -> str:
                while (line := f.readline().decode())[3:4] == "-":
                    pass
                return line

            reply()
            out = []
            for line in ("LHLO client", "MAIL FROM:<a@example.net>", "RCPT TO:<joe@example.org>"):
                sock.sendall(line.encode() + b"\r\n")
                out.append(reply())
            sock.sendall(b"DATA\r\n")
            out.append(reply())
            sock.sendall(MESSAGE + b".\r\n")
            out.append(reply())
            f.close()
            return out

    replies = await asyncio.to_thread(client)
    await ep.stop()
    assert replies[-1].startswith("250 2.0.0 <joe@example.org>")
    files = delivered(tmp_path / "mail")
    assert len(files) == 1
    assert received_of(files[0]).startswith("from client by mx.test with LMTP id")
    assert not path.exists()  # the endpoint made the socket file, and removed it


# Extensions


async def test_ehlo_offers_what_is_implemented_and_nothing_else(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), max_message_size="1M")
    ep.tls = loader(tmp_path)
    host, port = await serve(ep)

    def client() -> list[str]:
        c = LineClient(host, port)
        c.reply()
        lines = [line[4:] for line in c.command("EHLO client").split("\n")[1:]]
        c.close()
        return lines

    lines = await asyncio.to_thread(client)
    await ep.stop()
    assert lines == [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        f"SIZE {1 << 20}",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "CHUNKING",
    ]


async def test_bdat_chunks_and_postmaster_are_delivered(tmp_path: Path) -> None:
    target = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[target])))
    host, port = await serve(ep)

    def client() -> list[str]:
        c = greeted(host, port)
        first, second = MESSAGE[:20], MESSAGE[20:]
        c.sock.sendall(
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<postmaster>\r\n"
            + b"BDAT %d\r\n" % len(first)
            + first
            + b"BDAT %d LAST\r\n" % len(second)
            + second
        )
        replies = [c.reply() for _ in range(4)]
        c.close()
        return replies

    replies = await asyncio.to_thread(client)
    await ep.stop()
    assert [r[:3] for r in replies] == ["250"] * 4, replies
    message = target.messages[0]
    assert message.rcpts == ["postmaster"]
    assert message.body == b"Hi there.\r\n"


async def test_smuggled_end_of_data_stays_inside_the_one_message(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)
    smuggled = (
        b"From: a@example.net\r\nSubject: A test\r\n\r\nTesting\n.\r\n"
        b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
        b"NO SMUGGLING\r\n"
    )

    def client() -> str:
        c = greeted(host, port)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        c.command("DATA")
        c.send(smuggled + b".")
        answer = c.reply()
        c.command("QUIT")
        c.close()
        return answer

    answer = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith("250")
    (stored,) = delivered(tmp_path)
    assert stored.parent.parent.name == "joe"
    assert b"NO SMUGGLING" in stored.read_bytes()


# AUTH


async def test_auth_is_neither_offered_nor_known_without_an_auth_module(tmp_path: Path) -> None:
    ep = endpoint("submission", to_maildir(tmp_path / "mail"))
    ep.tls = loader(tmp_path)
    host, port = await serve(ep)

    def client() -> tuple[bool, int, int]:
        with smtplib.SMTP(host, port) as s:
            s.starttls(context=no_verify())
            s.ehlo("client")
            offered = s.has_extn("auth")
            code, _ = s.docmd("AUTH", "PLAIN AGpvZQBzM2NyZXQ=")
            mail, _ = s.docmd("MAIL FROM:<joe@example.org>")
            return offered, code, mail

    offered, code, mail = await asyncio.to_thread(client)
    await ep.stop()
    assert not offered
    assert code in (500, 502)
    assert mail == 530


async def test_auth_failures_are_slowed_then_the_session_is_closed(
    mailmodule_registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "users").write_text("")
    build(mailmodule_registry, "table.file", "users", {"file": str(tmp_path / "users")})
    build(mailmodule_registry, "auth.pass_table", "authdb", {"table": "&users"})
    ep = SMTPEndpoint("smtp", ["127.0.0.1:0"])
    settings = {"auth": "&authdb", "auth_require_tls": False, "auth_failure_delay": 0.1}
    ep.init(ConfigMap(settings, resolver=mailmodule_registry.get_instance))
    ep.pipeline = to_maildir(tmp_path / "mail")
    host, port = await serve(ep)

    def client() -> tuple[list[str], float]:
        c = greeted(host, port)
        start = time.monotonic()
        replies = [c.command("AUTH PLAIN AGpvZQB3cm9uZw==") for _ in range(3)]
        elapsed = time.monotonic() - start
        replies.append(c.reply())  # the connection is closed: an empty reply
        c.close()
        return replies, elapsed

    replies, elapsed = await asyncio.to_thread(client)
    await ep.stop()
    assert [r[:9] for r in replies[:3]] == ["535 5.7.8", "535 5.7.8", "421 4.7.0"]
    assert replies[3] == ""
    assert elapsed >= 0.1 + 0.2 + 0.4 - 0.05


# Limits


async def test_sessions_beyond_the_limits_get_421_at_connect(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), max_sessions_per_ip=2)
    host, port = await serve(ep)

    def client() -> list[str]:
        clients = [LineClient(host, port) for _ in range(3)]
        greetings = [c.reply() for c in clients]
        clients[0].command("QUIT")
        clients[0].close()
        time.sleep(0.2)
        late = LineClient(host, port)
        greetings.append(late.reply())
        for c in (*clients[1:], late):
            c.close()
        return greetings

    greetings = await asyncio.to_thread(client)
    await ep.stop()
    assert [g[:3] for g in greetings] == ["220", "220", "421", "220"]
    assert greetings[2].startswith("421 4.7.0")


async def test_max_sessions_counts_every_client(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), max_sessions=1)
    host, port = await serve(ep)

    def client() -> list[str]:
        first, second = LineClient(host, port), LineClient(host, port)
        out = [first.reply(), second.reply()]
        first.close()
        second.close()
        return out

    first, second = await asyncio.to_thread(client)
    await ep.stop()
    assert first.startswith("220")
    assert second.startswith("421 4.7.0")


# Timeouts and shutdown


async def test_an_idle_client_hears_421_when_the_command_timeout_fires(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), command_timeout=0.3)
    host, port = await serve(ep)

    def client() -> tuple[str, float]:
        c = greeted(host, port)
        start = time.monotonic()
        answer = c.reply()
        c.close()
        return answer, time.monotonic() - start

    answer, waited = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith("421 4.4.2")
    assert 0.2 < waited < 2


async def test_a_slow_upload_is_not_cut_while_bytes_flow(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), command_timeout=0.3, data_timeout=0.6)
    host, port = await serve(ep)

    def client() -> str:
        c = greeted(host, port)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        c.command("DATA")
        c.sock.sendall(b"Subject: slow\r\n\r\n")
        for _ in range(8):  # 1.6 s in all, longer than either timeout
            time.sleep(0.2)
            c.sock.sendall(b"line\r\n")
        c.send(b".")
        answer = c.reply()
        c.close()
        return answer

    answer = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith("250 2.0.0")
    assert len(delivered(tmp_path)) == 1


async def test_noops_cannot_hold_a_session_past_the_session_timeout(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), command_timeout=0.5, session_timeout=1)
    host, port = await serve(ep)

    def client() -> tuple[str, float]:
        c = greeted(host, port)
        start = time.monotonic()
        while (answer := c.command("NOOP")).startswith("250"):
            time.sleep(0.1)
        c.close()
        return answer, time.monotonic() - start

    answer, held = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith("421 4.4.2")
    assert held < 2


async def test_stop_closes_idle_sessions_at_once_with_421(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)
    idle = await asyncio.to_thread(greeted, host, port)
    start = time.monotonic()
    await ep.stop(grace=30)
    assert time.monotonic() - start < 2
    assert (await asyncio.to_thread(idle.reply)).startswith("421 4.3.2")
    idle.close()
    assert not ep.active


# The worker API


async def test_bind_then_start_on_the_given_sockets(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    sockets = ep.bind()
    port = sockets[0].getsockname()[1]
    assert port != 0
    assert await ep.start(sockets) == [("127.0.0.1", port)]

    def client() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port) as s:
            return s.sendmail("a@example.net", ["joe@example.org"], MESSAGE)

    assert await asyncio.to_thread(client) == {}
    await ep.stop()
    assert ep.sessions_started == 1
    assert len(delivered(tmp_path)) == 1


async def test_start_refuses_sockets_that_do_not_match_the_addresses(tmp_path: Path) -> None:
    from mailmodule import ConfigError

    ep = endpoint("smtp", to_maildir(tmp_path))
    with pytest.raises(ConfigError, match="one per listen address") as info:
        await ep.start([])
    assert info.value.key == "listen"


# Logs


async def test_one_info_line_per_message_and_no_protocol_traffic_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)

    def client() -> None:
        with smtplib.SMTP(host, port) as s:
            s.ehlo("client.example.net")
            for _ in range(3):
                s.sendmail("a@example.net", ["joe@example.org", "ann@example.org"], MESSAGE)

    with caplog.at_level(logging.INFO, logger="mailmodule.endpoint"):
        await asyncio.to_thread(client)
        await ep.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "mailmodule.endpoint"]
    messages = [line for line in lines if line.startswith("msg ")]
    assert len(messages) == 3, lines
    assert all("accepted" in m and "client 127.0.0.1" in m for m in messages)
    assert all("2 recipient(s)" in m and "'client.example.net'" in m for m in messages)
    assert not any("MAIL" in line or "RCPT" in line for line in lines)
