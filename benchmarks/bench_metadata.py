"""MsgMetadata.deep_copy and QueueMetadata JSON, each against the obvious way by hand.

deep_copy is timed against `attrs.evolve` with copies of the two mutable maps: the same
copy (conn shared, frozen options shared), written in one line. (copy.deepcopy, timed
before, also copies conn, which deep_copy must not.) The JSON round trip is timed against
`json.dumps` + `json.loads` of the same document as a plain dict.
"""

from __future__ import annotations

import json

import attrs
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


def evolve_copy() -> MsgMetadata:
    rcpts = META.original_rcpts
    return attrs.evolve(
        META,
        original_rcpts=None if rcpts is None else dict(rcpts),
        rcpt_opts=dict(META.rcpt_opts),
    )


def ours_json() -> QueueMetadata:
    return QueueMetadata.from_json(QUEUE.to_json())


def plain_json() -> object:
    return json.loads(json.dumps(PLAIN, separators=(",", ":"), ensure_ascii=False))


def report(ratio: float, goal: float) -> None:
    print(f"  goal >= {goal:.2f}x: {'MET' if ratio >= goal else 'NOT MET'}")


if __name__ == "__main__":
    copied = ours_copy()
    assert copied == evolve_copy()
    assert copied.conn is META.conn
    report(
        compare(
            "MsgMetadata.deep_copy",
            ours_copy,
            evolve_copy,
            baseline_name="attrs.evolve + dict copies of the two maps",
            number=5000,
            goal=">= 2x: a hand-written copy must clearly beat the one-liner",
        ),
        2.0,
    )
    assert ours_json() == QUEUE
    report(
        compare(
            "QueueMetadata to JSON and back",
            ours_json,
            plain_json,
            baseline_name="json.dumps + json.loads of the plain dict",
            number=2000,
            goal=">= 0.77x (at most 1.3x the time)",
        ),
        1 / 1.3,
    )
