"""The management commands: `mailmodule creds`, `mailmodule table`, `mailmodule imap-acct`.

maddy's `maddy creds`, `maddy table` and `maddy imap-acct`, over the instances of a
configuration file: a `PlainUserDB` (`auth.pass_table`), a `Table` (changes need a
`MutableTable`: `table.file`, `table.sql`) and a `ManageableStorage` (`storage.maildir`).
Only the instance a command works on is initialized, with the instances it refers to:
no endpoint, no socket.

Passwords come from the terminal (asked twice) or from standard input, never from the
command line, and are hashed by the user database (`auth.pass_table`: Argon2id). No
message names a password or a stored value. Every failure is one line on standard error
and a sysexits code, as `mailmodule creds --help` lists them.
"""

from __future__ import annotations

import asyncio
import getpass
import unicodedata
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO, Final, TextIO, TypeVar, final

import attrs

from mailmodule.cli import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_REFUSED,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)
from mailmodule.errors import (
    AuthError,
    ConfigError,
    DataError,
    MailboxExistsError,
    MailModuleError,
    NoSuchMailboxError,
    StorageError,
    UnknownCredentialsError,
)
from mailmodule.interfaces import (
    IMAPUser,
    ManageableStorage,
    MultiTable,
    MutableTable,
    PlainUserDB,
    Table,
)
from mailmodule.registry import missing_methods

if TYPE_CHECKING:
    from mailmodule.interfaces import Module
    from mailmodule.server import Server

__all__ = [
    "EX_CANTCREAT",
    "EX_NOUSER",
    "EX_UNAVAILABLE",
    "Console",
    "Request",
    "run",
]

_T = TypeVar("_T")

#: sysexits.h: the user, account or key named does not exist.
EX_NOUSER: Final = 67
#: sysexits.h: the instance cannot do that (a read-only table, a storage without folders).
EX_UNAVAILABLE: Final = 69
#: sysexits.h: the user or account to create exists already.
EX_CANTCREAT: Final = 73
EX_INTERRUPTED: Final = 130

# A password or a value read from standard input is bounded: a command reading an
# endless pipe must not grow without limit.
_MAX_PASSWORD_BYTES: Final = 1024
_MAX_VALUE_BYTES: Final = 1 << 20
# As a Maildir user name (one directory name) and an e-mail address fit.
_MAX_USER_BYTES: Final = 255
# Control, format, private-use, unassigned characters and surrogates, line and paragraph
# separators: invisible or terminal-controlling in a listing, or no name at all.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# The stored forms of auth.pass_table (modules/pass_table.py): `table get` never prints
# them; a password is changed with `creds password`.
_HASH_PREFIXES: Final = ("argon2:", "bcrypt:", "scrypt$")
_HIDDEN_HASH: Final = "(a password hash, not shown: manage it with mailmodule creds)"


