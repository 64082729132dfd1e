"""Message metadata: what travels with every message, and maddy's queue files on disk.

`MsgMetadata` is the twin of the seed's `MsgMetadata`; `ConnState` of its `ConnState` (with
go-smtp's `ConnectionState` folded in); `MailOptions` and `RcptOptions` of go-smtp's MAIL FROM
and RCPT TO parameters; `TLSState` of `tls.ConnectionState`.

`QueueMetadata` reads and writes the `<ID>.meta` files of maddy's queue, byte for byte as Go's
`encoding/json` writes them.
"""

from __future__ import annotations

from mailmodule.metadata._conn import ConnState as ConnState
from mailmodule.metadata._conn import ModSpecificData as ModSpecificData
from mailmodule.metadata._conn import Resolved as Resolved
from mailmodule.metadata._conn import TLSState as TLSState
from mailmodule.metadata._message import MsgMetadata as MsgMetadata
from mailmodule.metadata._message import generate_msg_id as generate_msg_id
from mailmodule.metadata._options import BODY_TYPES as BODY_TYPES
from mailmodule.metadata._options import DSN_NOTIFY as DSN_NOTIFY
from mailmodule.metadata._options import DSN_RETURN as DSN_RETURN
from mailmodule.metadata._options import MailOptions as MailOptions
from mailmodule.metadata._options import RcptOptions as RcptOptions
from mailmodule.metadata._queue import QueueMetadata as QueueMetadata
from mailmodule.metadata._queue import Timestamp as Timestamp

__all__ = [
    "BODY_TYPES",
    "DSN_NOTIFY",
    "DSN_RETURN",
    "ConnState",
    "MailOptions",
    "ModSpecificData",
    "MsgMetadata",
    "QueueMetadata",
    "RcptOptions",
    "Resolved",
    "TLSState",
    "Timestamp",
    "generate_msg_id",
]
