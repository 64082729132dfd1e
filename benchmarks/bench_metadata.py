"""MsgMetadata.deep_copy against copy.deepcopy; QueueMetadata JSON against plain json."""

from __future__ import annotations

import copy
import json

from _bench import compare

from mailmodule import SMTPError
from mailmodule.metadata import (
    ConnState,
    MailOptions,
    MsgMetadata,
    QueueMetadata,
    RcptOptions,
    Timestamp,
)

META = MsgMetadata(
    id="a7f3c2d1",
    original_from="sender@example.org",
    original_rcpts={f"rcpt{i}@example.com": f"Rcpt{i}@example.com" for i in range(3)},
    smtp_opts=MailOptions(body="8BITMIME", size=51234, utf8=True),
    conn=ConnState(proto="ESMTPS", hostname="mx.example.org", remote_addr="192.0.2.1:4567"),
    rcpt_opts={"rcpt0@example.com": RcptOptions(notify=("FAILURE",))},
)
QUEUED_META = META.deep_copy()
QUEUED_META.conn = None  # maddy's queue does not keep it
QUEUE = QueueMetadata(
    msg_meta=QUEUED_META,
    from_="sender@example.org",
    to=[f"rcpt{i}@example.com" for i in range(3)],
    rcpt_errs={"rcpt1@example.com": SMTPError(451, (4, 4, 2), "Network I/O error")},
    tries_count={f"rcpt{i}@example.com": 1 for i in range(3)},
    first_attempt=Timestamp.parse("2026-11-24T10:00:00.123456789+03:00"),
    last_attempt=Timestamp.parse("2026-11-24T10:15:00.5+03:00"),
)
DOC = QUEUE.to_json()
PLAIN = json.loads(DOC)


def ours_copy() -> MsgMetadata:
    return META.deep_copy()


def stdlib_copy() -> MsgMetadata:
    return copy.deepcopy(META)


def ours_json() -> QueueMetadata:
    return QueueMetadata.from_json(QUEUE.to_json())


def plain_json() -> object:
    return json.loads(json.dumps(PLAIN, separators=(",", ":"), ensure_ascii=False))


if __name__ == "__main__":
    assert ours_copy() == stdlib_copy()
    compare(
        "MsgMetadata.deep_copy",
        ours_copy,
        stdlib_copy,
        baseline_name="copy.deepcopy",
        number=2000,
        goal=">= 20x",
    )
    assert ours_json() == QUEUE
    compare(
        "QueueMetadata to JSON and back",
        ours_json,
        plain_json,
        baseline_name="json.dumps + json.loads of the plain dict",
        number=2000,
        goal=">= 0.77x (at most 1.3x the time)",
    )
