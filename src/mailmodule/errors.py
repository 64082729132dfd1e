"""One exception hierarchy for mailmodule, rooted at `MailModuleError`.

Go's `error` values become exceptions here. Sentinels of the seed (`ErrNoSuchBlob`,
`ErrUnknownCredentials`) become classes, kept under their Go names as aliases too.
Errors that can reach an SMTP client are `SMTPError`s and carry the reply code, the enhanced
status code and the text, as maddy's `exterrors.SMTPError` does.

The tree is shallow, grouped by cause:

    MailModuleError
    ├── SMTPError
    ├── ConfigError
    ├── RegistryError: UnknownModuleError, DuplicateModuleError, ModuleInitError,
    │                  InterfaceMismatchError, InitCycleError, PluginError, ShutdownError
    ├── DataError: MetadataError, AddressError, HeaderError
    ├── StorageError: NoSuchBlobError, InvalidNameError, NoSuchMailboxError,
    │                 MailboxExistsError, UnsafePathError, FilterError
    └── AuthError: UnknownCredentialsError

Every error pickles and unpickles to an equal error, so queue workers can pass them between
processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

__all__ = [
    "ENHANCED_CODE_NOT_SET",
    "NO_ENHANCED_CODE",
    "AddressError",
    "AuthError",
    "ConfigError",
    "DataError",
    "DeliveryStateError",
    "DuplicateModuleError",
    "ErrNoSuchBlob",
    "ErrUnknownCredentials",
    "FilterError",
    "HeaderError",
    "InitCycleError",
    "InterfaceMismatchError",
    "InvalidNameError",
    "MailModuleError",
    "MailboxExistsError",
    "MetadataError",
    "ModuleInitError",
    "NoSuchBlobError",
    "NoSuchMailboxError",
    "PluginError",
    "RegistryError",
    "SMTPError",
    "ShutdownError",
    "StorageError",
    "UnknownCredentialsError",
    "UnknownModuleError",
    "UnsafePathError",
]

_E = TypeVar("_E", bound=BaseException)

#: go-smtp's NoEnhancedCode: the reply carries no enhanced status code.
NO_ENHANCED_CODE: tuple[int, int, int] = (-1, -1, -1)
#: go-smtp's EnhancedCodeNotSet: the module gave none; `X.0.0` is used, X from the code.
ENHANCED_CODE_NOT_SET: tuple[int, int, int] = (0, 0, 0)


def _restore(cls: type[_E], args: tuple[object, ...], state: dict[str, object]) -> _E:
    # Rebuild without calling __init__: keyword-only constructor arguments live in the
    # instance dict, which default exception pickling would lose.
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class MailModuleError(Exception):
    """Raised when anything in mailmodule fails; the root of every mailmodule error.

    Catch it to handle every failure of the library at once; catch a subclass to handle one
    cause.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class SMTPError(MailModuleError):
    """Raised when a message or command must be refused with an SMTP reply.

    Mirrors maddy's `exterrors.SMTPError`: `code` is the three-digit reply code,
    `enhanced_code` the RFC 3463 status as three integers such as `(5, 7, 1)`, `message` the
    text the client sees. `check_name` and `target_name` name the module that refused;
    `misc` holds further fields for logs only. The underlying cause, if any, is `__cause__`
    and is never shown to the client.

    The caller should relay `code`, `enhanced_code` and `message` to the client and treat
    the failure as temporary when `is_temporary` is true.
    """

    code: int
    enhanced_code: tuple[int, int, int]
    message: str
    check_name: str | None
    target_name: str | None
    misc: Mapping[str, object]

    def __init__(
        self,
        code: int,
        enhanced_code: tuple[int, int, int],
        message: str,
        *,
        check_name: str | None = None,
        target_name: str | None = None,
        misc: Mapping[str, object] | None = None,
    ) -> None:
        if type(code) is not int or not 200 <= code <= 599:
            raise ValueError(f"SMTPError code must be an int from 200 to 599, got {code!r}")
        if not _valid_enhanced_code(enhanced_code):
            raise ValueError(
                "SMTPError enhanced_code must be three ints with class 2, 4 or 5 "
                f"(or NO_ENHANCED_CODE, ENHANCED_CODE_NOT_SET), got {enhanced_code!r}"
            )
        if type(message) is not str:
            raise ValueError(f"SMTPError message must be a str, got {type(message).__name__}")
        super().__init__(code, enhanced_code, message)
        self.code = code
        self.enhanced_code = enhanced_code
        self.message = message
        self.check_name = check_name
        self.target_name = target_name
        self.misc = _NO_MISC if not misc else MappingProxyType(dict(misc))

    def __reduce__(self) -> tuple[object, ...]:
        state = dict(self.__dict__)
        state["misc"] = dict(self.misc)  # a mappingproxy does not pickle
        return (_restore_smtp, (type(self), self.args, state))

    @property
    def is_temporary(self) -> bool:
        """True for a 4xx reply: the client may try again later."""
        return 400 <= self.code < 500

    @property
    def enhanced_code_str(self) -> str:
        """The enhanced status code as it is written in a reply, such as "5.7.1".

        Empty for `NO_ENHANCED_CODE`; `X.0.0` (X from the reply code) for
        `ENHANCED_CODE_NOT_SET`, as go-smtp writes them.
        """
        if self.enhanced_code == NO_ENHANCED_CODE:
            return ""
        if self.enhanced_code == ENHANCED_CODE_NOT_SET:
            return f"{self.code // 100}.0.0"
        return ".".join(str(p) for p in self.enhanced_code)

    def fields(self) -> dict[str, object]:
        """The error as flat fields for structured logging, as maddy logs it."""
        out: dict[str, object] = dict(self.misc)
        out["smtp_code"] = self.code
        out["smtp_enchcode"] = self.enhanced_code_str
        out["smtp_msg"] = self.message
        if self.check_name is not None:
            out["check"] = self.check_name
        if self.target_name is not None:
            out["target"] = self.target_name
        if self.__cause__ is not None:
            out["reason"] = str(self.__cause__)
        return out

    def __str__(self) -> str:
        enhanced = self.enhanced_code_str
        return (
            f"{self.code} {enhanced} {self.message}" if enhanced else f"{self.code} {self.message}"
        )

    def __repr__(self) -> str:
        extra = ""
        if self.check_name is not None:
            extra += f", check_name={self.check_name!r}"
        if self.target_name is not None:
            extra += f", target_name={self.target_name!r}"
        return f"SMTPError({self.code}, {self.enhanced_code!r}, {self.message!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SMTPError):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.args == other.args
            and self.check_name == other.check_name
            and self.target_name == other.target_name
            and dict(self.misc) == dict(other.misc)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class DeliveryStateError(SMTPError):
    """Raised when a delivery is asked for a step its state does not allow.

    A recipient after the body, a second body, a commit without a delivered body: the
    caller's own sequence is wrong. `state` names where the delivery was and `operation`
    what was asked; as an SMTPError it reads "503 5.5.1 Bad sequence of commands: ...", so a
    message source may relay it to its client. Nothing was changed by the refused call.
    """

    state: str
    operation: str

    def __init__(self, state: str, operation: str, detail: str) -> None:
        super().__init__(503, (5, 5, 1), f"Bad sequence of commands: {detail}")
        self.state = state
        self.operation = operation


