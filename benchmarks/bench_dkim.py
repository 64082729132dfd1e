"""check.dkim on a 50 KiB message signed with RSA-2048, its key cached by our resolver from
the loopback DNS server, against dkimpy's dkim.verify called with the key at hand.

Goal (issue 17): at most 1.2x dkimpy's time, a speed-up of at least 0.83.
"""

from __future__ import annotations

import asyncio

import dkim
from _bench import compare
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailmodule.buffer import MemoryBuffer
from mailmodule.config import ConfigMap
from mailmodule.dns import Resolver
from mailmodule.header import read_header
from mailmodule.metadata import MsgMetadata
from mailmodule.modules.dkim import DKIMCheck
from mailmodule.modules.dkim.keys import dns_record
from mailmodule.testing.dnsserver import DNSServer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
RECORD = dns_record(KEY)
LINE = b"The quick brown fox jumps over the lazy dog,  again and again.\t \r\n"
BODY = LINE * (50 * 1024 // len(LINE))
MESSAGE = (
    b"From: Joe <joe@example.org>\r\nTo: suzie@example.net\r\nSubject: Report\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n" + BODY
)
SIGNED = (
    dkim.sign(
        MESSAGE,
        b"sel",
        b"example.org",
        PEM,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    + MESSAGE
)


def main() -> None:
    with DNSServer() as server:
        parts = " ".join(f'"{RECORD[i : i + 255]}"' for i in range(0, len(RECORD), 255))
        server.add_zone(f"sel._domainkey TXT {parts}\n", origin="example.org")
        check = DKIMCheck()
        check.resolver = Resolver(nameservers=["127.0.0.1"], port=server.port)
        check.init(ConfigMap({}, module="check.dkim"))
        header, offset = read_header(SIGNED)
        body = MemoryBuffer(SIGNED[offset:])
        loop = asyncio.new_event_loop()

        async def verify() -> None:
            state = await check.check_state_for_msg(MsgMetadata(id="bench"))
            result = await state.check_body(header, body)
            assert result.auth_result[0].result == "pass", result
            state.close()

        record = RECORD.encode()

        def baseline() -> None:
            assert dkim.verify(SIGNED, dnsfunc=lambda name, timeout=5: record)

        try:
            compare(
                f"check.dkim, {len(SIGNED) // 1024} KiB, RSA-2048",
                lambda: loop.run_until_complete(verify()),
                baseline,
                baseline_name="dkimpy dkim.verify",
                number=20,
                goal="at most 1.2x dkimpy's time",
                target=1 / 1.2,
            )
        finally:
            loop.close()


if __name__ == "__main__":
    main()
