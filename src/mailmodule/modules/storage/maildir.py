"""`storage.maildir`: IMAP accounts as Maildir++ trees, laid out as Dovecot lays them out.

The layout is Dovecot's `mail_location = maildir:<root>/%u`: each user's Maildir is
`<root>/<user>/`; INBOX is that directory's cur/, new/ and tmp/; every other folder is a
`.Name` directory beside them, with its own cur/, new/, tmp/ and a `maildirfolder` file; the
hierarchy separator is "." (`Parent.Child` lives in `.Parent.Child`) and names are written
in modified UTF-7 (RFC 3501 5.1.3). Flags are the Maildir info suffix `:2,` with the letters
D F P R S T in ASCII order. Dovecot's own files (`dovecot-uidlist`, `dovecot-keywords`,
indexes) are never read or written: Dovecot rescans what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Final, TypeVar, final

from mailmodule._fsutil import fsync_dir
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import (
    ConfigError,
    InvalidNameError,
    MailboxExistsError,
    NoSuchMailboxError,
    StorageError,
    UnsafePathError,
)
from mailmodule.interfaces import MailboxInfo, MessageInfo
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.storage import _utf7

__all__ = [
    "DELIMITER",
    "INBOX",
    "MaildirMailbox",
    "MaildirStorage",
    "MaildirUser",
    "check_folder_name",
    "check_username",
    "flags_of_info",
    "info_of_flags",
    "unique_name",
]

_log = logging.getLogger("mailmodule.modules.storage.maildir")
_T = TypeVar("_T")

#: The hierarchy separator, in IMAP names and in Maildir++ directory names alike.
DELIMITER: Final = "."
#: The inbox's IMAP name; any case names it.
INBOX: Final = "INBOX"

_SUBDIRS: Final = ("cur", "new", "tmp")
_MAX_NAME_BYTES: Final = 255
# Maildir info letters of the IMAP system flags; P (passed) has no IMAP flag and is kept.
_LETTERS: Final = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}
_FLAGS: Final = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
# Entries of our own making that are never users or folders: they begin with "..".
_TRASH_PREFIX: Final = "..mailmodule-trash-"
_counter = itertools.count()


def unique_name() -> str:
    """A Maildir unique name for a new message: `time.MusecPpidQn.host`."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{host}"


def _bad_char(name: str) -> str | None:
    for char in name:
        code = ord(char)
        if char == "\0":
            return "it contains NUL"
        if char == "/":
            return 'it contains "/"'
        if code < 0x20 or 0x7F <= code < 0xA0:
            return f"it contains the control character {char!r}"
        if 0xD800 <= code < 0xE000:
            return "it contains a lone surrogate"
    return None


def check_username(name: object) -> str:
    """`name` if it can be a user of a Maildir storage: one safe directory name.

    A user name is kept exactly as given (no case folding, no normalization), so what is
    accepted round-trips through `list_imap_accts`.

    Raises:
        InvalidNameError: `name` is not a str, is empty, begins with ".", contains "/",
            NUL or a control character, or is longer than 255 bytes in UTF-8.
    """
    if not isinstance(name, str):
        raise InvalidNameError("user", repr(name), f"expected a str, got {type(name).__name__}")
    reason = _bad_char(name)
    if not name:
        reason = "it is empty"
    elif name.startswith("."):
        reason = 'it begins with "."'
    elif reason is None and len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        reason = f"it is longer than {_MAX_NAME_BYTES} bytes"
    if reason is not None:
        raise InvalidNameError("user", name, reason)
    return name