class _Failure(MailModuleError):
    """Raised inside a command to end it with `exit_code` and the one-line `message`."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(exit_code, message)
        self.exit_code = exit_code
        self.message = message

    def __str__(self) -> str:
        return self.message


@final
@attrs.frozen(kw_only=True)
class Request:
    """One management command as the command line gave it.

    `command` is "creds", "table" or "imap-acct"; `action` its action ("create", ...);
    `config` the configuration file; `instance` the instance chosen (`--instance`, or a
    `table` command's INSTANCE); `name` the user or key; `value` a `table set` value from
    the command line; `yes` skips the confirmation; `stdin` reads the password or value
    from standard input even from a terminal.
    """

    command: str
    action: str
    config: str
    instance: str | None = None
    name: str | None = None
    value: str | None = None
    yes: bool = False
    stdin: bool = False


@final
@attrs.frozen(kw_only=True)
class Console:
    """Where a command reads passwords, values and answers, and writes its lines.

    `interactive` says whether `stdin` is a terminal: passwords are then asked for with
    `getpass` (without echo) and removals confirmed.
    """

    stdin: BinaryIO
    out: TextIO
    err: TextIO
    interactive: bool


def run(request: Request, console: Console) -> int:
    """Run `request`; returns its exit code (listed by `mailmodule creds --help`).

    Never raises for bad input, a bad configuration or a failing storage: each is one
    line on `console.err` naming what was wrong (never a password or a stored value).
    """
    try:
        return _COMMANDS[request.command](request, console)
    except _Failure as exc:
        code, message = exc.exit_code, exc.message
    except KeyboardInterrupt:
        code, message = EX_INTERRUPTED, "interrupted"
    except ConfigError as exc:
        code, message = EX_CONFIG, f"configuration error: {exc}"
    except MailModuleError as exc:
        code, message = _exit_code(exc), str(exc)
    one_line = " ".join(message.splitlines())
    _say(console.err, f"mailmodule: {request.command} {request.action}: {one_line}")
    return code


def _exit_code(exc: MailModuleError) -> int:
    if isinstance(exc, DataError | ValueError):  # InvalidNameError is a ValueError
        return EX_DATAERR
    if isinstance(exc, NoSuchMailboxError | UnknownCredentialsError):
        return EX_NOUSER
    if isinstance(exc, MailboxExistsError):
        return EX_CANTCREAT
    if isinstance(exc, StorageError):
        return EX_TEMPFAIL
    return EX_SOFTWARE


def _say(stream: TextIO, text: str) -> None:
    """Write one line; characters the stream cannot encode are written escaped."""
    line = text + "\n"
    try:
        stream.write(line)
    except UnicodeEncodeError:
        encoding = stream.encoding or "ascii"
        stream.write(line.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


# Input


def _check_user(name: str | None) -> str:
    """`name` if it can be a user name: one line of printable text.

    Raises:
        _Failure: EX_DATAERR when it is empty, has surrounding white space, a control,
            format or unassigned character, a line separator, a lone surrogate (bytes of
            the command line that are not UTF-8), or is longer than 255 bytes in UTF-8.
    """
    if not name:
        raise _Failure(EX_DATAERR, "a user name cannot be empty")
    for char in name:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            what = (
                "bytes that are not UTF-8"
                if unicodedata.category(char) == "Cs"
                else f"the character U+{ord(char):04X}"
            )
            raise _Failure(EX_DATAERR, f"user name {name!r} holds {what}")
    if name != name.strip():
        raise _Failure(EX_DATAERR, f"user name {name!r} has surrounding white space")
    if len(name.encode("utf-8")) > _MAX_USER_BYTES:
        raise _Failure(
            EX_DATAERR, f"user name {name[:40]!r}... is longer than {_MAX_USER_BYTES} bytes"
        )
    return name


def _check_text(what: str, text: str) -> str:
    """`text` if it has a UTF-8 form (command line bytes that are not UTF-8 come as lone
    surrogates); the table decides what else it can keep.

    Raises:
        _Failure: EX_DATAERR naming `what`, never quoting the text.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Failure(EX_DATAERR, f"the {what} is not UTF-8 (at character {exc.start})") from None
    return text


def _read_stdin(console: Console, what: str, limit: int, *, crlf: bool = False) -> str:
    """All of standard input, as UTF-8 text, without one final "\\n" (with `crlf`, a
    final "\\r\\n" too: a value may end in "\\r", a password may not).

    Raises:
        _Failure: EX_NOINPUT when it is empty; EX_DATAERR when it is longer than `limit`
            bytes or not UTF-8.
    """
    data = console.stdin.read(limit + 3)
    if len(data) > limit + 2:
        raise _Failure(EX_DATAERR, f"the {what} on standard input is longer than {limit} bytes")
    data = data.removesuffix(b"\n")
    if crlf:
        data = data.removesuffix(b"\r")
    if not data:
        raise _Failure(EX_NOINPUT, f"no {what} on standard input")
    if len(data) > limit:
        raise _Failure(EX_DATAERR, f"the {what} on standard input is longer than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Failure(
            EX_DATAERR, f"the {what} on standard input is not UTF-8 (at byte {exc.start})"
        ) from None


def _password(request: Request, console: Console) -> str:
    """The new password: from standard input (`--stdin`, or when it is no terminal), else
    asked twice on the terminal without echo.

    Raises:
        _Failure: EX_NOINPUT for none; EX_DATAERR when the two differ or it has a line
            break or NUL (AUTH PLAIN separates its fields with NUL), or is too long.
    """
    if request.stdin or not console.interactive:
        password = _read_stdin(console, "password", _MAX_PASSWORD_BYTES, crlf=True)
    else:
        try:
            password = getpass.getpass("New password: ")
            again = getpass.getpass("Once more: ")
        except EOFError:
            raise _Failure(EX_NOINPUT, "no password given") from None
        if password != again:
            raise _Failure(EX_DATAERR, "the two passwords differ: nothing was changed")
        if not password:
            raise _Failure(EX_NOINPUT, "no password given")
        if len(_check_text("password", password).encode("utf-8")) > _MAX_PASSWORD_BYTES:
            raise _Failure(EX_DATAERR, f"the password is longer than {_MAX_PASSWORD_BYTES} bytes")
    if any(c in password for c in "\r\n\0"):
        raise _Failure(EX_DATAERR, "a password cannot hold a line break or NUL")
    return password


def _confirm(request: Request, console: Console, question: str) -> None:
    """Ask `question` on the terminal unless `--yes` was given.

    Raises:
        _Failure: EX_USAGE when standard input is no terminal and there is no `--yes`;
            EX_REFUSED unless the answer is "y" or "yes".
    """
    if request.yes:
        return
    if not console.interactive:
        raise _Failure(
            EX_USAGE, "standard input is not a terminal to confirm on: give --yes to go ahead"
        )
    console.err.write(f"{question} [y/N] ")
    console.err.flush()
    answer = console.stdin.readline(64).decode("utf-8", "replace").strip().lower()
    if answer not in ("y", "yes"):
        raise _Failure(EX_REFUSED, "cancelled: nothing was changed")


# Instances


def _offers(factory: object, interface: type) -> bool:
    """Whether the instances `factory` builds implement `interface`, as far as it shows
    before any is initialized (a factory that is no class does not show it)."""
    return isinstance(factory, type) and not missing_methods(factory, interface)


def _implements(module: object, interface: type) -> bool:
    return isinstance(module, interface) and not missing_methods(module, interface)


def _open(request: Request, interface: type) -> tuple[Server, Module]:
    """The configuration's server, and its instance `request.instance` (else its only
    instance implementing `interface`), initialized with the instances it refers to.

    Raises:
        ConfigError: the file, or the instances needed, are misconfigured.
        _Failure: EX_USAGE for an unknown instance, or several candidates and no
            `--instance`; EX_CONFIG when no instance is a candidate; EX_UNAVAILABLE when
            the instance does not implement `interface`.
    """
    from mailmodule.server import Server

    server = Server.from_file(request.config)
    kinds = server.register_modules()
    candidates = [
        name for name, kind in kinds.items() if _offers(server.registry.get(kind), interface)
    ]
    kind = interface.__name__
    listed = ", ".join(candidates) or "none"
    name = request.instance
    if name is None:
        if not candidates:
            raise _Failure(
                EX_CONFIG,
                f"{request.config}: no instance in [modules] is a {kind} "
                f"(such as {_EXAMPLES[interface]})",
            )
        if len(candidates) > 1:
            raise _Failure(
                EX_USAGE, f"several instances are a {kind} ({listed}): choose one with --instance"
            )
        name = candidates[0]
    elif name not in kinds:
        raise _Failure(
            EX_USAGE,
            f"{request.config}: no instance {name!r} in [modules] (those of type {kind}: {listed})",
        )
    try:
        module = server.instance(name)
        if not _implements(module, interface):
            raise _Failure(
                EX_UNAVAILABLE,
                f"instance {name!r} ({kinds[name]}) is not a {kind}: it cannot do that",
            )
    except BaseException:
        server.registry.close_all()
        raise
    return server, module


def _using(
    request: Request,
    interface: type,
    narrow: Callable[[object], _T | None],
    work: Callable[[_T], int],
) -> int:
    """`work(instance)` over the instance `_open` finds (`narrow` gives it its type, as
    `isinstance` over `interface`), closed afterwards."""
    server, module = _open(request, interface)
    try:
        typed = narrow(module)
        if typed is None:  # _open checked it
            raise _Failure(EX_UNAVAILABLE, f"not a {interface.__name__}")
        return work(typed)
    finally:
        server.registry.close_all()


def _user_db(module: object) -> PlainUserDB | None:
    return module if isinstance(module, PlainUserDB) else None


def _lookup_table(module: object) -> Table | None:
    return module if isinstance(module, Table) else None


def _mutable_table(module: object) -> MutableTable | None:
    return module if isinstance(module, MutableTable) else None


def _storage(module: object) -> ManageableStorage | None:
    return module if isinstance(module, ManageableStorage) else None


_EXAMPLES: Final[dict[type, str]] = {
    PlainUserDB: "auth.pass_table",
    ManageableStorage: "storage.maildir",
    Table: "table.file",
    MutableTable: "table.file or table.sql",
}


def _lines(console: Console, items: Sequence[str]) -> int:
    for item in items:
        _say(console.out, item)
    return 0


# creds


def _creds(request: Request, console: Console) -> int:
    if request.action == "list":
        return _using(request, PlainUserDB, _user_db, lambda db: _lines(console, db.list_users()))
    user = _check_user(request.name)
    if request.action == "remove":

        def remove(db: PlainUserDB) -> int:
            if user not in db.list_users():
                raise _Failure(EX_NOUSER, f"no such user: {user!r}")
            _confirm(request, console, f"Remove the user {user!r} and their password?")
            db.delete_user(user)
            return 0

        return _using(request, PlainUserDB, _user_db, remove)

    def change(db: PlainUserDB) -> int:
        # Said before the password is asked for, where the database can list its users
        # (a table.sql without a `list` query cannot: then after).
        try:
            known = user in db.list_users()
        except ConfigError:
            known = None
        if known and request.action == "create":
            raise _Failure(EX_CANTCREAT, f"user {user!r} already exists")
        if known is False and request.action == "password":
            raise _Failure(EX_NOUSER, f"no such user: {user!r}")
        password = _password(request, console)
        if request.action == "create":
            try:
                db.create_user(user, password)
            except UnknownCredentialsError:
                raise
            except AuthError as exc:  # the user database's "exists already"
                raise _Failure(EX_CANTCREAT, str(exc)) from exc
        else:
            db.set_user_password(user, password)
        return 0

    return _using(request, PlainUserDB, _user_db, change)


# table


def _table(request: Request, console: Console) -> int:
    name = request.instance or ""
    if request.action == "list":
        return _using(
            request,
            MutableTable,
            _mutable_table,
            lambda table: _lines(console, table.keys()),
        )
    key = _check_text("key", request.name or "")
    if request.action == "get":

        def get(table: Table) -> int:
            if isinstance(table, MultiTable):
                values = asyncio.run(table.lookup_multi(key))
            else:
                value = asyncio.run(table.lookup(key))
                values = [] if value is None else [value]
            if not values:
                raise _Failure(EX_NOUSER, f"no key {key!r} in table {name!r}")
            return _lines(console, [_shown(value) for value in values])

        return _using(request, Table, _lookup_table, get)
    if request.action == "remove":

        def remove(table: MutableTable) -> int:
            if asyncio.run(table.lookup(key)) is None:
                raise _Failure(EX_NOUSER, f"no key {key!r} in table {name!r}")
            table.remove_key(key)
            return 0

        return _using(request, MutableTable, _mutable_table, remove)
    if request.value is None:
        value = _read_stdin(console, "value", _MAX_VALUE_BYTES)
    else:
        value = _check_text("value", request.value)

    def set_key(table: MutableTable) -> int:
        table.set_key(key, value)
        return 0

    return _using(request, MutableTable, _mutable_table, set_key)


# imap-acct


def _imap_acct(request: Request, console: Console) -> int:
    if request.action == "list":
        return _using(
            request,
            ManageableStorage,
            _storage,
            lambda s: _lines(console, s.list_imap_accts()),
        )
    user = _check_user(request.name)
    if request.action == "create":

        def create(storage: ManageableStorage) -> int:
            storage.create_imap_acct(user)
            return 0

        return _using(request, ManageableStorage, _storage, create)
    if request.action == "remove":

        def remove(storage: ManageableStorage) -> int:
            storage.get_imap_acct(user)  # NoSuchMailboxError before the question
            _confirm(request, console, f"Remove the IMAP account {user!r} with all its mail?")
            storage.delete_imap_acct(user)
            return 0

        return _using(request, ManageableStorage, _storage, remove)

    def mailboxes(storage: ManageableStorage) -> int:
        account = storage.get_imap_acct(user)
        try:
            if not _implements(account, IMAPUser):
                raise _Failure(EX_UNAVAILABLE, "this storage does not list folders")
            infos = asyncio.run(account.list_mailboxes())
        finally:
            account.logout()
        return _lines(console, [info.name for info in infos])

    return _using(request, ManageableStorage, _storage, mailboxes)


def _shown(value: str) -> str:
    return _HIDDEN_HASH if value.startswith(_HASH_PREFIXES) else value


_COMMANDS: Final[dict[str, Callable[[Request, Console], int]]] = {
    "creds": _creds,
    "table": _table,
    "imap-acct": _imap_acct,
}
