"""Messages per second over loopback, 20 concurrent clients: our endpoint (empty check list,
maildir delivery) against a bare aiosmtpd handler writing the same maildir."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import smtplib
import tempfile
import time

from aiosmtpd.smtp import SMTP as BareSMTP
from aiosmtpd.smtp import Envelope

from mailmodule import ConfigMap, MemoryBuffer, MsgMetadata
from mailmodule.endpoint import SMTPEndpoint
from mailmodule.header import read_header
from mailmodule.modules import MaildirTarget
from mailmodule.pipeline import Destination, Pipeline

CLIENTS = 20
PER_CLIENT = 25
MESSAGE = b"From: a@example.net\r\nSubject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26


def run_clients(port: int) -> None:
    def client(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            for _ in range(PER_CLIENT):
                s.sendmail("a@example.net", [f"user{n % 5}@example.org"], MESSAGE)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


class BareHandler:
    """What a hand-written aiosmtpd server does: parse the header, deliver to the maildir."""

    def __init__(self, target: MaildirTarget) -> None:
        self.target = target

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        header, offset = read_header(content)
        delivery = await self.target.start(MsgMetadata(id="bare"), envelope.mail_from or "")
        for rcpt in envelope.rcpt_tos:
            await delivery.add_rcpt(rcpt)
        await delivery.body(header, MemoryBuffer(content[offset:]))
        await delivery.commit()
        return "250 OK"


async def measure(kind: str) -> float:
    root = tempfile.mkdtemp(prefix="mailmodule-bench-")
    target = MaildirTarget("target.maildir", "local")
    target.init(ConfigMap({"root": root}))
    loop = asyncio.get_running_loop()
    if kind == "ours":
        ep = SMTPEndpoint("smtp", ["127.0.0.1:0"])
        ep.init(ConfigMap({"hostname": "mx.bench", "rdns": False}))
        ep.pipeline = Pipeline(default=Destination(targets=[target]))
        ((_, port),) = await ep.start()
    else:
        server = await loop.create_server(
            lambda: BareSMTP(BareHandler(target), hostname="mx.bench"), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, run_clients, port)
    elapsed = time.perf_counter() - start
    if kind == "ours":
        await ep.stop()
    else:
        server.close()
        await server.wait_closed()
    shutil.rmtree(root)
    return CLIENTS * PER_CLIENT / elapsed


async def main() -> None:
    ours: list[float] = []
    bare: list[float] = []
    for i in range(6):  # interleaved, alternating who goes first
        for kind in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
            (ours if kind == "ours" else bare).append(await measure(kind))
    o, b = sorted(ours)[len(ours) // 2], sorted(bare)[len(bare) // 2]
    print(
        f"endpoint, {CLIENTS} clients x {PER_CLIENT} messages to maildir: {o / b:.2f}x the "
        f"throughput of a bare aiosmtpd handler ({o:.0f} vs {b:.0f} msg/s; goal: >= 0.9x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
