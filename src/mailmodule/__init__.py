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

__version__ = "0.1.0"

__all__ = [
    "AddressError",
    "AuthError",
    "Buffer",
    "ConfigError",
    "DataError",
    "DuplicateModuleError",
    "ErrNoSuchBlob",
    "ErrUnknownCredentials",
    "FileBuffer",
    "Header",
    "HeaderError",
    "HeaderField",
    "MailModuleError",
    "MemoryBuffer",
    "MetadataError",
    "ModuleInitError",
    "NoSuchBlobError",
    "RegistryError",
    "SMTPError",
    "StorageError",
    "UnknownCredentialsError",
    "UnknownModuleError",
    "address",
    "buffer_body",
    "read_header",
]
