"""A server's metrics in the Prometheus text format: sessions, messages, deliveries.

Every series lives in the `CollectorRegistry` of one `Metrics` (never the process-wide
default one), which the "openmetrics" endpoint serves over HTTP:

- `mailmodule_sessions_open{endpoint}`: SMTP and LMTP sessions open now.
- `mailmodule_messages_received_total{endpoint}`: messages accepted (a 250 after the body).
- `mailmodule_messages_quarantined_total{endpoint}`: of those, the ones quarantined.
- `mailmodule_messages_rejected_total{endpoint,stage,reason}`: refusals at `connect`,
  `mail`, `rcpt` or `data`, by reply.
- `mailmodule_auth_failures_total{endpoint}`: AUTH attempts with wrong credentials.
- `mailmodule_messages_delivered_total{target}`: messages a target committed.
- `mailmodule_delivery_failures_total{target,stage,reason}`: a target refusing at `start`,
  `rcpt`, `body` or `commit` (for a partial delivery, one per refused recipient).
- `mailmodule_delivery_duration_seconds{target}`: from a target's `start` to its `commit`.

`endpoint` is the endpoint type ("smtp", "submission", ...), `target` the target's instance
name, both fixed by the configuration.
A `reason` is an SMTP code and enhanced code ("550 5.7.1"), or "internal" for a target's
failure that is no SMTP error.
Only the first `MAX_REASONS` distinct reasons get series of their own, the rest count as
"other", so no client can grow the series without bound.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mailmodule.errors import SMTPError
from mailmodule.interfaces import Delivery, DeliveryTarget, PartialDelivery

if TYPE_CHECKING:
    from mailmodule.buffer import Buffer
    from mailmodule.header import Header
    from mailmodule.interfaces import StatusCollector
    from mailmodule.metadata import MsgMetadata

__all__ = ["MAX_REASONS", "MeteredTarget", "Metrics"]

#: Distinct `reason` label values kept per server; beyond, "other".
MAX_REASONS: Final = 64
_OTHER: Final = "other"
_INTERNAL: Final = "internal"
# From a local maildir write (milliseconds) to a remote SMTP delivery (seconds).
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@final
class _TargetCounts:
    """What one target delivered: messages, and their latencies by bucket (not cumulated)."""

    __slots__ = ("buckets", "delivered", "seconds")

    def __init__(self) -> None:
        self.delivered = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BUCKETS) + 1)  # the last one: +Inf

    def add(self, seconds: float) -> None:
        self.delivered += 1
        self.seconds += seconds
        self.buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1


@final
class _Deliveries(Collector):
    """The delivered counter and latency histogram of every target, from plain numbers
    that the event loop adds to: the per-message path takes no lock and looks up no
    labels (benchmarks/bench_metrics.py)."""

    def __init__(self) -> None:
        self.targets: dict[str, _TargetCounts] = {}

    def of(self, target: str) -> _TargetCounts:
        counts = self.targets.get(target)
        if counts is None:
            counts = self.targets[target] = _TargetCounts()
        return counts

    def collect(self) -> Iterator[Metric]:
        delivered = CounterMetricFamily(
            "mailmodule_messages_delivered",
            "Messages a delivery target committed.",
            labels=["target"],
        )
        latency = HistogramMetricFamily(
            "mailmodule_delivery_duration_seconds",
            "Seconds from a delivery target's start to its commit.",
            labels=["target"],
        )
        bounds = [repr(b) for b in _BUCKETS] + ["+Inf"]
        for target, counts in sorted(self.targets.items()):
            delivered.add_metric([target], counts.delivered)
            running = 0
            buckets = []
            for bound, n in zip(bounds, counts.buckets, strict=True):
                running += n
                buckets.append((bound, float(running)))
            latency.add_metric([target], buckets, counts.seconds)
        yield delivered
        yield latency


@final
class Metrics:
    """The metrics of one server, in a `CollectorRegistry` of its own (`registry`).

    Callers may assume: every method is cheap and never raises. Meant for one event loop:
    the deliveries are counted without a lock, and `render` reads them on the same loop.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self._sessions = Gauge(
            "mailmodule_sessions_open", "Open SMTP and LMTP sessions.", ["endpoint"], registry=reg
        )
        self._received = Counter(
            "mailmodule_messages_received", "Messages accepted.", ["endpoint"], registry=reg
        )
        self._quarantined = Counter(
            "mailmodule_messages_quarantined",
            "Messages accepted into quarantine.",
            ["endpoint"],
            registry=reg,
        )
        self._rejected = Counter(
            "mailmodule_messages_rejected",
            "Refusals, by stage (connect, mail, rcpt, data) and reply.",
            ["endpoint", "stage", "reason"],
            registry=reg,
        )
        self._auth_failures = Counter(
            "mailmodule_auth_failures", "Failed AUTH attempts.", ["endpoint"], registry=reg
        )
        self._failed = Counter(
            "mailmodule_delivery_failures",
            "Refusals by a delivery target, by stage (start, rcpt, body, commit) and reply.",
            ["target", "stage", "reason"],
            registry=reg,
        )
        self._deliveries = _Deliveries()
        reg.register(self._deliveries)
        self._reasons: set[str] = set()

    def render(self) -> bytes:
        """Every series in the Prometheus text format (`prometheus_client.CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)

    def reason(self, code: int, enhanced_code: tuple[int, int, int] | None) -> str:
        """The `reason` label of a reply: "550 5.7.1" ("550 5.0.0" without an enhanced
        code, or one not of the code's class), "other" past `MAX_REASONS` distinct ones."""
        klass = code // 100
        if enhanced_code is None or enhanced_code[0] != klass:
            enhanced_code = (klass, 0, 0)  # also the "none" and "not set" markers of SMTPError
        a, b, c = enhanced_code
        text = f"{code} {a}.{b}.{c}"
        if text in self._reasons:
            return text
        if len(self._reasons) >= MAX_REASONS:
            return _OTHER
        self._reasons.add(text)
        return text

    def _reason_of(self, err: BaseException) -> str:
        if isinstance(err, SMTPError):
            return self.reason(err.code, err.enhanced_code)
        return _INTERNAL

    # The endpoints'

    def session_opened(self, endpoint: str) -> None:
        self._sessions.labels(endpoint).inc()

    def session_closed(self, endpoint: str) -> None:
        self._sessions.labels(endpoint).dec()

    def received(self, endpoint: str, *, quarantined: bool) -> None:
        self._received.labels(endpoint).inc()
        if quarantined:
            self._quarantined.labels(endpoint).inc()

    def rejected(
        self, endpoint: str, stage: str, code: int, enhanced_code: tuple[int, int, int] | None
    ) -> None:
        self._rejected.labels(endpoint, stage, self.reason(code, enhanced_code)).inc()

    def auth_failed(self, endpoint: str) -> None:
        self._auth_failures.labels(endpoint).inc()

    # The targets'

    def delivered(self, target: str, seconds: float) -> None:
        self._deliveries.of(target).add(seconds)

    def deliveries_of(self, target: str) -> _TargetCounts:
        """Where `delivered` counts for `target`, looked up once, for the hot path."""
        return self._deliveries.of(target)

    def failed(self, target: str, stage: str, err: BaseException) -> None:
        self._failed.labels(target, stage, self._reason_of(err)).inc()


def _name_of(module: object, *attrs: str) -> str:
    """What the first of `attrs` that `module` has says (its instance name, its name),
    else its type's name."""
    for attr in attrs:
        get = getattr(module, attr, None)
        if callable(get):
            value = get()
            if isinstance(value, str) and value:
                return value
    return type(module).__name__


@final
class MeteredTarget:
    """A DeliveryTarget that counts what `target` delivers and refuses into `metrics`.

    Callers may assume: it behaves as `target` does (same names, same deliveries, same
    errors); its deliveries are PartialDelivery exactly when `target`'s are.
    """

    def __init__(self, target: DeliveryTarget, metrics: Metrics) -> None:
        self.target = target
        self._metrics = metrics
        self._label = _name_of(target, "instance_name", "name")
        self._counts = metrics.deliveries_of(self._label)

    def name(self) -> str:
        return _name_of(self.target, "name")

    def instance_name(self) -> str:
        return self._label

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        began = time.perf_counter()
        try:
            delivery = await self.target.start(msg_meta, mail_from)
        except Exception as exc:
            self._failed("start", exc)
            raise
        # What isinstance(delivery, PartialDelivery) checks, at a tenth of its cost.
        if callable(getattr(delivery, "body_non_atomic", None)):
            return _MeteredPartialDelivery(delivery, self, began)
        return _MeteredDelivery(delivery, self, began)

    def _failed(self, stage: str, exc: BaseException) -> None:
        self._metrics.failed(self._label, stage, exc)

    def _committed(self, began: float) -> None:
        self._counts.add(time.perf_counter() - began)


class _MeteredDelivery:
    """One delivery of a MeteredTarget."""

    __slots__ = ("_began", "_delivery", "_target")

    def __init__(self, delivery: Delivery, target: MeteredTarget, began: float) -> None:
        self._delivery = delivery
        self._target = target
        self._began = began

    async def add_rcpt(self, rcpt_to: str) -> None:
        try:
            await self._delivery.add_rcpt(rcpt_to)
        except Exception as exc:
            self._target._failed("rcpt", exc)
            raise

    async def body(self, header: Header, body: Buffer) -> None:
        try:
            await self._delivery.body(header, body)
        except Exception as exc:
            self._target._failed("body", exc)
            raise

    async def abort(self) -> None:
        await self._delivery.abort()

    async def commit(self) -> None:
        try:
            await self._delivery.commit()
        except Exception as exc:
            self._target._failed("commit", exc)
            raise
        self._target._committed(self._began)


@final
class _Statuses:
    """Passes a partial delivery's outcomes on, counting the failures."""

    __slots__ = ("_collector", "_target")

    def __init__(self, collector: StatusCollector, target: MeteredTarget) -> None:
        self._collector = collector
        self._target = target

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        if err is not None:
            self._target._failed("body", err)
        self._collector.set_status(rcpt_to, err)


@final
class _MeteredPartialDelivery(_MeteredDelivery):
    """One delivery of a MeteredTarget whose target reports outcomes per recipient."""

    __slots__ = ()

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        delivery = self._delivery
        assert isinstance(delivery, PartialDelivery)
        await delivery.body_non_atomic(_Statuses(c, self._target), header, body)
