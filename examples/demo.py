"""The main job until the SMTP endpoint exists: show what mailmodule does today."""

from __future__ import annotations

import asyncio
import pickle

from mailmodule import (
    DeliveryTarget,
    Dummy,
    MsgMetadata,
    QueueMetadata,
    Registry,
    SMTPError,
    Timestamp,
    address,
    buffer_body,
    generate_msg_id,
    read_header,
)
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

    meta = MsgMetadata(id=generate_msg_id(), original_from="jorg@bücher.example")
    copy = meta.deep_copy()
    copy.original_rcpts = {"joe@example.org": "Joe@Example.ORG"}
    print(f"message {meta.id}: a deep copy changes alone: {meta.original_rcpts is None}")
    queue = QueueMetadata(
        msg_meta=meta,
        from_=meta.original_from,
        to=["joe@example.org"],
        rcpt_errs={"joe@example.org": SMTPError(451, (4, 4, 2), "Try later")},
        first_attempt=Timestamp.parse("2026-11-24T10:00:00.123456789+03:00"),
    )
    doc = queue.to_json()
    print(f"maddy's queue file, as Go writes it: {doc[:60]!r}...")
    print(f"read back equal: {QueueMetadata.from_json(doc) == queue}")

    registry = Registry()
    registry.register_instance(Dummy("dummy", "local_mailboxes"), {})
    registry.register_alias("local", "local_mailboxes")
    target = registry.get_instance("local")
    assert isinstance(target, DeliveryTarget)
    delivery = await target.start(meta, meta.original_from)
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(header, await buffer_body(MESSAGE[offset:]))
    await delivery.commit()
    print(f"delivered through the registry's {target!r}: {dict(registry.initialized())}")


if __name__ == "__main__":
    asyncio.run(main())
