from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import smtplib
import ssl
import threading
from pathlib import Path

import pytest

from mailmodule import (
    Buffer,
    CheckResult,
    ConfigMap,
    ConnState,
    Delivery,
    Header,
    MsgMetadata,
    Registry,
    SMTPError,
)
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.endpoint._tls import cert_names
from mailmodule.modules import FileTLSLoader, PassTable
from mailmodule.pipeline import Destination, Pipeline
from tests.endpoint_kit import (
    LineClient,
    delivered,
    endpoint,
    greeted,
    leftovers,
    maildir,
    self_signed,
    to_maildir,
)
from tests.modules_kit import build
from tests.pipeline_kit import MemoryTarget, RecordingCheck

MESSAGE = b"From: a@example.net\r\nSubject: Hello\r\n\r\nHi there.\r\n"


async def serve(ep: SMTPEndpoint) -> tuple[str, int]:
    ((host, port),) = await ep.start()
    return host, port


async def test_smtp_delivers_into_maildir_with_a_received_field(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)

    def client() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port) as s:
            s.ehlo("client.example.net")
            assert not s.has_extn("dsn")  # read and kept, not offered until honoured
            assert s.has_extn("smtputf8")
            return s.sendmail("a@example.net", ["joe@example.org", "ann@example.org"], MESSAGE)

    assert await asyncio.to_thread(client) == {}
    await ep.stop()
    files = delivered(tmp_path)
    assert len(files) == 2
    header = Header.parse(files[0].read_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    received = header.get("Received") or ""
    assert received.startswith("from client.example.net (localhost [127.0.0.1]) by mx.test")
    assert "with ESMTP id" in received


async def test_the_connection_state_reaches_the_modules(tmp_path: Path) -> None:
    target = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[target])))
    host, port = await serve(ep)

    def client() -> None:
        with smtplib.SMTP(host, port) as s:
            s.ehlo("client.example.net")
            s.sendmail(
                "a@example.net",
                ["b@example.org"],
                MESSAGE,
                mail_options=["BODY=8BITMIME", "SMTPUTF8"],  # smtplib adds SIZE itself
            )

    await asyncio.to_thread(client)
    await ep.stop()
    meta = target.messages[0].meta
    assert meta.conn is not None
    assert meta.conn.proto == "UTF8SMTP"  # RFC 6531: SMTPUTF8 mail
    assert meta.conn.hostname == "client.example.net"
    assert meta.conn.remote_addr.startswith("127.0.0.1:")
    assert meta.conn.remote_ip is not None
    assert meta.conn.rdns_name is not None
    assert await meta.conn.rdns_name == "localhost"
    assert (meta.smtp_opts.size, meta.smtp_opts.body, meta.smtp_opts.utf8) == (
        len(MESSAGE),
        "8BITMIME",
        True,
    )
    assert meta.original_from == "a@example.net"


async def test_dsn_parameters_are_kept_per_recipient(tmp_path: Path) -> None:
    target = MemoryTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[target])))
    host, port = await serve(ep)

    def client() -> None:
        c = greeted(host, port)
        assert c.command("MAIL FROM:<a@example.net> RET=HDRS ENVID=abc+2Bdef").startswith("250")
        assert c.command(
            "RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;B@example.org"
        ).startswith("250")
        assert c.command("RCPT TO:<c@example.org>").startswith("250")
        assert c.command("DATA").startswith("354")
        c.send(MESSAGE + b".")
        assert c.reply().startswith("250")
        c.command("QUIT")
        c.close()

    await asyncio.to_thread(client)
    await ep.stop()
    meta = target.messages[0].meta
    assert meta.smtp_opts.return_ == "HDRS"
    assert meta.smtp_opts.envelope_id == "abc+def"
    opts = meta.rcpt_opts["b@example.org"]
    assert opts.notify == ("FAILURE", "DELAY")
    assert (opts.original_recipient_type, opts.original_recipient) == ("rfc822", "B@example.org")
    assert "c@example.org" not in meta.rcpt_opts


