"""Metrics: scraped over HTTP from a real `mailmodule serve` while mail flows."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mailmodule import ConfigError, Header, SMTPError
from mailmodule.buffer import Buffer, MemoryBuffer
from mailmodule.endpoint import OpenMetricsEndpoint
from mailmodule.interfaces import Delivery, PartialDelivery, StatusCollector
from mailmodule.metadata import MsgMetadata
from mailmodule.metrics import MAX_REASONS, MeteredTarget, Metrics
from mailmodule.modules.pass_table import hash_password
from mailmodule.server import Server
from tests.serve_kit import MAILDIR_CONFIG, Served, serving, write_config

CONFIG = """
hostname = "mx.test"

[modules.users]
module = "table.static"
entries = {{ "joe@example.org" = "{hash}" }}

[modules.authdb]
module = "auth.pass_table"
table = "&users"

[modules.junk]                 # exit 2 quarantines: mail to junk@ is junk
module = "check.command"
command = ["sh", "-c", 'case "$1" in junk@*) exit 2;; esac', "sh", "{{rcpts}}"]

[modules.local]
module = "target.maildir"
root = "{root}"
autocreate = true

[pipeline]
checks = ["&junk"]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false
auth = "&authdb"
auth_require_tls = false
auth_failure_delay = "1ms"

