"""What metrics cost a message: the pipeline with its target metered against the same
pipeline without, interleaved in one run (one message: MAIL, one RCPT, body, commit, into
a no-op target, so the figure is the wrapper's cost at its most visible); and a scrape.
"""

from __future__ import annotations

import asyncio

from _bench import compare

from mailmodule import Header, MemoryBuffer, MsgMetadata
from mailmodule.metrics import MeteredTarget, Metrics
from mailmodule.pipeline import Destination, Pipeline

BODY = MemoryBuffer(b"Hello\r\n")
BATCH = 200
loop = asyncio.new_event_loop()


class NoopDelivery:
    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: object) -> None:
        pass

    async def commit(self) -> None:
        pass

    async def abort(self) -> None:
        pass


class NoopTarget:
    def name(self) -> str:
        return "target.noop"

    def instance_name(self) -> str:
        return "noop"

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> NoopDelivery:
        return NoopDelivery()


def batch(pipeline: Pipeline) -> object:
    async def messages() -> None:
        for _ in range(BATCH):
            delivery = await pipeline.start(MsgMetadata(id="m"), "s@example.org")
            await delivery.add_rcpt("rcpt@example.org")
            await delivery.body(Header([("Subject", "x")]), BODY)
            await delivery.commit()

    return lambda: loop.run_until_complete(messages())


def main() -> None:
    metrics = Metrics()
    target = NoopTarget()
    plain = Pipeline(default=Destination(targets=[target]))
    metered = Pipeline(default=Destination(targets=[MeteredTarget(target, metrics)]))
    compare(
        f"a message into a metered no-op target ({BATCH} per sample)",
        batch(metered),
        batch(plain),
        baseline_name="the same pipeline without metrics",
        number=3,
        goal="metrics cost at most 10% of the pipeline's time: at least 0.90x",
        target=0.90,
    )
    for i in range(50):  # a scrape of a realistic server: a few targets and reasons
        metrics.delivered(f"target{i % 5}", 0.01)
        metrics.rejected("smtp", "rcpt", 550, (5, 1, i % 10))
    compare(
        "a scrape (render)",
        metrics.render,
        lambda: b"",
        baseline_name="nothing",
        number=50,
        goal="informational: what one scrape costs the event loop",
    )


if __name__ == "__main__":
    main()
