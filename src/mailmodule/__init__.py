"""mailmodule: typed, embeddable mail-server module interfaces, after maddy's module package.

Every name below is imported from its submodule on first use (PEP 562), so that
`import mailmodule` (and with it `mailmodule --help`) stays cheap; `from mailmodule
import X` works as an ordinary import would. The type checker reads the imports of the
TYPE_CHECKING block.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing would cost `mailmodule --help` a tenth of its
# time; type checkers read this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from mailmodule import address as address
    from mailmodule.buffer import Buffer as Buffer
    from mailmodule.buffer import FileBuffer as FileBuffer
    from mailmodule.buffer import MemoryBuffer as MemoryBuffer
    from mailmodule.buffer import buffer_body as buffer_body
    from mailmodule.config import ConfigMap as ConfigMap
    from mailmodule.dummy import Dummy as Dummy
    from mailmodule.errors import ENHANCED_CODE_NOT_SET as ENHANCED_CODE_NOT_SET
    from mailmodule.errors import NO_ENHANCED_CODE as NO_ENHANCED_CODE
    from mailmodule.errors import AddressError as AddressError
    from mailmodule.errors import AuthError as AuthError
    from mailmodule.errors import ConfigError as ConfigError
    from mailmodule.errors import DataError as DataError
    from mailmodule.errors import DuplicateModuleError as DuplicateModuleError
    from mailmodule.errors import ErrNoSuchBlob as ErrNoSuchBlob
    from mailmodule.errors import ErrUnknownCredentials as ErrUnknownCredentials
    from mailmodule.errors import FilterError as FilterError
    from mailmodule.errors import HeaderError as HeaderError
    from mailmodule.errors import InitCycleError as InitCycleError
    from mailmodule.errors import InterfaceMismatchError as InterfaceMismatchError
    from mailmodule.errors import InvalidNameError as InvalidNameError
    from mailmodule.errors import MailboxExistsError as MailboxExistsError
    from mailmodule.errors import MailModuleError as MailModuleError
    from mailmodule.errors import MetadataError as MetadataError
    from mailmodule.errors import ModuleInitError as ModuleInitError
    from mailmodule.errors import NoSuchBlobError as NoSuchBlobError
    from mailmodule.errors import NoSuchMailboxError as NoSuchMailboxError
    from mailmodule.errors import PluginError as PluginError
    from mailmodule.errors import RegistryError as RegistryError
    from mailmodule.errors import ShutdownError as ShutdownError
    from mailmodule.errors import SMTPError as SMTPError
    from mailmodule.errors import StorageError as StorageError
    from mailmodule.errors import UnknownCredentialsError as UnknownCredentialsError
    from mailmodule.errors import UnknownModuleError as UnknownModuleError
    from mailmodule.errors import UnsafePathError as UnsafePathError
    from mailmodule.header import Header as Header
    from mailmodule.header import HeaderField as HeaderField
    from mailmodule.header import read_header as read_header
    from mailmodule.interfaces import AUTH_COMMON_DOMAIN as AUTH_COMMON_DOMAIN
    from mailmodule.interfaces import AUTH_DISABLED as AUTH_DISABLED
    from mailmodule.interfaces import AUTH_DNSSEC as AUTH_DNSSEC
    from mailmodule.interfaces import AUTH_MTASTS as AUTH_MTASTS
    from mailmodule.interfaces import SYSTEM_FLAGS as SYSTEM_FLAGS
    from mailmodule.interfaces import UNKNOWN_BLOB_SIZE as UNKNOWN_BLOB_SIZE
    from mailmodule.interfaces import AuthResult as AuthResult
    from mailmodule.interfaces import AuthResultProperty as AuthResultProperty
    from mailmodule.interfaces import Blob as Blob
    from mailmodule.interfaces import BlobStore as BlobStore
    from mailmodule.interfaces import CertificateChain as CertificateChain
    from mailmodule.interfaces import Check as Check
    from mailmodule.interfaces import CheckResult as CheckResult
    from mailmodule.interfaces import CheckState as CheckState
    from mailmodule.interfaces import Closer as Closer
    from mailmodule.interfaces import Delivery as Delivery
    from mailmodule.interfaces import DeliveryMXAuthPolicy as DeliveryMXAuthPolicy
    from mailmodule.interfaces import DeliveryTarget as DeliveryTarget
    from mailmodule.interfaces import EarlyCheck as EarlyCheck
    from mailmodule.interfaces import EndpointFactory as EndpointFactory
    from mailmodule.interfaces import FuncNewEndpoint as FuncNewEndpoint
    from mailmodule.interfaces import FuncNewModule as FuncNewModule
    from mailmodule.interfaces import IMAPFilter as IMAPFilter
    from mailmodule.interfaces import IMAPMailbox as IMAPMailbox
    from mailmodule.interfaces import IMAPUser as IMAPUser
    from mailmodule.interfaces import MailboxInfo as MailboxInfo
    from mailmodule.interfaces import ManageableStorage as ManageableStorage
    from mailmodule.interfaces import MessageInfo as MessageInfo
    from mailmodule.interfaces import Modifier as Modifier
    from mailmodule.interfaces import ModifierState as ModifierState
    from mailmodule.interfaces import Module as Module
    from mailmodule.interfaces import ModuleFactory as ModuleFactory
    from mailmodule.interfaces import MultiTable as MultiTable
    from mailmodule.interfaces import MutableTable as MutableTable
    from mailmodule.interfaces import MXAuthPolicy as MXAuthPolicy
    from mailmodule.interfaces import MXLevel as MXLevel
    from mailmodule.interfaces import PartialDelivery as PartialDelivery
    from mailmodule.interfaces import PlainAuth as PlainAuth
    from mailmodule.interfaces import PlainUserDB as PlainUserDB
    from mailmodule.interfaces import ReadCloser as ReadCloser
    from mailmodule.interfaces import ResultsCheck as ResultsCheck
    from mailmodule.interfaces import StatusCollector as StatusCollector
    from mailmodule.interfaces import Storage as Storage
    from mailmodule.interfaces import Table as Table
    from mailmodule.interfaces import TLSLevel as TLSLevel
    from mailmodule.interfaces import TLSLoader as TLSLoader
    from mailmodule.metadata import ConnState as ConnState
    from mailmodule.metadata import MailOptions as MailOptions
    from mailmodule.metadata import ModSpecificData as ModSpecificData
    from mailmodule.metadata import MsgMetadata as MsgMetadata
    from mailmodule.metadata import QueueMetadata as QueueMetadata
    from mailmodule.metadata import RcptOptions as RcptOptions
    from mailmodule.metadata import Resolved as Resolved
    from mailmodule.metadata import Timestamp as Timestamp
    from mailmodule.metadata import TLSState as TLSState
    from mailmodule.metadata import generate_msg_id as generate_msg_id
    from mailmodule.registry import Registry as Registry
    from mailmodule.registry import close_all as close_all
    from mailmodule.registry import default_registry as default_registry
    from mailmodule.registry import get as get
    from mailmodule.registry import get_endpoint as get_endpoint
    from mailmodule.registry import get_instance as get_instance
    from mailmodule.registry import has_instance as has_instance
    from mailmodule.registry import initialized as initialized
    from mailmodule.registry import load_plugins as load_plugins
    from mailmodule.registry import no_run as no_run
    from mailmodule.registry import register as register
    from mailmodule.registry import register_alias as register_alias
    from mailmodule.registry import register_deprecated as register_deprecated
    from mailmodule.registry import register_endpoint as register_endpoint
    from mailmodule.registry import register_instance as register_instance
    from mailmodule.registry import set_no_run as set_no_run

__version__ = "0.1.0"

# Each public name and the submodule it lives in (a submodule itself: its own name).
_SUBMODULE: Final[dict[str, str]] = {
    "AUTH_COMMON_DOMAIN": "mailmodule.interfaces",
    "AUTH_DISABLED": "mailmodule.interfaces",
    "AUTH_DNSSEC": "mailmodule.interfaces",
    "AUTH_MTASTS": "mailmodule.interfaces",
    "AddressError": "mailmodule.errors",
    "AuthError": "mailmodule.errors",
    "AuthResult": "mailmodule.interfaces",
    "AuthResultProperty": "mailmodule.interfaces",
    "Blob": "mailmodule.interfaces",
    "BlobStore": "mailmodule.interfaces",
    "Buffer": "mailmodule.buffer",
    "CertificateChain": "mailmodule.interfaces",
    "Check": "mailmodule.interfaces",
    "CheckResult": "mailmodule.interfaces",
    "CheckState": "mailmodule.interfaces",
    "Closer": "mailmodule.interfaces",
    "ConfigError": "mailmodule.errors",
    "ConfigMap": "mailmodule.config",
    "ConnState": "mailmodule.metadata",
    "DataError": "mailmodule.errors",
    "Delivery": "mailmodule.interfaces",
    "DeliveryMXAuthPolicy": "mailmodule.interfaces",
    "DeliveryTarget": "mailmodule.interfaces",
    "Dummy": "mailmodule.dummy",
    "DuplicateModuleError": "mailmodule.errors",
    "ENHANCED_CODE_NOT_SET": "mailmodule.errors",
    "EarlyCheck": "mailmodule.interfaces",
    "EndpointFactory": "mailmodule.interfaces",
    "ErrNoSuchBlob": "mailmodule.errors",
    "ErrUnknownCredentials": "mailmodule.errors",
    "FileBuffer": "mailmodule.buffer",
    "FilterError": "mailmodule.errors",
    "FuncNewEndpoint": "mailmodule.interfaces",
    "FuncNewModule": "mailmodule.interfaces",
    "Header": "mailmodule.header",
    "HeaderError": "mailmodule.errors",
    "HeaderField": "mailmodule.header",
    "IMAPFilter": "mailmodule.interfaces",
    "IMAPMailbox": "mailmodule.interfaces",
    "IMAPUser": "mailmodule.interfaces",
    "InitCycleError": "mailmodule.errors",
    "InterfaceMismatchError": "mailmodule.errors",
    "InvalidNameError": "mailmodule.errors",
    "MXAuthPolicy": "mailmodule.interfaces",
    "MXLevel": "mailmodule.interfaces",
    "MailModuleError": "mailmodule.errors",
    "MailOptions": "mailmodule.metadata",
    "MailboxExistsError": "mailmodule.errors",
    "MailboxInfo": "mailmodule.interfaces",
    "ManageableStorage": "mailmodule.interfaces",
    "MemoryBuffer": "mailmodule.buffer",
    "MessageInfo": "mailmodule.interfaces",
    "MetadataError": "mailmodule.errors",
    "ModSpecificData": "mailmodule.metadata",
    "Modifier": "mailmodule.interfaces",
    "ModifierState": "mailmodule.interfaces",
    "Module": "mailmodule.interfaces",
    "ModuleFactory": "mailmodule.interfaces",
    "ModuleInitError": "mailmodule.errors",
    "MsgMetadata": "mailmodule.metadata",
    "MultiTable": "mailmodule.interfaces",
    "MutableTable": "mailmodule.interfaces",
    "NO_ENHANCED_CODE": "mailmodule.errors",
    "NoSuchBlobError": "mailmodule.errors",
    "NoSuchMailboxError": "mailmodule.errors",
    "PartialDelivery": "mailmodule.interfaces",
    "PlainAuth": "mailmodule.interfaces",
    "PlainUserDB": "mailmodule.interfaces",
    "PluginError": "mailmodule.errors",
    "QueueMetadata": "mailmodule.metadata",
    "RcptOptions": "mailmodule.metadata",
    "ReadCloser": "mailmodule.interfaces",
    "ResultsCheck": "mailmodule.interfaces",
    "Registry": "mailmodule.registry",
    "RegistryError": "mailmodule.errors",
    "Resolved": "mailmodule.metadata",
    "SMTPError": "mailmodule.errors",
    "SYSTEM_FLAGS": "mailmodule.interfaces",
    "ShutdownError": "mailmodule.errors",
    "StatusCollector": "mailmodule.interfaces",
    "Storage": "mailmodule.interfaces",
    "StorageError": "mailmodule.errors",
    "TLSLevel": "mailmodule.interfaces",
    "TLSLoader": "mailmodule.interfaces",
    "TLSState": "mailmodule.metadata",
    "Table": "mailmodule.interfaces",
    "Timestamp": "mailmodule.metadata",
    "UNKNOWN_BLOB_SIZE": "mailmodule.interfaces",
    "UnknownCredentialsError": "mailmodule.errors",
    "UnknownModuleError": "mailmodule.errors",
    "UnsafePathError": "mailmodule.errors",
    "address": "mailmodule.address",
    "buffer_body": "mailmodule.buffer",
    "close_all": "mailmodule.registry",
    "default_registry": "mailmodule.registry",
    "generate_msg_id": "mailmodule.metadata",
    "get": "mailmodule.registry",
    "get_endpoint": "mailmodule.registry",
    "get_instance": "mailmodule.registry",
    "has_instance": "mailmodule.registry",
    "initialized": "mailmodule.registry",
    "load_plugins": "mailmodule.registry",
    "no_run": "mailmodule.registry",
    "read_header": "mailmodule.header",
    "register": "mailmodule.registry",
    "register_alias": "mailmodule.registry",
    "register_deprecated": "mailmodule.registry",
    "register_endpoint": "mailmodule.registry",
    "register_instance": "mailmodule.registry",
    "set_no_run": "mailmodule.registry",
}

__all__ = [
    "AUTH_COMMON_DOMAIN",
    "AUTH_DISABLED",
    "AUTH_DNSSEC",
    "AUTH_MTASTS",
    "ENHANCED_CODE_NOT_SET",
    "NO_ENHANCED_CODE",
    "SYSTEM_FLAGS",
    "UNKNOWN_BLOB_SIZE",
    "AddressError",
    "AuthError",
    "AuthResult",
    "AuthResultProperty",
    "Blob",
    "BlobStore",
    "Buffer",
    "CertificateChain",
    "Check",
    "CheckResult",
    "CheckState",
    "Closer",
    "ConfigError",
    "ConfigMap",
    "ConnState",
    "DataError",
    "Delivery",
    "DeliveryMXAuthPolicy",
    "DeliveryTarget",
    "Dummy",
    "DuplicateModuleError",
    "EarlyCheck",
    "EndpointFactory",
    "ErrNoSuchBlob",
    "ErrUnknownCredentials",
    "FileBuffer",
    "FilterError",
    "FuncNewEndpoint",
    "FuncNewModule",
    "Header",
    "HeaderError",
    "HeaderField",
    "IMAPFilter",
    "IMAPMailbox",
    "IMAPUser",
    "InitCycleError",
    "InterfaceMismatchError",
    "InvalidNameError",
    "MXAuthPolicy",
    "MXLevel",
    "MailModuleError",
    "MailOptions",
    "MailboxExistsError",
    "MailboxInfo",
    "ManageableStorage",
    "MemoryBuffer",
    "MessageInfo",
    "MetadataError",
    "ModSpecificData",
    "Modifier",
    "ModifierState",
    "Module",
    "ModuleFactory",
    "ModuleInitError",
    "MsgMetadata",
    "MultiTable",
    "MutableTable",
    "NoSuchBlobError",
    "NoSuchMailboxError",
    "PartialDelivery",
    "PlainAuth",
    "PlainUserDB",
    "PluginError",
    "QueueMetadata",
    "RcptOptions",
    "ReadCloser",
    "Registry",
    "RegistryError",
    "Resolved",
    "ResultsCheck",
    "SMTPError",
    "ShutdownError",
    "StatusCollector",
    "Storage",
    "StorageError",
    "TLSLevel",
    "TLSLoader",
    "TLSState",
    "Table",
    "Timestamp",
    "UnknownCredentialsError",
    "UnknownModuleError",
    "UnsafePathError",
    "address",
    "buffer_body",
    "close_all",
    "default_registry",
    "generate_msg_id",
    "get",
    "get_endpoint",
    "get_instance",
    "has_instance",
    "initialized",
    "load_plugins",
    "no_run",
    "read_header",
    "register",
    "register_alias",
    "register_deprecated",
    "register_endpoint",
    "register_instance",
    "set_no_run",
]


def __getattr__(name: str) -> object:
    """Import `name` from its submodule on first use, and keep it here."""
    try:
        submodule = _SUBMODULE[name]
    except KeyError:
        raise AttributeError(f"module 'mailmodule' has no attribute {name!r}") from None
    module = importlib.import_module(submodule)
    value = module if submodule == f"mailmodule.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
