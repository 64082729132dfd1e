"""Knot DNS (knotd) serving SPF zones to a real `mailmodule serve` whose `[dns]` table
points at it: an SPF fail is refused, a pass is delivered with spf=pass in its
Authentication-Results.

knotd runs as the current user from a temporary directory, on a free loopback port, with
a configuration written here; it is stopped after the test.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmodule.dns import DNSError, Resolver
from tests.endpoint_kit import free_port
from tests.interop.conftest import require_peer
from tests.serve_kit import serving, write_config

ZONE = """$ORIGIN example.org.
$TTL 300
@       SOA  ns hostmaster 1 3600 600 86400 300
@       NS   ns
ns      A    127.0.0.1
@       TXT  "v=spf1 ip4:127.0.0.1 -all"
@       MX   10 mx
mx      A    127.0.0.1
forged  TXT  "v=spf1 ip4:192.0.2.0/24 -all"
forged  MX   10 mx
"""

KNOT_CONF = """server:
    rundir: "{dir}/run"
    listen: 127.0.0.1@{port}
database:
    storage: "{dir}/db"
control:
    listen: "{dir}/run/knot.sock"
log:
  - target: stderr
    any: warning
zone:
  - domain: example.org
    storage: "{dir}/zones"
    file: "example.org.zone"
"""

CONFIG = """
hostname = "mx.test"

[dns]
nameservers = ["127.0.0.1"]
port = {port}
timeout = "2s"

[modules.local]
module = "target.maildir"
root = "{root}"
autocreate = true

[modules.spf]
module = "check.spf"
fail_action = "reject"
enforce_early = true

[pipeline]
checks = ["&spf"]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
"""


async def _answers(port: int) -> bool:
    resolver = Resolver(nameservers=["127.0.0.1"], port=port, timeout=0.5, attempts=1)
    try:
        return bool((await resolver.txt("example.org")).records)
    except DNSError:
        return False


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[int]:
    knotd = require_peer("knotd")
    directory = tmp_path / "knot"
    for sub in ("run", "db", "zones"):
        (directory / sub).mkdir(parents=True)
    (directory / "zones" / "example.org.zone").write_text(ZONE)
    port = free_port(udp=True)
    conf = directory / "knot.conf"
    conf.write_text(KNOT_CONF.format(dir=directory, port=port))
    log = (directory / "knotd.log").open("w")
    with log, subprocess.Popen([knotd, "-c", str(conf)], stderr=log, stdout=log) as proc:
        try:
            deadline = time.monotonic() + 30
            while not asyncio.run(_answers(port)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"knotd did not serve: {(directory / 'knotd.log').read_text()}")
                time.sleep(0.1)
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


MESSAGE = "From: joe@{domain}\r\nTo: ann@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def test_knot_served_spf_rejects_a_fail_and_passes_a_pass(knot: int, tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, port=knot)
    with serving(config) as served:
        (port,) = served.ports()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail(
                    "joe@forged.example.org",
                    ["ann@example.org"],
                    MESSAGE.format(domain="forged.example.org"),
                )
            assert refused.value.smtp_code == 550
            assert b"5.7.23" in refused.value.smtp_error
            client.rset()
            client.sendmail(
                "joe@example.org", ["ann@example.org"], MESSAGE.format(domain="example.org")
            )
        assert served.stop() == 0
    (delivered,) = (tmp_path / "mail" / "ann" / "new").iterdir()
    message = email.message_from_bytes(delivered.read_bytes(), policy=email.policy.default)
    results = " ".join(str(message["Authentication-Results"]).split())
    assert results.startswith("mx.test; spf=pass")
    assert "smtp.mailfrom=joe@example.org" in results
