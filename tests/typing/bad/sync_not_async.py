"""Methods that take a Go context must be async; these are not."""

from __future__ import annotations

from mailmodule import Delivery, DeliveryTarget, MsgMetadata, Table


class SyncTable:
    def lookup(self, key: str) -> str | None:
        return None


class SyncTarget:
    def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        raise NotImplementedError


table: Table = SyncTable()  # E: assignment: Incompatible types in assignment
target: DeliveryTarget = SyncTarget()  # E: assignment: Following member(s) of "SyncTarget" have conflicts
