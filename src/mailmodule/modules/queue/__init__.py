"""`target.queue`: a durable queue in maddy's on-disk layout, its scheduler and its
delivery status notifications.

One concept per module: `_protocol` (what a store of messages is), `_store` (the
directory and its locks), `_dirsync` (group commit of directory fsyncs), `_retry` (the
schedule), `_clock`, `_attempt` (one delivery attempt),
`_scheduler` (what is tried when), `_dsn` (RFC 3464 reports), `_bounce` (who gets one),
`_control` (the flush request file), `_pgstore` and `_pgdb` (`queue.postgres`: rows in
PostgreSQL, bodies in a blob store), `_host` (the scheduler's thread), `_target` (the
module).
"""

from __future__ import annotations

from mailmodule.modules.queue._bounce import Bouncer as Bouncer
from mailmodule.modules.queue._clock import Clock as Clock
from mailmodule.modules.queue._clock import SystemClock as SystemClock
from mailmodule.modules.queue._control import FlushRequest as FlushRequest
from mailmodule.modules.queue._control import request_flush as request_flush
from mailmodule.modules.queue._control import take_flush as take_flush
from mailmodule.modules.queue._dsn import RecipientStatus as RecipientStatus
from mailmodule.modules.queue._dsn import Report as Report
from mailmodule.modules.queue._dsn import build_report as build_report
from mailmodule.modules.queue._pgstore import PostgresQueueStore as PostgresQueueStore
from mailmodule.modules.queue._protocol import MessageClaim as MessageClaim
from mailmodule.modules.queue._protocol import QueueStorage as QueueStorage
from mailmodule.modules.queue._protocol import StagedMessage as StagedMessage
from mailmodule.modules.queue._protocol import StoredMessage as StoredMessage
from mailmodule.modules.queue._protocol import check_id as check_id
from mailmodule.modules.queue._retry import RetryPolicy as RetryPolicy
from mailmodule.modules.queue._scheduler import Scheduler as Scheduler
from mailmodule.modules.queue._store import Claim as Claim
from mailmodule.modules.queue._store import QueueStore as QueueStore
from mailmodule.modules.queue._target import QueueTarget as QueueTarget

__all__ = [
    "Bouncer",
    "Claim",
    "Clock",
    "FlushRequest",
    "MessageClaim",
    "PostgresQueueStore",
    "QueueStorage",
    "QueueStore",
    "QueueTarget",
    "RecipientStatus",
    "Report",
    "RetryPolicy",
    "Scheduler",
    "StagedMessage",
    "StoredMessage",
    "SystemClock",
    "build_report",
    "check_id",
    "request_flush",
    "take_flush",
]
