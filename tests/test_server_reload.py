"""SIGHUP to `mailmodule serve`: the configuration is reloaded while serving."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trustme

from mailmodule.config import ConfigMap
from mailmodule.modules._base import ModuleBase
from mailmodule.registry import Registry
from mailmodule.server import Server
from tests.endpoint_kit import LineClient, delivered, greeted
from tests.serve_kit import MAILDIR_CONFIG, Served, serving, write_config

# MAILDIR_CONFIG with example.com delivered too.
TWO_DOMAINS = MAILDIR_CONFIG.replace(
    '"example.org" = {{ targets = ["&local"] }}',
    '"example.org" = {{ targets = ["&local"] }}, "example.com" = {{ targets = ["&local"] }}',
)
MESSAGE = "Subject: {subject}\r\n\r\nhello\r\n"


def reloads(count: int = 1, word: str = "reloaded ") -> Callable[[Sequence[str]], bool]:
    return lambda lines: sum(line.startswith(word) for line in lines) >= count


def refusals(count: int = 1) -> Callable[[Sequence[str]], bool]:
    return reloads(count, "reload refused")


def hup(served: Served) -> None:
    served.proc.send_signal(signal.SIGHUP)


def send(port: int, rcpt: str, subject: str) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        return s.sendmail("a@example.net", [rcpt], MESSAGE.format(subject=subject))


def subjects(root: Path) -> set[str]:
    found = set()
    for path in delivered(root):
        for line in path.read_text().splitlines():
            if line.startswith("Subject: "):
                found.add(line.removeprefix("Subject: "))
    return found


def mid_message(port: int, rcpt: str) -> LineClient:
    """A session whose body is under way: DATA accepted, half the message sent."""
    c = greeted("127.0.0.1", port)
    assert c.command("MAIL FROM:<a@example.net>").startswith("250")
    assert c.command(f"RCPT TO:<{rcpt}>").startswith("250")
    assert c.command("DATA").startswith("354")
    c.send(b"Subject: begun before\r\n\r\nfirst half")
    return c


def test_a_reload_routes_new_sessions_by_the_new_file_while_a_message_under_way_completes(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with serving(config) as served:
        (port,) = served.ports()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(port, "joe@example.com", "too early")
        before = mid_message(port, "joe@example.org")
        write_config(tmp_path, TWO_DOMAINS)
        hup(served)
        served.wait_for(reloads())
        assert send(port, "joe@example.com", "after") == {}
        before.send(b"second half\r\n.")
        assert before.reply().startswith("250 2.0.0")
        # The same session's next message runs on the new pipeline.
        assert before.command("MAIL FROM:<a@example.net>").startswith("250")
        assert before.command("RCPT TO:<ann@example.com>").startswith("250")
        before.close()
        assert served.stop() == 0
    assert subjects(tmp_path / "mail") == {"begun before", "after"}


def test_a_broken_file_on_reload_is_logged_by_section_and_key_and_the_old_one_serves_on(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    with serving(config) as served:
        (port,) = served.ports()
        config.write_text(config.read_text().replace("[pipeline]", "[pipeline]\nbogus = 1"))
        hup(served)
        served.wait_for(refusals())
        (line,) = [x for x in served.lines if x.startswith("reload refused")]
        assert str(config) in line
        assert "pipeline" in line
        assert "bogus" in line
        assert send(port, "joe@example.org", "still served") == {}
        config.write_text("this is = not [toml")
        hup(served)
        served.wait_for(refusals(2))
        assert "not valid TOML" in served.lines[-1]
        assert served.stop() == 0
    log = (tmp_path / "serve.log").read_text()
    assert "reload refused, keeping the running configuration" in log
    assert "bogus" in log
    assert subjects(tmp_path / "mail") == {"still served"}


def test_a_reload_that_would_listen_elsewhere_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with serving(config) as served:
        (port,) = served.ports()
        config.write_text(config.read_text().replace("127.0.0.1:0", "127.0.0.1:1"))
        hup(served)
        served.wait_for(refusals())
        assert "restart for that" in served.lines[-1]
        assert send(port, "joe@example.org", "same listener") == {}
        assert served.stop() == 0


def test_sighup_reaches_every_worker_and_each_reloads(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with serving(config, "--workers", "2") as served:
        (port,) = served.ports()
        served.wait_for(lambda lines: sum(" started (pid " in x for x in lines) >= 2)
        write_config(tmp_path, TWO_DOMAINS)
        hup(served)
        served.wait_for(reloads(2))
        assert any("SIGHUP: passed on to 2 worker" in line for line in served.lines)
        for n in range(6):  # whichever worker takes the connection
            assert send(port, f"u{n}@example.com", f"worker {n}") == {}
        assert served.stop() == 0
    assert len(delivered(tmp_path / "mail")) == 6


TLS_CONFIG = """
hostname = "mx.test"

