"""The main job until the SMTP endpoint exists: show what mailmodule does today."""

from __future__ import annotations

import asyncio
import pickle

from mailmodule import SMTPError, address, buffer_body, read_header
from mailmodule.buffer import read_all

MESSAGE = (
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@XN--BCHER-KVA.example>\r\n"
    b"To: Joe <Joe@Example.ORG>\r\n"
    b"Subject: Hello\r\n"
    b"DKIM-Signature: v=1; d=xn--bcher-kva.example;\r\n  b=kept byte for byte\r\n"
    b"\r\n"
    b"Hi Joe!\r\n"
)


async def main() -> None:
    header, offset = read_header(MESSAGE)
    print(f"parsed {len(header)} header fields; the body starts at byte {offset}")
    header.add("Received", "from localhost by demo")
    print(f"a Received field goes on top: {[f.name for f in header]}")
    exact = header.fields()[1:] == read_header(MESSAGE)[0].fields()
    print(f"the other fields are kept byte for byte: {exact}")

    for addr in ("jorg@XN--BCHER-KVA.example", "Joe@Example.ORG."):
        print(
            f"{addr!r}: clean {address.clean_domain(addr)!r}, "
            f"lookup key {address.for_lookup(addr)!r}, ascii {address.to_ascii(addr)!r}"
        )

    body = await buffer_body(MESSAGE[offset:])
    print(f"buffered the body ({len(body)} bytes) as {type(body).__name__}: {read_all(body)!r}")
    body.remove()

    err = SMTPError(550, (5, 1, 1), "No such user here", target_name="target.maildir")
    print(f"an SMTP error reads like its reply: {err}")
    print(f"it crosses process boundaries intact: {pickle.loads(pickle.dumps(err)) == err}")


if __name__ == "__main__":
    asyncio.run(main())