def check_folder_name(name: object) -> str:
    """The Maildir++ directory of the folder `name`: "" for INBOX, else ".<name>" encoded.

    Raises:
        InvalidNameError: `name` is not a str, is empty, contains "/", NUL, a control
            character or an IMAP wildcard ("%", "*"), begins or ends with "." or has an
            empty level (".."), is below INBOX, or is too long for a directory name.
    """
    if not isinstance(name, str):
        raise InvalidNameError("folder", repr(name), f"expected a str, got {type(name).__name__}")
    if name.upper() == INBOX:
        return ""
    reason = _bad_char(name)
    levels = name.split(DELIMITER)
    if not name:
        reason = "it is empty"
    elif reason is not None:
        pass
    elif "%" in name or "*" in name:
        reason = "it contains an IMAP wildcard"
    elif name.startswith(DELIMITER):
        reason = f'it begins with "{DELIMITER}"'
    elif "" in levels:
        reason = f'it has an empty level ("{DELIMITER}{DELIMITER}" or a trailing "{DELIMITER}")'
    elif levels[0].upper() == INBOX:
        reason = "folders below INBOX are not supported"
    if reason is not None:
        raise InvalidNameError("folder", name, reason)
    dirname = DELIMITER + _utf7.encode(name)
    if len(dirname.encode("ascii")) > _MAX_NAME_BYTES:
        raise InvalidNameError("folder", name, "it is too long for a directory name")
    return dirname


def _folder_of_dir(dirname: str) -> str | None:
    """The IMAP name of a `.Name` directory, or None when it is no folder of ours."""
    try:
        name = _utf7.decode(dirname[1:])
        if check_folder_name(name) != dirname:
            return None
    except (ValueError, InvalidNameError):
        return None
    return name


def info_of_flags(flags: Iterable[str]) -> str:
    """The Maildir info letters for IMAP system flags, in ASCII order ("" for none).

    Raises:
        InvalidNameError: a flag is not one of "\\Seen", "\\Answered", "\\Flagged",
            "\\Deleted", "\\Draft" (IMAP flags are case-insensitive).
    """
    letters: set[str] = set()
    for flag in flags:
        letter = _LETTERS.get(flag.lower()) if isinstance(flag, str) else None
        if letter is None:
            raise InvalidNameError(
                "flag", str(flag), "only the IMAP system flags can be kept in a Maildir"
            )
        letters.add(letter)
    return "".join(sorted(letters))


def flags_of_info(letters: str) -> frozenset[str]:
    """The IMAP system flags of Maildir info letters; other letters are left out."""
    return frozenset(_FLAGS[c] for c in letters if c in _FLAGS)


def _split(filename: str) -> tuple[str, str | None]:
    """A message file's key and info letters (None without a `:2,` suffix)."""
    key, sep, info = filename.partition(":")
    if sep and info.startswith("2,"):
        return key, info[2:]
    return key, None


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidNameError("message", repr(key), f"expected a str, got {type(key).__name__}")
    if (
        not key
        or key.startswith(".")
        or len(key) > _MAX_NAME_BYTES
        or not key.isascii()
        or any(c in key for c in "/:\0")
        or not key.isprintable()
    ):
        raise InvalidNameError("message", key, "not a Maildir unique name")
    return key


def _os_error(exc: OSError, what: str) -> StorageError:
    err = StorageError(f"{what}: {exc.strerror or exc}")
    err.__cause__ = exc
    return err