def _restore_smtp(
    cls: type[SMTPError], args: tuple[object, ...], state: dict[str, object]
) -> SMTPError:
    err = _restore(cls, args, state)
    err.misc = MappingProxyType(dict(err.misc))
    return err


_NO_MISC: Mapping[str, object] = MappingProxyType({})


def _valid_enhanced_code(value: object) -> bool:
    if type(value) is not tuple or len(value) != 3:
        return False
    a, b, c = value
    if type(a) is not int or type(b) is not int or type(c) is not int:
        return False
    if a in (2, 4, 5) and 0 <= b <= 999 and 0 <= c <= 999:
        return True
    return value in (NO_ENHANCED_CODE, ENHANCED_CODE_NOT_SET)


class ConfigError(MailModuleError):
    """Raised when a module's configuration is missing, mistyped or unknown.

    `module`, `key`, `file` and `section` say where, when known. The caller should fix the
    configuration; retrying does not help.
    """

    def __init__(
        self,
        message: str,
        *,
        module: str | None = None,
        key: str | None = None,
        file: str | None = None,
        section: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.module = module
        self.key = key
        self.file = file
        self.section = section

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file!r}")
        if self.section is not None:
            where.append(f"section {self.section!r}")
        if self.module is not None:
            where.append(f"module {self.module!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class RegistryError(MailModuleError):
    """Raised when the module registry cannot do what was asked; see the subclasses."""


class UnknownModuleError(RegistryError, KeyError):
    """Raised when no module, endpoint or instance is registered under `name`.

    `suggestions` lists registered names close to it. The caller should check the spelling
    or import the package that registers the module.
    """

    def __init__(self, name: str, *, kind: str = "module", suggestions: tuple[str, ...] = ()):
        super().__init__(name)
        self.name = name
        self.kind = kind
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:
        text = f"unknown {self.kind} {self.name!r}"
        if self.suggestions:
            text += f" (did you mean {', '.join(repr(s) for s in self.suggestions)}?)"
        return text


class DuplicateModuleError(RegistryError, KeyError):
    """Raised when `name` is registered a second time; Go's `Register` panics there.

    The caller should pick another name or register into its own `Registry`.
    """

    def __init__(self, name: str, *, kind: str = "module") -> None:
        super().__init__(name)
        self.name = name
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} is already registered"


