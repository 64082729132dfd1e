"""target.remote delivering 2 KiB messages to one MX, its session kept idle between
messages (the default), against target.remote opening a new session for each message
(`max_idle_connections = 0`, as before sessions were pooled per MX). The MX is an
aiosmtpd sink in a process of its own, found through our loopback DNS server; both
targets run in this process's main thread, interleaved."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from _bench import compare

from mailmodule import Header, MemoryBuffer, MsgMetadata
from mailmodule.dns import Resolver
from mailmodule.modules import RemoteTarget
from mailmodule.registry import Registry
from mailmodule.testing.dnsserver import DNSServer

BODY = (b"x" * 70 + b"\r\n") * (2048 // 72)
HEADER = Header([("From", "a@sender.example"), ("Subject", "bench")])


async def sink() -> None:
    """The MX: accepts every message, prints its port, runs until stdin closes."""
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(), hostname="sink"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def remote(dns: DNSServer, port: int, name: str, max_idle: int) -> RemoteTarget:
    registry = Registry()
    resolver = {"nameservers": ["127.0.0.1"], "port": dns.port}
    registry.register_instance(Resolver(nameservers=["127.0.0.1"], port=dns.port), resolver)
    registry.register_instance(
        RemoteTarget("target.remote", name),
        {"hostname": "out.sender.example", "smtp_port": port, "max_idle_connections": max_idle},
    )
    target = registry.get_instance(name)
    assert isinstance(target, RemoteTarget)
    return target


def main() -> None:
    mx = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert mx.stdout is not None
    port = int(mx.stdout.readline())
    dns = DNSServer({"example.net": "@ MX 10 mx\nmx A 127.0.0.1"})
    dns.start()
    loop = asyncio.new_event_loop()
    pooled, fresh = remote(dns, port, "pooled", 4), remote(dns, port, "fresh", 0)

    async def deliver(target: RemoteTarget) -> None:
        delivery = await target.start(MsgMetadata(id="b"), "a@sender.example")
        await delivery.add_rcpt("b@example.net")
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()

    try:
        compare(
            "target.remote, 2 KiB messages to one MX",
            lambda: loop.run_until_complete(deliver(pooled)),
            lambda: loop.run_until_complete(deliver(fresh)),
            baseline_name="a new session per message",
            number=50,
            rounds=7,
            goal=">= 1.5x",
            target=1.5,
        )
    finally:
        loop.run_until_complete(pooled.aclose())
        loop.run_until_complete(fresh.aclose())
        loop.close()
        dns.stop()
        mx.communicate(b"")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        asyncio.run(sink())
    else:
        main()