[modules.certs]
module = "tls.loader.file"
certs = [["{cert}", "{key}"]]

[modules.local]
module = "target.maildir"
root = "{root}"
autocreate = true

[pipeline]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0", "tls://127.0.0.1:0"]
rdns = false
tls = "&certs"
"""


def tls_ports(served: Served) -> list[int]:
    """The STARTTLS port and the tls:// port, once both are announced."""
    served.wait_for(lambda lines: sum(x.startswith("smtp listening on") for x in lines) == 2)
    return served.ports()


def issue(ca: trustme.CA, directory: Path, name: str) -> tuple[Path, Path, bytes]:
    """A certificate for mx.test from `ca`, written as `name`.pem and `name`.key; its DER."""
    cert = ca.issue_cert("mx.test")
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path, ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def presented(ca: trustme.CA, port: int, *, implicit: bool) -> bytes:
    """The certificate the server shows mx.test's clients: after STARTTLS, or at once on
    a TLS listener; verified against `ca`."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if implicit:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    else:
        c = greeted("127.0.0.1", port)
        assert c.command("STARTTLS").startswith("220")
        c.file.close()  # nothing was read past the 220: the TLS handshake is next
        sock = c.sock
    with context.wrap_socket(sock, server_hostname="mx.test") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_reload_rotates_the_certificates_of_starttls_and_of_tls_listeners(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    cert, key, first = issue(ca, tmp_path, "first")
    config = write_config(tmp_path, TLS_CONFIG, cert=cert, key=key)
    with serving(config) as served:
        plain, implicit = tls_ports(served)
        assert presented(ca, plain, implicit=False) == first
        assert presented(ca, implicit, implicit=True) == first
        cert, key, second = issue(ca, tmp_path, "second")
        write_config(tmp_path, TLS_CONFIG, cert=cert, key=key)
        hup(served)
        served.wait_for(reloads())
        assert presented(ca, plain, implicit=False) == second
        assert presented(ca, implicit, implicit=True) == second
        assert served.stop() == 0


def test_a_reload_to_certificates_that_do_not_load_keeps_the_old_ones(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key, first = issue(ca, tmp_path, "first")
    config = write_config(tmp_path, TLS_CONFIG, cert=cert, key=key)
    with serving(config) as served:
        plain, _ = tls_ports(served)
        broken = tmp_path / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
        write_config(tmp_path, TLS_CONFIG, cert=broken, key=key)
        hup(served)
        served.wait_for(refusals())
        assert "endpoints[0]" in served.lines[-1]
        assert presented(ca, plain, implicit=False) == first
        assert served.stop() == 0


# In one process: when the modules of before a reload are closed.


class Closing(ModuleBase):
    """A table that records when it is closed, and which of its instances routed whom."""

    closed: list[str] = []  # noqa: RUF012  # shared by every instance on purpose
    routed: list[tuple[str, str]] = []  # noqa: RUF012
    old_closed = threading.Event()

    def init(self, cfg: ConfigMap) -> None:
        self.tag = cfg.string("tag", "")

    async def lookup(self, key: str) -> str | None:
        Closing.routed.append((self.tag, key))
        return None

    def close(self) -> None:
        Closing.closed.append(self.tag)
        if self.tag == "old":
            Closing.old_closed.set()


def closing_config(root: Path, tag: str) -> dict[str, object]:
    return {
        "hostname": "mx.test",
        "modules": {
            "probe": {"module": "table.closing", "tag": tag},
            "local": {"module": "target.maildir", "root": str(root), "autocreate": True},
        },
        "pipeline": {
            "destination_tables": [{"table": "&probe", "targets": ["&local"]}],
            "destinations": {"example.org": {"targets": ["&local"]}},
        },
        "endpoints": [{"type": "smtp", "listen": ["127.0.0.1:0"], "rdns": False}],
    }


def closing_server(root: Path, tag: str) -> Server:
    """An initialized server on `closing_config(root, tag)`, the Closing records cleared."""
    Closing.closed.clear()
    Closing.routed.clear()
    Closing.old_closed.clear()
    registry = Registry()
    registry.register("table.closing", Closing)
    server = Server(closing_config(root, tag), registry=registry)
    server.initialize()
    return server


async def test_the_old_modules_are_closed_once_the_last_session_on_them_ends(
    tmp_path: Path,
) -> None:
    server = closing_server(tmp_path / "mail", "old")
    ((_, _, port),) = await server.start()
    client = await asyncio.to_thread(mid_message, port, "joe@example.org")
    assert await server.reload(closing_config(tmp_path / "mail", "new")) is None
    # A whole session on the new modules meanwhile: the old ones stay open all along.
    assert await asyncio.to_thread(send, port, "ann@example.org", "new session") == {}
    assert Closing.closed == []

    def finish() -> str:
        client.send(b"second half\r\n.")
        reply = client.reply()
        client.command("QUIT")
        client.close()
        return reply

    assert (await asyncio.to_thread(finish)).startswith("250")
    assert await asyncio.to_thread(Closing.old_closed.wait, 30)
    assert Closing.closed == ["old"]
    assert Closing.routed == [("old", "joe@example.org"), ("new", "ann@example.org")]
    await server.stop()
    assert Closing.closed == ["old", "new"]
    assert len(delivered(tmp_path / "mail")) == 2


async def test_reloads_asked_together_apply_in_the_order_asked(tmp_path: Path) -> None:
    server = closing_server(tmp_path / "mail", "first")
    await server.start()
    second, third = (closing_config(tmp_path / "mail", tag) for tag in ("second", "third"))
    refused = await asyncio.gather(server.reload(second), server.reload(third))
    assert list(refused) == [None, None]
    probe = server.registry.get_instance("probe")
    assert isinstance(probe, Closing)
    assert probe.tag == "third"
    await server.stop()
    assert Closing.closed == ["first", "second", "third"]


async def test_a_session_told_other_limits_keeps_its_old_settings_to_its_end(
    tmp_path: Path,
) -> None:
    """Its EHLO said SIZE; a reload that changes the size limit cannot apply to it."""
    server = closing_server(tmp_path / "mail", "old")
    ((_, _, port),) = await server.start()
    client = await asyncio.to_thread(greeted, "127.0.0.1", port)
    bigger = closing_config(tmp_path / "mail", "new")
    endpoints = bigger["endpoints"]
    assert isinstance(endpoints, list)
    endpoints[0]["max_message_size"] = "64M"
    assert await server.reload(bigger) is None

    def one_message_then_quit() -> str:
        assert client.command("MAIL FROM:<a@example.net>").startswith("250")
        assert client.command("RCPT TO:<joe@example.org>").startswith("250")
        assert client.command("DATA").startswith("354")
        reply = client.command("Subject: x\r\n\r\nx\r\n.")
        client.command("QUIT")
        client.close()
        return reply

    assert (await asyncio.to_thread(one_message_then_quit)).startswith("250")
    assert Closing.routed == [("old", "joe@example.org")]
    assert await asyncio.to_thread(Closing.old_closed.wait, 30)
    await server.stop()
    assert Closing.closed == ["old", "new"]
