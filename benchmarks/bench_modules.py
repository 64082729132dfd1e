"""table.file lookup against a dict; maildir delivery against mailbox.Maildir.add."""

from __future__ import annotations

import asyncio
import mailbox
import os
import shutil
import tempfile

from _bench import compare

from mailmodule import ConfigMap, Header, MemoryBuffer, MsgMetadata
from mailmodule.modules import FileTable, MaildirTarget

WORK = tempfile.mkdtemp(prefix="mailmodule-bench-")
loop = asyncio.new_event_loop()

# table.file
TABLE_PATH = os.path.join(WORK, "aliases")
with open(TABLE_PATH, "w") as f:
    f.writelines(f"user{i}@example.org: mailbox{i}\n" for i in range(1000))
table = FileTable("table.file", "aliases")
table.init(ConfigMap({"file": TABLE_PATH}))
plain = {f"user{i}@example.org": f"mailbox{i}" for i in range(1000)}
KEY = "user500@example.org"


def table_lookups() -> None:
    async def run() -> None:
        for _ in range(1000):
            await table.lookup(KEY)

    loop.run_until_complete(run())


def dict_lookups() -> None:
    async def run() -> None:
        for _ in range(1000):
            plain.get(KEY)

    loop.run_until_complete(run())


# target.maildir
HEADER = Header([("Subject", "Report"), ("From", "a@example.org"), ("To", "b@example.org")])
BODY = (b"x" * 76 + b"\r\n") * (50 * 1024 // 78)
MESSAGE = HEADER.to_bytes() + BODY
maildir = MaildirTarget("target.maildir", "local")
maildir.init(ConfigMap({"root": os.path.join(WORK, "ours"), "autocreate": True}))
os.makedirs(os.path.join(WORK, "stdlib"))
stdlib_boxes = [mailbox.Maildir(os.path.join(WORK, "stdlib", name)) for name in ("joe", "ann")]


def ours_deliver() -> None:
    async def run() -> None:
        delivery = await maildir.start(MsgMetadata(id="m"), "a@example.org")
        await delivery.add_rcpt("joe@example.org")
        await delivery.add_rcpt("ann@example.org")
        await delivery.body(HEADER, MemoryBuffer(BODY))
        await delivery.commit()

    loop.run_until_complete(run())


def stdlib_deliver() -> None:
    for box in stdlib_boxes:
        box.add(MESSAGE)


def stdlib_deliver_durably() -> None:
    """Maildir.add, then the fsyncs that make it survive a crash, as ours does."""
    for box in stdlib_boxes:
        key = box.add(MESSAGE)
        fd = os.open(os.path.join(box._path, box._lookup(key)), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fd = os.open(os.path.join(box._path, "new"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


if __name__ == "__main__":
    try:
        compare(
            "table.file lookup (x1000)",
            table_lookups,
            dict_lookups,
            baseline_name="dict.get",
            number=20,
            goal="report only",
        )
        compare(
            "target.maildir, 50 KiB to 2 recipients",
            ours_deliver,
            stdlib_deliver,
            baseline_name="mailbox.Maildir.add twice",
            number=20,
            goal=">= 1x",
            target=1.0,
        )
        print("  ours fsyncs the file once and each new/; mailbox.Maildir.add fsyncs nothing")
        compare(
            "target.maildir, 50 KiB to 2 recipients",
            ours_deliver,
            stdlib_deliver_durably,
            baseline_name="mailbox.Maildir.add twice with the same fsyncs",
            number=20,
            goal=">= 1x",
            target=1.0,
        )
    finally:
        loop.close()
        shutil.rmtree(WORK)
