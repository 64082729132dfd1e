"""target.smtp relaying 2 KiB messages over one kept loopback session, against smtplib
sending the same messages over one kept session, to the same upstream: an aiosmtpd sink
in a process of its own. Both clients run in this process's main thread, interleaved.
Ours sends an RSET before each reuse of its pooled session (pipelined with MAIL where the
upstream offers PIPELINING, which aiosmtpd does not), which smtplib does not."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys

from _bench import compare

from mailmodule import ConfigMap, Header, MemoryBuffer, MsgMetadata
from mailmodule.modules import SMTPTarget

BODY = (b"x" * 70 + b"\r\n") * (2048 // 72)
HEADER = Header([("From", "a@example.net"), ("Subject", "bench")])
MESSAGE = HEADER.to_bytes() + BODY


async def sink() -> None:
    """The upstream: accepts every message, prints its port, runs until stdin closes."""
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(), hostname="sink"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert upstream.stdout is not None
    port = int(upstream.stdout.readline())
    loop = asyncio.new_event_loop()
    target = SMTPTarget("target.smtp", "bench")
    target.init(ConfigMap({"targets": [f"tcp://127.0.0.1:{port}"], "hostname": "relay.test"}))

    async def relay() -> None:
        delivery = await target.start(MsgMetadata(id="b"), "a@example.net")
        await delivery.add_rcpt("b@example.org")
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()

    client = smtplib.SMTP("127.0.0.1", port, local_hostname="relay.test")
    try:
        compare(
            "target.smtp relay, 2 KiB messages over a kept session",
            lambda: loop.run_until_complete(relay()),
            lambda: client.sendmail("a@example.net", ["b@example.org"], MESSAGE),
            baseline_name="smtplib.SMTP.sendmail over a kept session",
            number=100,
            rounds=7,
            goal=">= 0.8x",
            target=0.8,
        )
    finally:
        client.quit()
        target.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        upstream.communicate(b"")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        asyncio.run(sink())
    else:
        main()