def _lstat_dir(path: str) -> bool:
    """True when `path` is a directory, False when it is missing.

    Raises:
        UnsafePathError: `path` is a symbolic link or not a directory.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "not a directory")
    return True


def _mkdir(path: str) -> None:
    """Create a directory with mode 0700 whatever the umask (FileExistsError passes)."""
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)


def _make_maildir(path: str, *, folder: bool) -> None:
    """Complete the Maildir at the existing directory `path`: cur/, new/, tmp/ (and the
    `maildirfolder` file of a Maildir++ folder)."""
    for sub in _SUBDIRS:
        sub_path = os.path.join(path, sub)
        with contextlib.suppress(FileExistsError):
            _mkdir(sub_path)
        _lstat_dir(sub_path)
    if folder:
        marker = os.path.join(path, "maildirfolder")
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(marker) from exc
            raise
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _remove_tree(parent: str, entry: str) -> None:
    """Remove `parent/entry` atomically (a rename out of sight), then its contents."""
    trash = os.path.join(parent, _TRASH_PREFIX + secrets.token_hex(8))
    os.rename(os.path.join(parent, entry), trash)
    shutil.rmtree(trash)  # never follows symbolic links


async def _off_loop(func: Callable[[], _T], what: str) -> _T:
    try:
        return await asyncio.to_thread(func)
    except OSError as exc:
        raise _os_error(exc, what) from exc


@final
class MaildirMailbox:
    """One folder of a `MaildirUser`: an `IMAPMailbox` over a Maildir.

    Message keys are Maildir unique names (the file name before ":2,"); `internal_date`
    is the file's modification time, as Dovecot reads it. Letters other than the IMAP
    system flags' (P, Dovecot's keyword letters a-z) are kept on flag changes.
    """

    def __init__(self, name: str, path: str) -> None:
        self._name = name
        self._path = path
        self._folder = name != INBOX

    def __repr__(self) -> str:
        return f"MaildirMailbox({self._name!r}, {self._path!r})"

    @property
    def path(self) -> str:
        """The folder's Maildir: the directory holding cur/, new/ and tmp/."""
        return self._path

    def name(self) -> str:
        return self._name

    def _check(self) -> None:
        if not _lstat_dir(self._path):
            raise NoSuchMailboxError("folder", self._name)
        if not all(_lstat_dir(os.path.join(self._path, sub)) for sub in _SUBDIRS):
            _make_maildir(self._path, folder=self._folder)

    def _entries(self) -> list[tuple[str, str, str | None, os.stat_result]]:
        """(subdir, file name, info letters, stat) of every message file."""
        self._check()
        found: list[tuple[str, str, str | None, os.stat_result]] = []
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(self._path, sub)) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # moved by another program meanwhile
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        _log.warning("skipping %s: not a regular file", entry.path)
                        continue
                    info = None if sub == "new" else _split(entry.name)[1]
                    found.append((sub, entry.name, info, st))
        return found

    def _locate(self, key: str) -> tuple[str, str, str]:
        """(subdir, file name, info letters) of the message `key`."""
        self._check()
        new = os.path.join(self._path, "new", key)
        with contextlib.suppress(FileNotFoundError):
            self._regular(new)
            return "new", key, ""
        with os.scandir(os.path.join(self._path, "cur")) as entries:
            for entry in entries:
                found, info = _split(entry.name)
                if found == key:
                    self._regular(entry.path)
                    return "cur", entry.name, info or ""
        raise NoSuchMailboxError("message", key)

    @staticmethod
    def _regular(path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(path)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(path, "not a regular file")

    def list_messages_sync(self) -> list[MessageInfo]:
        """`list_messages`, blocking."""
        infos = [
            MessageInfo(
                key=_split(filename)[0],
                flags=flags_of_info(info or ""),
                size=st.st_size,
                internal_date=st.st_mtime,
            )
            for _sub, filename, info, st in self._entries()
        ]
        infos.sort(key=lambda m: (m.internal_date, m.key))
        return infos

    async def list_messages(self) -> list[MessageInfo]:
        return await _off_loop(self.list_messages_sync, f"listing {self._name!r}")

    def read_message_sync(self, key: str) -> bytes:
        """`read_message`, blocking."""
        _check_key(key)
        for _attempt in range(3):  # another program may move it from new/ to cur/
            sub, filename, _info = self._locate(key)
            path = os.path.join(self._path, sub, filename)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePathError(path) from exc
                raise
            with os.fdopen(fd, "rb") as file:
                return file.read()
        raise NoSuchMailboxError("message", key)

    async def read_message(self, key: str) -> bytes:
        return await _off_loop(lambda: self.read_message_sync(key), f"reading {key!r}")

    def set_message_flags_sync(self, key: str, flags: Iterable[str]) -> None:
        """`set_message_flags`, blocking."""
        _check_key(key)
        system = info_of_flags(flags)
        for _attempt in range(3):
            sub, filename, info = self._locate(key)
            kept = "".join(c for c in info if c not in _FLAGS)
            letters = "".join(sorted(set(system + kept)))
            if sub == "new" and not letters:
                return
            target = f"{key}:2,{letters}"
            if sub == "cur" and filename == target:
                return
            try:
                os.rename(
                    os.path.join(self._path, sub, filename),
                    os.path.join(self._path, "cur", target),
                )
            except FileNotFoundError:
                continue
            return
        raise NoSuchMailboxError("message", key)

    async def set_message_flags(self, key: str, flags: Iterable[str]) -> None:
        flags = tuple(flags)
        await _off_loop(
            lambda: self.set_message_flags_sync(key, flags), f"setting flags of {key!r}"
        )

    def append_message_sync(
        self, message: bytes, flags: Iterable[str] = (), date: float | None = None
    ) -> str:
        """`append_message`, blocking."""
        letters = info_of_flags(flags)
        self._check()
        key = unique_name()
        tmp = os.path.join(self._path, "tmp", key)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(message)
                out.flush()
                os.fsync(out.fileno())
            if date is not None:
                os.utime(tmp, (date, date))
            sub, filename = ("cur", f"{key}:2,{letters}") if letters else ("new", key)
            os.rename(tmp, os.path.join(self._path, sub, filename))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(os.path.join(self._path, sub))
        return key

    async def append_message(
        self, message: bytes, flags: Iterable[str] = (), date: float | None = None
    ) -> str:
        flags = tuple(flags)
        return await _off_loop(
            lambda: self.append_message_sync(message, flags, date),
            f"appending to {self._name!r}",
        )

    def expunge_sync(self) -> list[str]:
        """`expunge`, blocking."""
        removed: list[str] = []
        for sub, filename, info, _st in self._entries():
            if sub == "cur" and info is not None and "T" in info:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._path, sub, filename))
                    removed.append(_split(filename)[0])
        return removed

    async def expunge(self) -> list[str]:
        return await _off_loop(self.expunge_sync, f"expunging {self._name!r}")