async def test_lmtp_replies_once_per_recipient_after_data(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    target = maildir(root)
    registry = Registry(discover_plugins=False)
    ep = endpoint("lmtp", Pipeline(destinations={"example.org": Destination(targets=[target])}))
    host, port = await serve(ep)
    (root / "ann").mkdir(parents=True)
    (root / "ann" / "new").write_text("not a directory: delivery to ann fails")
    (root / "ann" / "cur").mkdir()
    (root / "ann" / "tmp").mkdir()

    def client() -> list[str]:
        c = LineClient(host, port)
        assert c.reply().startswith("220")
        assert "250" in c.command("LHLO client")
        c.command("MAIL FROM:<a@example.net>")
        for rcpt in ("joe@example.org", "ann@example.org", "bob@example.org"):
            assert c.command(f"RCPT TO:<{rcpt}>").startswith("250")
        assert c.command("DATA").startswith("354")
        c.send(MESSAGE + b".")
        replies = [c.reply() for _ in range(3)]
        c.command("QUIT")
        c.close()
        return replies

    replies = await asyncio.to_thread(client)
    await ep.stop()
    assert replies[0].startswith("250 2.0.0 <joe@example.org>")
    assert replies[1].startswith("451 ")  # ann's mailbox is broken: only ann fails
    assert replies[2].startswith("250 2.0.0 <bob@example.org>")
    assert len(list((root / "joe" / "new").iterdir())) == 1
    assert len(list((root / "bob" / "new").iterdir())) == 1
    del registry


async def test_fifty_clients_deliver_a_thousand_messages_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)
    accepted: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with smtplib.SMTP(host, port, timeout=60) as s:
            for i in range(20):
                msg = f"Subject: {n}-{i}\r\n\r\nbody {n}-{i}\r\n".encode()
                refused = s.sendmail("a@example.net", [f"user{n % 7}@example.org"], msg)
                if not refused:
                    with lock:
                        accepted.append(1)

    # Client threads of their own: the default executor is the server's, for file work.
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, client, n) for n in range(50)))
    await ep.stop()
    assert len(accepted) == 1000
    assert len(delivered(tmp_path)) == 1000
    assert leftovers(tmp_path) == []


async def test_a_client_that_vanishes_mid_data_leaves_nothing_behind(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)

    def client() -> None:
        c = greeted(host, port)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        assert c.command("DATA").startswith("354")
        c.send(b"Subject: half\r\n\r\nonly half of the bo")
        c.close()

    await asyncio.to_thread(client)
    await asyncio.sleep(0.2)
    await ep.stop()
    assert delivered(tmp_path) == []
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL FROM:<a@example.net", "501"),
        ("MAIL FROM:<not an address>", "501"),
        ("MAIL FROM:<a@example.net> BOGUS=1", "555"),
        ("MAIL FROM:<a@example.net> SIZE=99999999999", "552"),
        ("RCPT TO:<b@example.org>", "503"),
        ("NOSUCHCOMMAND", "500"),
        ("DATA", "503"),
    ],
)
async def test_malformed_commands_get_the_right_codes(
    tmp_path: Path, command: str, reply: str
) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), max_message_size="1M")
    host, port = await serve(ep)

    def client() -> str:
        c = greeted(host, port)
        answer = c.command(command)
        c.close()
        return answer

    answer = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith(reply), answer


async def test_a_too_long_line_and_an_oversized_message_are_refused(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path), max_message_size="1K")
    host, port = await serve(ep)

    def client() -> tuple[str, str]:
        c = greeted(host, port)
        too_long = c.command("NOOP " + "x" * 2000)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        c.command("DATA")
        c.send(b"Subject: big\r\n\r\n" + b"y" * 900 + b"\r\n" + b"z" * 900 + b"\r\n.")
        big = c.reply()
        c.close()
        return too_long, big

    too_long, big = await asyncio.to_thread(client)
    await ep.stop()
    assert too_long.startswith("500")
    assert big.startswith("552")
    assert delivered(tmp_path) == leftovers(tmp_path) == []


async def test_a_malformed_header_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)

    def client() -> str:
        c = greeted(host, port)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<joe@example.org>")
        c.command("DATA")
        c.send(b"Subject: ok\r\nthis is no header field\r\n\r\nbody\r\n.")
        answer = c.reply()
        c.close()
        return answer

    answer = await asyncio.to_thread(client)
    await ep.stop()
    assert answer.startswith("554 5.6.0")
    assert delivered(tmp_path) == leftovers(tmp_path) == []


async def users(registry: Registry, tmp_path: Path) -> PassTable:
    (tmp_path / "users").write_text("")
    build(registry, "table.file", "users", {"file": str(tmp_path / "users")})
    auth = build(registry, "auth.pass_table", "authdb", {"table": "&users"})
    assert isinstance(auth, PassTable)
    await asyncio.to_thread(auth.create_user, "joe@example.org", "s3cret")
    return auth