class ModuleInitError(RegistryError):
    """Raised when a module instance's `init` fails; the original error is `__cause__`.

    `instance_name` names the instance. No half-initialized instance is handed out; the
    caller should fix the configuration or the module and initialize again.
    """

    def __init__(self, instance_name: str, reason: str) -> None:
        super().__init__(instance_name, reason)
        self.instance_name = instance_name
        self.reason = reason

    def __str__(self) -> str:
        return f"module instance {self.instance_name!r} failed to initialize: {self.reason}"


class InterfaceMismatchError(RegistryError, TypeError):
    """Raised when a module lacks the interface it is used for: registered under a prefix,
    or given to a pipeline as a check, modifier, target or table.

    `missing` lists the methods that are absent or not async where they must be. The caller
    should fix the module, or use it (register it) as what it is.
    """

    def __init__(self, name: str, interface: str, missing: tuple[str, ...]) -> None:
        super().__init__(name, interface, missing)
        self.name = name
        self.interface = interface
        self.missing = tuple(missing)

    def __str__(self) -> str:
        return (
            f"module {self.name!r} does not implement {self.interface}: {', '.join(self.missing)}"
        )


class InitCycleError(RegistryError):
    """Raised when module instances need each other to initialize: A's init asks for B and
    B's for A. `cycle` lists the instances, the first repeated at the end.

    The caller should break the cycle in the configuration.
    """

    def __init__(self, cycle: tuple[str, ...]) -> None:
        super().__init__(cycle)
        self.cycle = tuple(cycle)

    def __str__(self) -> str:
        return "module initialization cycle: " + " -> ".join(repr(n) for n in self.cycle)


class PluginError(RegistryError):
    """Raised (or reported) when a plugin's entry point cannot be loaded.

    `plugin` names the entry point and `distribution` the package that declares it; the
    cause is `__cause__`. Other plugins are loaded all the same.
    """

    def __init__(self, plugin: str, distribution: str, reason: str) -> None:
        super().__init__(plugin, distribution, reason)
        self.plugin = plugin
        self.distribution = distribution
        self.reason = reason

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} from {self.distribution!r} is broken: {self.reason}"


class ShutdownError(RegistryError):
    """Raised by `close_all` when closing modules failed; `errors` holds every failure as
    (instance name, error) pairs, not only the first. Every other module was closed."""

    def __init__(self, errors: tuple[tuple[str, BaseException], ...]) -> None:
        super().__init__(errors)
        self.errors = tuple(errors)

    def __str__(self) -> str:
        parts = [f"{name!r}: {type(err).__name__}: {err}" for name, err in self.errors]
        return f"{len(self.errors)} module(s) failed to close: " + "; ".join(parts)


class DataError(MailModuleError, ValueError):
    """Raised when data from outside (a file, the network, a JSON document) is malformed."""