@final
class MaildirUser:
    """One account of a `MaildirStorage`: an `IMAPUser` over a Maildir++ tree.

    INBOX is the Maildir itself; `Parent.Child` is the directory `.Parent.Child`. Deleting
    a folder leaves its children, which then list their parent as "\\Noselect", as
    Dovecot does.
    """

    def __init__(self, username: str, path: str) -> None:
        self._username = username
        self._path = path

    def __repr__(self) -> str:
        return f"MaildirUser({self._username!r}, {self._path!r})"

    @property
    def path(self) -> str:
        """The user's Maildir (INBOX)."""
        return self._path

    def username(self) -> str:
        return self._username

    def logout(self) -> None:
        pass

    def _check(self) -> None:
        if not _lstat_dir(self._path):
            raise NoSuchMailboxError("user", self._username)

    def _folders(self) -> dict[str, str]:
        """Every folder on disk: IMAP name -> directory name. INBOX is not included."""
        self._check()
        folders: dict[str, str] = {}
        with os.scandir(self._path) as entries:
            for entry in entries:
                if not entry.name.startswith(DELIMITER) or entry.name.startswith(".."):
                    continue
                if entry.is_symlink():
                    _log.warning("skipping %s: a symbolic link", entry.path)
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                name = _folder_of_dir(entry.name)
                if name is not None:
                    folders[name] = entry.name
        return folders

    def mailbox_path_sync(self, name: str, *, create: bool = False) -> str:
        """The Maildir of folder `name` (created, with its parents, when `create`).

        Raises:
            InvalidNameError: a refused name.
            NoSuchMailboxError: the folder does not exist and `create` is false.
            UnsafePathError: the folder is a symbolic link.
        """
        dirname = check_folder_name(name)
        self._check()
        path = os.path.join(self._path, dirname) if dirname else self._path
        if not _lstat_dir(path):
            if not create:
                raise NoSuchMailboxError("folder", name)
            self._create(name, exist_ok=True)
        if dirname:
            _lstat_dir(os.path.join(path, "cur"))
        return path

    def get_mailbox_sync(self, name: str) -> MaildirMailbox:
        """`get_mailbox`, blocking."""
        path = self.mailbox_path_sync(name)
        return MaildirMailbox(INBOX if path == self._path else name, path)

    async def get_mailbox(self, name: str) -> MaildirMailbox:
        return await _off_loop(lambda: self.get_mailbox_sync(name), f"opening {name!r}")

    def list_mailboxes_sync(self) -> list[MailboxInfo]:
        """`list_mailboxes`, blocking."""
        real = set(self._folders())
        implicit: set[str] = set()
        for name in real:
            levels = name.split(DELIMITER)
            implicit.update(DELIMITER.join(levels[:i]) for i in range(1, len(levels)))
        implicit -= real
        every = real | implicit
        parents = {n.rsplit(DELIMITER, 1)[0] for n in every if DELIMITER in n}
        infos = [MailboxInfo(name=INBOX, attributes=frozenset({"\\HasNoChildren"}))]
        for name in sorted(every, key=lambda n: n.split(DELIMITER)):
            attrs = {"\\HasChildren" if name in parents else "\\HasNoChildren"}
            if name in implicit:
                attrs.add("\\Noselect")
            infos.append(MailboxInfo(name=name, attributes=frozenset(attrs)))
        return infos

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return await _off_loop(self.list_mailboxes_sync, "listing folders")

    def _create(self, name: str, *, exist_ok: bool) -> None:
        levels = name.split(DELIMITER)
        for depth in range(1, len(levels) + 1):
            level = DELIMITER.join(levels[:depth])
            path = os.path.join(self._path, check_folder_name(level))
            try:
                _mkdir(path)
            except FileExistsError:
                _lstat_dir(path)
                if depth == len(levels) and not exist_ok:
                    raise MailboxExistsError("folder", name) from None
            _make_maildir(path, folder=True)

    def create_mailbox_sync(self, name: str) -> None:
        """`create_mailbox`, blocking."""
        if not check_folder_name(name):
            raise MailboxExistsError("folder", INBOX)
        self._check()
        self._create(name, exist_ok=False)

    async def create_mailbox(self, name: str) -> None:
        await _off_loop(lambda: self.create_mailbox_sync(name), f"creating {name!r}")

    def delete_mailbox_sync(self, name: str) -> None:
        """`delete_mailbox`, blocking."""
        dirname = check_folder_name(name)
        if not dirname:
            raise InvalidNameError("folder", name, "INBOX cannot be deleted")
        self._check()
        if not _lstat_dir(os.path.join(self._path, dirname)):
            raise NoSuchMailboxError("folder", name)
        _remove_tree(self._path, dirname)

    async def delete_mailbox(self, name: str) -> None:
        await _off_loop(lambda: self.delete_mailbox_sync(name), f"deleting {name!r}")

    def rename_mailbox_sync(self, existing_name: str, new_name: str) -> None:
        """`rename_mailbox`, blocking."""
        old_dir = check_folder_name(existing_name)
        new_dir = check_folder_name(new_name)
        if not old_dir:
            raise InvalidNameError("folder", existing_name, "INBOX cannot be renamed")
        if not new_dir:
            raise MailboxExistsError("folder", INBOX)
        if new_name == existing_name or new_name.startswith(existing_name + DELIMITER):
            raise InvalidNameError("folder", new_name, f"it is inside {existing_name!r}")
        folders = self._folders()
        moves = [
            (folders[name], check_folder_name(new_name + name[len(existing_name) :]))
            for name in sorted(folders)
            if name == existing_name or name.startswith(existing_name + DELIMITER)
        ]
        if not moves:
            raise NoSuchMailboxError("folder", existing_name)
        for _src, dst in moves:
            if os.path.lexists(os.path.join(self._path, dst)):
                raise MailboxExistsError("folder", _folder_of_dir(dst) or new_name)
        if DELIMITER in new_name:
            self._create(new_name.rsplit(DELIMITER, 1)[0], exist_ok=True)
        done: list[tuple[str, str]] = []
        try:
            for src, dst in moves:
                os.rename(os.path.join(self._path, src), os.path.join(self._path, dst))
                done.append((src, dst))
        except OSError:
            for src, dst in reversed(done):  # put back what moved: all or nothing
                with contextlib.suppress(OSError):
                    os.rename(os.path.join(self._path, dst), os.path.join(self._path, src))
            raise

    async def rename_mailbox(self, existing_name: str, new_name: str) -> None:
        await _off_loop(
            lambda: self.rename_mailbox_sync(existing_name, new_name),
            f"renaming {existing_name!r}",
        )


