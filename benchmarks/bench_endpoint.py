"""Messages per second over loopback, 20 concurrent sessions of 2 KiB messages into a
Maildir (fsynced): `mailmodule serve` against a bare aiosmtpd handler writing the same
Maildir with the same target, each server in a process of its own and the clients in
another (benchmarks/_load.py), interleaved in one run.

(a) one connection per message; (b) one session per client, sending many messages.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from _load import CONFIG, PYTHON, count, empty, load, server
from aiosmtpd.smtp import SMTP as BareSMTP
from aiosmtpd.smtp import Envelope

from mailmodule import ConfigMap, MemoryBuffer, MsgMetadata
from mailmodule.header import read_header
from mailmodule.modules import MaildirTarget

CLIENTS = 20
SIZE = 2048
MESSAGES = 500  # per run
WARM_UP = 100
ROUNDS = 3
GOAL = 1.0


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


async def serve_bare(root: str) -> None:
    """The baseline server: aiosmtpd and BareHandler on a free port, until SIGTERM."""
    target = MaildirTarget("target.maildir", "local")
    target.init(ConfigMap({"root": root}))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BareSMTP(BareHandler(target), hostname="mx.bench"), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"bare listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def maildir(root: Path) -> Path:
    """The Maildir `user@example.org` is delivered to, made beforehand (whether or not the
    target creates mailboxes, both servers then find it)."""
    box = root / "user"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mailmodule-bench-") as tmp:
        base = Path(tmp)
        ours_root, bare_root = base / "ours", base / "bare"
        ours_box, bare_box = maildir(ours_root), maildir(bare_root)
        config = base / "mail.toml"
        config.write_text(CONFIG.format(root=ours_root))
        # Quiet: the baseline logs nothing per message either.
        ours_cmd = [PYTHON, "-m", "mailmodule", "-q", "serve", "-c", str(config)]
        bare_cmd = [PYTHON, __file__, "--bare-server", str(bare_root)]
        with (
            server(ours_cmd, log=base / "ours.log") as ours_port,
            server(bare_cmd, log=base / "bare.log") as bare_port,
        ):
            targets = {"ours": (ours_port, ours_box), "bare": (bare_port, bare_box)}
            for label, keep in (
                ("(a) one connection per message", False),
                ("(b) one session per client, many messages", True),
            ):
                rates: dict[str, list[float]] = {"ours": [], "bare": []}
                client = ""
                for i in range(ROUNDS + 1):  # the first round warms both up
                    for kind in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
                        port, box = targets[kind]
                        empty(box.parent)
                        n = MESSAGES if i else WARM_UP
                        elapsed, client = load(
                            port, messages=n, sessions=CLIENTS, size=SIZE, keep_sessions=keep
                        )
                        if count(box) != n:
                            raise RuntimeError(f"{kind}: {count(box)} of {n} stored")
                        if i:
                            rates[kind].append(n / elapsed)
                ours, bare = statistics.median(rates["ours"]), statistics.median(rates["bare"])
                ratio = math.floor(ours / bare * 100) / 100  # as printed: 0.999 is no 1.00
                verdict = "MET" if ratio >= GOAL else "NOT MET"
                print(
                    f"endpoint {label}, {CLIENTS} sessions x {SIZE // 1024} KiB to maildir "
                    f"(fsync), load from {client}: {ratio:.2f}x the throughput of a bare "
                    f"aiosmtpd handler ({ours:.0f} vs {bare:.0f} msg/s; goal: >= {GOAL}x) "
                    f"{verdict}",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bare-server", metavar="ROOT")
    args = parser.parse_args()
    if args.bare_server:
        asyncio.run(serve_bare(args.bare_server))
        sys.exit(0)
    main()