[[endpoints]]
type = "openmetrics"
listen = ["127.0.0.1:0"]
"""


MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text: str = answer.read().decode()
        return text


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def metrics_port(served: Served) -> int:
    (port,) = served.ports("openmetrics")
    return port


def test_the_counters_follow_the_mail_through_a_real_server(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, hash=hash_password("s3cret"))
    with serving(config) as served:
        (smtp,) = served.ports()
        port = metrics_port(served)
        assert value(scrape(port), "mailmodule_messages_received_total") == 0
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            assert value(scrape(port), "mailmodule_sessions_open", endpoint="smtp") == 1
            s.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.auth("PLAIN", lambda challenge=None: "\0joe@example.org\0wrong")
            refused = s.sendmail("a@example.net", ["joe@example.org", "x@far.example"], MESSAGE)
            assert refused == {"x@far.example": (550, b"5.1.2 No relaying")}
            s.sendmail("a@example.net", ["junk@example.org"], "Subject: junk\r\n\r\nx\r\n")
            text = scrape(port)
        assert value(text, "mailmodule_auth_failures_total", endpoint="smtp") == 1
        assert value(text, "mailmodule_messages_received_total", endpoint="smtp") == 2
        assert value(text, "mailmodule_messages_quarantined_total", endpoint="smtp") == 1
        rejected = "mailmodule_messages_rejected_total"
        assert value(text, rejected, endpoint="smtp", stage="rcpt", reason="550 5.1.2") == 1
        assert value(text, rejected) == 1
        assert value(text, "mailmodule_messages_delivered_total", target="local") == 2
        assert value(text, "mailmodule_delivery_duration_seconds_count", target="local") == 2
        assert value(text, "mailmodule_delivery_failures_total") == 0
        served.proc.send_signal(signal.SIGHUP)
        served.wait_for(lambda lines: any(line.startswith("reloaded ") for line in lines))
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.sendmail("a@example.net", ["ann@example.org"], "Subject: after\r\n\r\nx\r\n")
        text = scrape(port)
        # The counters go on across the reload, and the new pipeline's target counts too.
        assert value(text, "mailmodule_messages_received_total", endpoint="smtp") == 3
        assert value(text, "mailmodule_messages_delivered_total", target="local") == 3
        assert served.stop() == 0


def test_a_closed_session_is_no_longer_counted_open(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, hash=hash_password("s3cret"))
    with serving(config) as served:
        (smtp,) = served.ports()
        port = metrics_port(served)
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.noop()
        # QUIT is answered before the server has closed its side: wait for it to.
        for _ in range(1000):
            if value(scrape(port), "mailmodule_sessions_open", endpoint="smtp") == 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the session is still counted open")
        assert served.stop() == 0


def test_a_server_without_an_openmetrics_endpoint_counts_nothing(tmp_path: Path) -> None:
    server = Server.from_file(str(write_config(tmp_path, MAILDIR_CONFIG)))
    server.initialize()
    assert server.metrics is None
    assert server.openmetrics is None
    server.registry.close_all()


@pytest.mark.parametrize(
    ("endpoint", "key"),
    [
        ({"type": "openmetrics", "listen": ["tls://127.0.0.1:0"]}, "listen"),
        ({"type": "openmetrics", "listen": ["127.0.0.1:0"], "hostname": "x"}, "hostname"),
        ({"type": "openmetrics", "listen": ["127.0.0.1:0"], "pipeline": {}}, "pipeline"),
    ],
)
def test_a_bad_openmetrics_endpoint_is_refused_naming_its_key(
    endpoint: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Server({"endpoints": [endpoint]}).initialize()
    assert caught.value.section == "endpoints[0]"
    assert caught.value.key == key


def test_a_second_openmetrics_endpoint_is_refused() -> None:
    one = {"type": "openmetrics", "listen": ["127.0.0.1:0"]}
    with pytest.raises(ConfigError) as caught:
        Server({"endpoints": [one, one]}).initialize()
    assert caught.value.section == "endpoints[1]"


# The HTTP endpoint, in this process.


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"GET /metrics?name=x HTTP/1.0\r\n\r\n", b"200"),
        (b"GET /other HTTP/1.1\r\n\r\n", b"404"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
        (b"hello\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", b"431"),
    ],
)
async def test_the_metrics_endpoint_answers_only_get_of_its_path(
    request_bytes: bytes, status: bytes
) -> None:
    endpoint = OpenMetricsEndpoint("openmetrics", ["127.0.0.1:0"])
    ((_, port),) = await endpoint.start()
    try:
        answer = await raw_request(port, request_bytes)
    finally:
        await endpoint.stop()
    assert answer.startswith(b"HTTP/1.1 " + status)


async def test_head_gives_the_header_without_the_metrics() -> None:
    endpoint = OpenMetricsEndpoint("openmetrics", ["127.0.0.1:0"])
    endpoint.metrics.received("smtp", quarantined=False)
    ((_, port),) = await endpoint.start()
    try:
        got = await raw_request(port, b"GET / HTTP/1.1\r\n\r\n")
        head = await raw_request(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    finally:
        await endpoint.stop()
    assert b"mailmodule_messages_received_total" in got
    assert head == got.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


@given(st.lists(st.tuples(st.integers(400, 599), st.integers(0, 999), st.integers(0, 999))))
def test_the_reasons_stay_few_whatever_the_replies(codes: list[tuple[int, int, int]]) -> None:
    metrics = Metrics()
    reasons = {metrics.reason(code, (code // 100, b, c)) for code, b, c in codes}
    assert len(reasons) <= MAX_REASONS + 1
    assert len(reasons) <= len(codes)
    for code, b, c in codes[:MAX_REASONS]:
        assert metrics.reason(code, (code // 100, b, c)) == f"{code} {code // 100}.{b}.{c}"


@given(st.lists(st.floats(0, 100, allow_nan=False)))
def test_the_latency_histogram_counts_each_delivery_under_every_bound_it_fits(
    seconds: list[float],
) -> None:
    metrics = Metrics()
    for value_ in seconds:
        metrics.delivered("local", value_)
    (family,) = [
        f
        for f in text_string_to_metric_families(metrics.render().decode())
        if f.name == "mailmodule_delivery_duration_seconds"
    ]
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            assert sample.value == sum(1 for v in seconds if v <= bound), sample
        elif sample.name.endswith("_count"):
            assert sample.value == len(seconds)
        elif sample.name.endswith("_sum"):
            assert sample.value == pytest.approx(sum(seconds))
    delivered = value(metrics.render().decode(), "mailmodule_messages_delivered_total")
    assert delivered == len(seconds)


@pytest.mark.parametrize(
    ("enhanced", "reason"),
    [
        (None, "451 4.0.0"),
        ((-1, -1, -1), "451 4.0.0"),
        ((0, 0, 0), "451 4.0.0"),
        ((5, 1, 1), "451 4.0.0"),
        ((4, 7, 1), "451 4.7.1"),
    ],
)
def test_a_reason_without_a_fitting_enhanced_code_gets_the_class_default(
    enhanced: tuple[int, int, int] | None, reason: str
) -> None:
    assert Metrics().reason(451, enhanced) == reason


# A target's refusals: injected faults.


class Refusing:
    """A target whose deliveries refuse `bad@` at the body, one recipient at a time when
    `partial`, else the whole body."""

    def __init__(self, *, partial: bool) -> None:
        self.partial = partial

    def instance_name(self) -> str:
        return "refusing"

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _PartlyRefused() if self.partial else _Refused()


class _Refused:
    def __init__(self) -> None:
        self.rcpts: list[str] = []

    async def add_rcpt(self, rcpt_to: str) -> None:
        self.rcpts.append(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        raise SMTPError(552, (5, 3, 4), "too big")

    async def abort(self) -> None:
        pass

    async def commit(self) -> None:
        pass


class _PartlyRefused(_Refused):
    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        for rcpt in self.rcpts:
            err = SMTPError(550, (5, 1, 1), "no such user") if rcpt.startswith("bad@") else None
            c.set_status(rcpt, err)


class Collected:
    def __init__(self) -> None:
        self.statuses: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses[rcpt_to] = err


BODY = MemoryBuffer(b"hello\r\n")


async def test_a_metered_target_counts_a_refused_body_by_its_reply() -> None:
    metrics = Metrics()
    target = MeteredTarget(Refusing(partial=False), metrics)
    delivery = await target.start(MsgMetadata(id="1"), "a@example.net")
    assert not isinstance(delivery, PartialDelivery)
    await delivery.add_rcpt("joe@example.org")
    with pytest.raises(SMTPError):
        await delivery.body(Header(), BODY)
    text = metrics.render().decode()
    failures = "mailmodule_delivery_failures_total"
    assert value(text, failures, target="refusing", stage="body", reason="552 5.3.4") == 1
    assert value(text, "mailmodule_messages_delivered_total") == 0


async def test_a_metered_partial_delivery_counts_each_refused_recipient() -> None:
    metrics = Metrics()
    target = MeteredTarget(Refusing(partial=True), metrics)
    delivery = await target.start(MsgMetadata(id="1"), "a@example.net")
    assert isinstance(delivery, PartialDelivery)
    assert isinstance(delivery, Delivery)
    for rcpt in ("bad@example.org", "joe@example.org"):
        await delivery.add_rcpt(rcpt)
    collected = Collected()
    await delivery.body_non_atomic(collected, Header(), BODY)
    await delivery.commit()
    assert collected.statuses["joe@example.org"] is None
    assert isinstance(collected.statuses["bad@example.org"], SMTPError)
    text = metrics.render().decode()
    failures = "mailmodule_delivery_failures_total"
    assert value(text, failures, target="refusing", stage="body", reason="550 5.1.1") == 1
    assert value(text, "mailmodule_messages_delivered_total", target="refusing") == 1
    assert target.instance_name() == "refusing"