async def test_auth_is_refused_without_tls(mailmodule_registry: Registry, tmp_path: Path) -> None:
    await users(mailmodule_registry, tmp_path)
    ep = SMTPEndpoint("submission", ["127.0.0.1:0"])
    ep.init(ConfigMap({"auth": "&authdb"}, resolver=mailmodule_registry.get_instance))
    ep.pipeline = to_maildir(tmp_path / "mail")
    host, port = await serve(ep)

    def client() -> tuple[str, str]:
        c = LineClient(host, port)
        c.reply()
        ehlo = c.command("EHLO client")
        auth = c.command("AUTH PLAIN AGpvZUBleGFtcGxlLm9yZwBzM2NyZXQ=")
        mail = c.command("MAIL FROM:<joe@example.org>")
        c.close()
        return ehlo + "\n" + auth, mail

    answer, mail = await asyncio.to_thread(client)
    await ep.stop()
    assert "AUTH" not in answer.split("\n")[1]  # not offered before STARTTLS
    assert "538 5.7.11" in answer
    assert mail.startswith("530")  # submission wants AUTH before MAIL


async def test_auth_after_starttls_logs_in_through_the_plain_auth_module(
    mailmodule_registry: Registry, tmp_path: Path
) -> None:
    await users(mailmodule_registry, tmp_path)
    cert, key = self_signed(tmp_path)
    loader = FileTLSLoader("tls.loader.file", "certs")
    loader.init(ConfigMap({"certs": [[cert, key]]}))
    mailmodule_registry.register_instance(loader, {"certs": [[cert, key]]})
    target = MemoryTarget()
    ep = SMTPEndpoint("submission", ["127.0.0.1:0"])
    ep.init(
        ConfigMap({"auth": "&authdb", "tls": "&certs"}, resolver=mailmodule_registry.get_instance)
    )
    ep.pipeline = Pipeline(default=Destination(targets=[target]))
    host, port = await serve(ep)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def client() -> tuple[int, int]:
        with smtplib.SMTP(host, port) as s:
            s.starttls(context=context)
            s.ehlo("client")
            try:
                s.login("joe@example.org", "wrong")
            except smtplib.SMTPAuthenticationError as exc:
                wrong = exc.smtp_code
            s.login("joe@example.org", "s3cret")
            s.sendmail("joe@example.org", ["b@example.org"], MESSAGE)
            return wrong, 235

    wrong, _ok = await asyncio.to_thread(client)
    await ep.stop()
    assert wrong == 535
    meta = target.messages[0].meta
    assert meta.conn is not None
    assert meta.conn.proto == "ESMTPSA"
    assert meta.conn.auth_user == "joe@example.org"
    assert meta.conn.tls is not None
    assert meta.conn.tls.version.startswith("TLS")


async def test_an_early_check_refuses_the_connection_before_the_greeting(tmp_path: Path) -> None:
    class Early(RecordingCheck):
        async def check_connection(self, state: ConnState) -> None:
            raise SMTPError(554, (5, 7, 1), "Go away")

    ep = endpoint(
        "smtp",
        Pipeline(checks=[Early("check.early")], default=Destination(targets=[MemoryTarget()])),
    )
    host, port = await serve(ep)

    def client() -> str:
        c = LineClient(host, port)
        answer = c.reply()
        c.close()
        return answer

    answer = await asyncio.to_thread(client)
    await ep.stop()
    assert answer == "554 5.7.1 Go away"


async def test_a_rejecting_check_is_heard_by_the_client(tmp_path: Path) -> None:
    check = RecordingCheck(
        results={"rcpt": CheckResult(reject=True, reason=SMTPError(550, (5, 7, 1), "Not for you"))}
    )
    ep = endpoint("smtp", Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()])))
    host, port = await serve(ep)

    def client() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port) as s:
            try:
                s.sendmail("a@example.net", ["b@example.org"], MESSAGE)
            except smtplib.SMTPRecipientsRefused as exc:
                return exc.recipients
        return {}

    refused = await asyncio.to_thread(client)
    await ep.stop()
    assert refused == {"b@example.org": (550, b"5.7.1 Not for you")}
    assert all(s.closes == 1 for s in check.states)


def test_endpoint_factory_refuses_unknown_kinds() -> None:
    from mailmodule import ConfigError

    with pytest.raises(ConfigError, match="unknown endpoint"):
        SMTPEndpoint("pop3", ["127.0.0.1:0"])


