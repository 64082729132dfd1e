"""Outbound targets and the asyncio SMTP client they share: `target.smtp`, `target.lmtp`,
`target.remote`.

`SMTPClient` (one session, `ClientSettings`), `ConnectionPool` (idle sessions per
`Upstream`) are the pieces a target delivering over SMTP builds on.
"""

from __future__ import annotations

from mailmodule.modules.targets._client import ClientSettings as ClientSettings
from mailmodule.modules.targets._client import SMTPClient as SMTPClient
from mailmodule.modules.targets._client import tls_context as tls_context
from mailmodule.modules.targets._pool import ConnectionPool as ConnectionPool
from mailmodule.modules.targets._upstream import Upstream as Upstream
from mailmodule.modules.targets.remote import RemoteTarget as RemoteTarget
from mailmodule.modules.targets.smtp import SMTPTarget as SMTPTarget

__all__ = [
    "ClientSettings",
    "ConnectionPool",
    "RemoteTarget",
    "SMTPClient",
    "SMTPTarget",
    "Upstream",
    "tls_context",
]
