"""The reference modules by their maddy-style names."""

from __future__ import annotations

from typing import Final

from mailmodule.errors import DuplicateModuleError
from mailmodule.interfaces import ModuleFactory
from mailmodule.modules.blob_s3 import S3BlobStore
from mailmodule.modules.blobstore import FSBlobStore, MemoryBlobStore
from mailmodule.modules.checks import AuthorizeSender, CommandCheck, IPRevCheck
from mailmodule.modules.dkim import DKIMCheck, DKIMSigner
from mailmodule.modules.dnsbl import DNSBLCheck
from mailmodule.modules.imap_filters import CommandFilter
from mailmodule.modules.maildir import MaildirTarget
from mailmodule.modules.modifiers import ReplaceAddress
from mailmodule.modules.mx_auth import DANEPolicy, DNSSECPolicy, LocalPolicy, MTASTSPolicy
from mailmodule.modules.pass_table import PassTable
from mailmodule.modules.queue import PostgresQueueStore, QueueTarget
from mailmodule.modules.require_mx import RequireMXCheck
from mailmodule.modules.spf import SPFCheck
from mailmodule.modules.storage import MaildirStorage
from mailmodule.modules.tables import FileTable, SQLTable, StaticTable
from mailmodule.modules.targets import RemoteTarget, SMTPTarget
from mailmodule.modules.tls_loader import FileTLSLoader
from mailmodule.registry import Registry, default_registry

__all__ = ["REFERENCE_MODULES", "register_reference_modules"]

REFERENCE_MODULES: Final[dict[str, ModuleFactory]] = {
    "table.static": StaticTable,
    "table.file": FileTable,
    "table.sql": SQLTable,
    "storage.blob.fs": FSBlobStore,
    "storage.blob.memory": MemoryBlobStore,
    "storage.blob.s3": S3BlobStore,
    "storage.maildir": MaildirStorage,
    "target.maildir": MaildirTarget,
    "target.smtp": SMTPTarget,
    "target.lmtp": SMTPTarget,
    "target.remote": RemoteTarget,
    "target.queue": QueueTarget,
    "queue.postgres": PostgresQueueStore,
    "auth.pass_table": PassTable,
    "check.command": CommandCheck,
    "check.authorize_sender": AuthorizeSender,
    "check.iprev": IPRevCheck,
    "check.spf": SPFCheck,
    "check.dnsbl": DNSBLCheck,
    "check.require_mx_record": RequireMXCheck,
    "check.dkim": DKIMCheck,
    "imap.filter.command": CommandFilter,
    "modify.replace_rcpt": ReplaceAddress,
    "modify.replace_sender": ReplaceAddress,
    "modify.dkim": DKIMSigner,
    "tls.loader.file": FileTLSLoader,
    "mx_auth.local_policy": LocalPolicy,
    "mx_auth.dnssec": DNSSECPolicy,
    "mx_auth.mtasts": MTASTSPolicy,
    "mx_auth.dane": DANEPolicy,
}


def register_reference_modules(registry: Registry = default_registry) -> None:
    """Register every reference module in `registry`; already registered ones are kept.

    Raises:
        DuplicateModuleError: a name is taken by another factory.
    """
    for name, factory in REFERENCE_MODULES.items():
        try:
            registry.register(name, factory)
        except DuplicateModuleError:
            if registry.get(name) is not factory:
                raise
