"""Reference modules, ready to use: tables, a blob store, maildir delivery and storage, IMAP
filters, password auth, local checks and modifiers, MX authentication policies.

Importing this package registers each module under its maddy-style name in the default
registry (`register_reference_modules` does the same for another registry).
"""

from __future__ import annotations

from mailmodule.modules._registration import REFERENCE_MODULES as REFERENCE_MODULES
from mailmodule.modules._registration import (
    register_reference_modules as register_reference_modules,
)
from mailmodule.modules.blob_s3 import S3BlobStore as S3BlobStore
from mailmodule.modules.blobstore import FSBlobStore as FSBlobStore
from mailmodule.modules.blobstore import MemoryBlobStore as MemoryBlobStore
from mailmodule.modules.checks import AuthorizeSender as AuthorizeSender
from mailmodule.modules.checks import CommandCheck as CommandCheck
from mailmodule.modules.checks import IPRevCheck as IPRevCheck
from mailmodule.modules.dkim import DKIMCheck as DKIMCheck
from mailmodule.modules.dkim import DKIMSigner as DKIMSigner
from mailmodule.modules.dmarc import DMARC as DMARC
from mailmodule.modules.dnsbl import DNSBLCheck as DNSBLCheck
from mailmodule.modules.imap_filters import CommandFilter as CommandFilter
from mailmodule.modules.maildir import MaildirTarget as MaildirTarget
from mailmodule.modules.modifiers import ReplaceAddress as ReplaceAddress
from mailmodule.modules.mx_auth import DANEPolicy as DANEPolicy
from mailmodule.modules.mx_auth import DNSSECPolicy as DNSSECPolicy
from mailmodule.modules.mx_auth import LocalPolicy as LocalPolicy
from mailmodule.modules.mx_auth import MTASTSPolicy as MTASTSPolicy
from mailmodule.modules.pass_table import PassTable as PassTable
from mailmodule.modules.pass_table import hash_password as hash_password
from mailmodule.modules.pass_table import verify_password as verify_password
from mailmodule.modules.queue import PostgresQueueStore as PostgresQueueStore
from mailmodule.modules.queue import QueueTarget as QueueTarget
from mailmodule.modules.require_mx import RequireMXCheck as RequireMXCheck
from mailmodule.modules.spf import SPFCheck as SPFCheck
from mailmodule.modules.storage import MaildirStorage as MaildirStorage
from mailmodule.modules.tables import FileTable as FileTable
from mailmodule.modules.tables import SQLTable as SQLTable
from mailmodule.modules.tables import StaticTable as StaticTable
from mailmodule.modules.targets import RemoteTarget as RemoteTarget
from mailmodule.modules.targets import SMTPTarget as SMTPTarget
from mailmodule.modules.tls_loader import FileTLSLoader as FileTLSLoader

register_reference_modules()

__all__ = [
    "DMARC",
    "REFERENCE_MODULES",
    "AuthorizeSender",
    "CommandCheck",
    "CommandFilter",
    "DANEPolicy",
    "DKIMCheck",
    "DKIMSigner",
    "DNSBLCheck",
    "DNSSECPolicy",
    "FSBlobStore",
    "FileTLSLoader",
    "FileTable",
    "IPRevCheck",
    "LocalPolicy",
    "MTASTSPolicy",
    "MaildirStorage",
    "MaildirTarget",
    "MemoryBlobStore",
    "PassTable",
    "PostgresQueueStore",
    "QueueTarget",
    "RemoteTarget",
    "ReplaceAddress",
    "RequireMXCheck",
    "S3BlobStore",
    "SMTPTarget",
    "SPFCheck",
    "SQLTable",
    "StaticTable",
    "hash_password",
    "register_reference_modules",
    "verify_password",
]