async def test_stop_lets_a_message_under_way_finish_then_says_421(tmp_path: Path) -> None:
    class SlowTarget(MemoryTarget):
        async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
            delivery = await super().start(msg_meta, mail_from)
            slow_body = delivery.body

            async def body(header: Header, buf: Buffer) -> None:
                entered.set()
                await asyncio.sleep(0.3)
                await slow_body(header, buf)

            delivery.body = body  # type: ignore[method-assign, assignment]  # a slow disk, injected
            return delivery

    entered = asyncio.Event()
    target = SlowTarget()
    ep = endpoint("smtp", Pipeline(default=Destination(targets=[target])))
    host, port = await serve(ep)

    def client() -> tuple[str, str]:
        c = greeted(host, port)
        c.command("MAIL FROM:<a@example.net>")
        c.command("RCPT TO:<b@example.org>")
        c.command("DATA")
        c.send(MESSAGE + b".")
        accepted = c.reply()
        goodbye = c.reply()
        c.close()
        return accepted, goodbye

    sending = asyncio.ensure_future(asyncio.to_thread(client))
    await asyncio.wait_for(entered.wait(), 10)
    await ep.stop(grace=10)
    accepted, goodbye = await sending
    assert accepted.startswith("250 2.0.0")
    assert goodbye.startswith("421 4.3.2")
    assert len(target.messages) == 1


async def test_starttls_serves_the_certificate_that_matches_sni(tmp_path: Path) -> None:
    first = self_signed(tmp_path, "mx1.test")
    second = self_signed(tmp_path, "mx2.test")
    loader = FileTLSLoader("tls.loader.file", "certs")
    loader.init(ConfigMap({"certs": [list(first), list(second)]}))
    ep = endpoint("smtp", to_maildir(tmp_path / "mail"))
    ep.tls = loader
    host, port = await serve(ep)

    def peer_certificate(server_name: str) -> bytes:
        c = greeted(host, port)
        assert c.command("STARTTLS").startswith("220")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(c.sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
        c.file.close()
        assert der is not None
        return der

    for name, (cert, _) in (("mx2.test", second), ("mx1.test", first), ("other.test", first)):
        der = await asyncio.to_thread(peer_certificate, name)
        assert der == ssl.PEM_cert_to_DER_cert(Path(cert).read_text()), name
    await ep.stop()


def test_certificate_names_are_read_without_a_private_ssl_api(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path, "mx1.test")
    assert cert_names(cert) == {"mx1.test"}
    assert cert_names(str(tmp_path / "missing.pem")) == set()


async def test_garbage_commands_never_break_the_server(tmp_path: Path) -> None:
    import random

    ep = endpoint("smtp", to_maildir(tmp_path))
    host, port = await serve(ep)
    rng = random.Random(7)
    words = [
        "MAIL",
        "RCPT",
        "DATA",
        "EHLO",
        "HELO",
        "RSET",
        "AUTH",
        "STARTTLS",
        "FROM:",
        "TO:",
        "<",
        ">",
        "@",
        "=",
        "\x00",
        "ä",
        "SIZE=",
        "NOTIFY=",
        ".",
    ]

    def garbage() -> list[str]:
        replies = []
        c = LineClient(host, port)
        c.reply()
        for _ in range(150):
            line = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 6)))
            try:
                c.send(line.encode("utf-8", "surrogateescape"))
                replies.append(c.reply())
                if replies[-1].startswith("354"):
                    c.send(b"Subject: x\r\n\r\n.")
                    replies.append(c.reply())
            except OSError:
                break  # the server hangs up on a client that sends too many bogus commands
            if not replies[-1]:
                replies.pop()
                break
        c.close()
        return replies

    def normal() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port) as s:
            return s.sendmail("a@example.net", ["joe@example.org"], MESSAGE)

    replies = await asyncio.to_thread(garbage)
    assert all(r[:3].isdigit() for r in replies)
    assert await asyncio.to_thread(normal) == {}
    await ep.stop()
    assert leftovers(tmp_path) == []


async def test_passwords_never_reach_the_logs(
    mailmodule_registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    await users(mailmodule_registry, tmp_path)
    ep = SMTPEndpoint("smtp", ["127.0.0.1:0"])
    ep.init(
        ConfigMap(
            {"auth": "&authdb", "auth_require_tls": False},
            resolver=mailmodule_registry.get_instance,
        )
    )
    ep.pipeline = Pipeline(default=Destination(targets=[MemoryTarget()]))
    host, port = await serve(ep)

    def client() -> None:
        with smtplib.SMTP(host, port) as s:
            s.ehlo("client")
            try:
                s.login("joe@example.org", "wr0ng-s3cret")
            except smtplib.SMTPAuthenticationError:
                pass
            s.login("joe@example.org", "s3cret")
            s.sendmail("joe@example.org", ["b@example.org"], MESSAGE)

    with caplog.at_level(logging.DEBUG):
        await asyncio.to_thread(client)
        await ep.stop()
    text = caplog.text
    for secret in ("s3cret", "wr0ng"):
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode()[:6] not in text
    assert base64.b64encode(b"\0joe@example.org\0s3cret").decode() not in text
