"""target.smtp relaying 2 KiB messages over one kept loopback session, against smtplib
sending the same messages over one kept session, to the same upstream (an aiosmtpd sink
in a thread of its own). Ours sends an RSET before each reuse of its pooled session, which
smtplib does not: one round trip more per message."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading

from _bench import compare
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from mailmodule import ConfigMap, Header, MemoryBuffer, MsgMetadata
from mailmodule.modules import SMTPTarget

BODY = b"x" * 70 + b"\r\n"
BODY = BODY * (2048 // len(BODY))
HEADER = Header([("From", "a@example.net"), ("Subject", "bench")])
MESSAGE = HEADER.to_bytes() + BODY


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        return "250 OK"


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    upstream = Controller(Sink(), hostname="127.0.0.1", port=port)
    upstream.start()
    target = SMTPTarget("target.smtp", "bench")
    target.init(ConfigMap({"targets": [f"tcp://127.0.0.1:{port}"], "hostname": "relay.test"}))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def relay() -> None:
        delivery = await target.start(MsgMetadata(id="b"), "a@example.net")
        await delivery.add_rcpt("b@example.org")
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()

    def ours() -> None:
        asyncio.run_coroutine_threadsafe(relay(), loop).result()

    client = smtplib.SMTP("127.0.0.1", port, local_hostname="relay.test")

    def baseline() -> None:
        client.sendmail("a@example.net", ["b@example.org"], MESSAGE)

    try:
        compare(
            "target.smtp relay, 2 KiB messages over a kept session",
            ours,
            baseline,
            baseline_name="smtplib.SMTP.sendmail over a kept session",
            number=100,
            rounds=7,
            goal=">= 0.8x",
            target=0.8,
        )
    finally:
        client.quit()
        loop.call_soon_threadsafe(target.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        upstream.stop()


if __name__ == "__main__":
    main()
