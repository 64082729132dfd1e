"""mailmodule: typed, embeddable mail-server module interfaces, after maddy's module package."""

from __future__ import annotations

from mailmodule import address as address
from mailmodule.buffer import Buffer as Buffer
from mailmodule.buffer import FileBuffer as FileBuffer
from mailmodule.buffer import MemoryBuffer as MemoryBuffer
from mailmodule.buffer import buffer_body as buffer_body
from mailmodule.errors import AddressError as AddressError
from mailmodule.errors import AuthError as AuthError
from mailmodule.errors import ConfigError as ConfigError
from mailmodule.errors import DataError as DataError
from mailmodule.errors import DuplicateModuleError as DuplicateModuleError
from mailmodule.errors import ErrNoSuchBlob as ErrNoSuchBlob
from mailmodule.errors import ErrUnknownCredentials as ErrUnknownCredentials
from mailmodule.errors import HeaderError as HeaderError
from mailmodule.errors import MailModuleError as MailModuleError
from mailmodule.errors import MetadataError as MetadataError
from mailmodule.errors import ModuleInitError as ModuleInitError
from mailmodule.errors import NoSuchBlobError as NoSuchBlobError
from mailmodule.errors import RegistryError as RegistryError
from mailmodule.errors import SMTPError as SMTPError
from mailmodule.errors import StorageError as StorageError
from mailmodule.errors import UnknownCredentialsError as UnknownCredentialsError
from mailmodule.errors import UnknownModuleError as UnknownModuleError
from mailmodule.header import Header as Header
from mailmodule.header import HeaderField as HeaderField
from mailmodule.header import read_header as read_header
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

__version__ = "0.1.0"

__all__ = [
    "AddressError",
    "AuthError",
    "Buffer",
    "ConfigError",
    "ConnState",
    "DataError",
    "DuplicateModuleError",
    "ErrNoSuchBlob",
    "ErrUnknownCredentials",
    "FileBuffer",
    "Header",
    "HeaderError",
    "HeaderField",
    "MailModuleError",
    "MailOptions",
    "MemoryBuffer",
    "MetadataError",
    "ModSpecificData",
    "ModuleInitError",
    "MsgMetadata",
    "NoSuchBlobError",
    "QueueMetadata",
    "RcptOptions",
    "RegistryError",
    "Resolved",
    "SMTPError",
    "StorageError",
    "TLSState",
    "Timestamp",
    "UnknownCredentialsError",
    "UnknownModuleError",
    "address",
    "buffer_body",
    "generate_msg_id",
    "read_header",
]