class MetadataError(DataError):
    """Raised when message or queue metadata cannot be read or written.

    `path` is the JSON path of the culprit, such as "MsgMeta.SMTPOpts.Size", when known.
    The caller should treat the document as corrupt; nothing was half-built.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class AddressError(DataError):
    """Raised when an e-mail address or domain is malformed; `address` is the culprit."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return f"invalid address {self.address!r}: {self.message}"


class HeaderError(DataError):
    """Raised when a message header is malformed.

    `line` is the 1-based line number of the culprit and `text` its raw bytes, when known.
    """

    def __init__(self, message: str, *, line: int | None = None, text: bytes | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.text = text

    def __str__(self) -> str:
        out = self.message
        if self.line is not None:
            out = f"header line {self.line}: {out}"
        if self.text is not None:
            shown = self.text if len(self.text) <= 80 else self.text[:77] + b"..."
            out += f": {shown!r}"
        return out


class StorageError(MailModuleError):
    """Raised when a storage backend (a blob store, a table's file) fails."""


class NoSuchBlobError(StorageError):
    """Raised when a blob store has no object under the key asked for (seed: ErrNoSuchBlob).

    Raisable without arguments as the Go sentinel is used; `key` names the key when known.
    """

    def __init__(self, key: str | None = None) -> None:
        super().__init__(*(() if key is None else (key,)))
        self.key = key

    def __str__(self) -> str:
        text = "blob_store: no such object"
        return text if self.key is None else f"{text}: {self.key!r}"


class InvalidNameError(StorageError, ValueError):
    """Raised when a storage refuses a name: a user, a folder, a message key or a flag.

    `kind` says which ("user", "folder", "message", "flag"), `name` is the name refused and
    `reason` why (a "/" in it, a ".." component, a leading "."). Nothing was changed; the
    caller should pick another name (retrying the same one never helps).
    """

    def __init__(self, kind: str, name: str, reason: str) -> None:
        super().__init__(kind, name, reason)
        self.kind = kind
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid {self.kind} name {self.name!r}: {self.reason}"


class NoSuchMailboxError(StorageError, KeyError):
    """Raised when a storage has no user, folder or message of that name.

    `kind` says which ("user", "folder", "message") and `name` names it. The caller may
    create it first, or report it to the client (IMAP's NO [NONEXISTENT]).
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return f"no such {self.kind}: {self.name!r}"


class MailboxExistsError(StorageError):
    """Raised when a user or folder to be created (or renamed to) exists already.

    `kind` ("user", "folder") and `name` say which. Nothing was changed; the caller may use
    the existing one or pick another name (IMAP's NO [ALREADYEXISTS]).
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} already exists"


class UnsafePathError(StorageError):
    """Raised when a storage finds a symbolic link (or another non-regular entry) where
    its own directory or file should be: following it could leave the user's tree.

    `path` is the entry refused. Nothing was read or changed through it; an administrator
    should look at the entry: mailmodule never creates one.
    """

    def __init__(self, path: str, reason: str = "a symbolic link") -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"refusing {self.path!r}: {self.reason}"


class FilterError(StorageError):
    """Raised by an IMAP filter (`IMAPFilter.imap_filter`) that could not decide: its
    command failed, timed out or printed too much.

    `filter_name` names the filter and `reason` says what went wrong. Delivery goes on
    as if the filter had said nothing; the caller should log it.
    """

    def __init__(self, filter_name: str, reason: str) -> None:
        super().__init__(filter_name, reason)
        self.filter_name = filter_name
        self.reason = reason

    def __str__(self) -> str:
        return f"IMAP filter {self.filter_name!r} failed: {self.reason}"


class AuthError(MailModuleError):
    """Raised when authentication fails. Never carries the password."""


class UnknownCredentialsError(AuthError):
    """Raised by an auth provider when the credentials are not recognized (seed:
    ErrUnknownCredentials), for example a user not found in its database.

    The caller may try the next provider. `username` names the user when known.
    """

    def __init__(self, username: str | None = None) -> None:
        super().__init__(*(() if username is None else (username,)))
        self.username = username

    def __str__(self) -> str:
        text = "unknown credentials"
        return text if self.username is None else f"{text}: user {self.username!r}"


#: The seed's sentinel names, for readers coming from Go.
ErrNoSuchBlob = NoSuchBlobError
ErrUnknownCredentials = UnknownCredentialsError