_ROOT: Final = Setting.string(
    "root",
    "the directory holding one Maildir++ tree per user, created 0700 if missing",
    "",
    default_doc="required (in code: the first inline argument)",
)


@final
class MaildirStorage(ModuleBase):
    """`storage.maildir`: IMAP accounts as Dovecot-style Maildir++ trees under a root.

    Settings: `root` (or the first inline argument), the directory holding one Maildir
    per user (`<root>/<user>/`), created 0700 when missing. Directories are created 0700
    and files 0600 whatever the umask; symbolic links inside the tree are refused. The
    seed's methods are synchronous and block: call them through `asyncio.to_thread`; the
    accounts' folder methods are async.
    """

    def __init__(
        self,
        mod_name: str = "storage.maildir",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.root = ""

    SETTINGS: ClassVar = (_ROOT,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        root = cfg.value(_ROOT, self.inline_default() or "")
        if not root:
            raise ConfigError("required key is missing", module=cfg.module, key="root")
        try:
            if not os.path.isdir(root):
                os.makedirs(root, mode=0o700)
                os.chmod(root, 0o700)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {root!r}: {exc}", module=cfg.module, key="root"
            ) from exc
        self.root = root

    def _user_path(self, username: str) -> str:
        if not self.root:
            raise StorageError(f"{self.name()} is not initialized")
        return os.path.join(self.root, check_username(username))

    def _translate(self, func: Callable[[], _T], what: str) -> _T:
        try:
            return func()
        except OSError as exc:
            raise _os_error(exc, what) from exc

    def get_imap_acct(self, username: str) -> MaildirUser:
        path = self._user_path(username)
        if not self._translate(lambda: _lstat_dir(path), f"opening user {username!r}"):
            raise NoSuchMailboxError("user", username)
        return MaildirUser(username, path)

    def get_or_create_imap_acct(self, username: str) -> MaildirUser:
        with contextlib.suppress(MailboxExistsError):
            self.create_imap_acct(username)
        return self.get_imap_acct(username)

    def imap_extensions(self) -> list[str]:
        return []

    def list_imap_accts(self) -> list[str]:
        def scan() -> list[str]:
            users: list[str] = []
            with os.scandir(self.root) as entries:
                for entry in entries:
                    if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                        continue
                    with contextlib.suppress(InvalidNameError):
                        users.append(check_username(entry.name))
            return sorted(users)

        if not self.root:
            raise StorageError(f"{self.name()} is not initialized")
        return self._translate(scan, "listing users")

    def create_imap_acct(self, username: str) -> None:
        path = self._user_path(username)

        def create() -> None:
            try:
                _mkdir(path)
            except FileExistsError:
                _lstat_dir(path)
                raise MailboxExistsError("user", username) from None
            _make_maildir(path, folder=False)

        self._translate(create, f"creating user {username!r}")

    def delete_imap_acct(self, username: str) -> None:
        path = self._user_path(username)

        def delete() -> None:
            if not _lstat_dir(path):
                raise NoSuchMailboxError("user", username)
            _remove_tree(self.root, username)

        self._translate(delete, f"deleting user {username!r}")
