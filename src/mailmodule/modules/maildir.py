"""`target.maildir`: delivery into Maildir mailboxes, readable by `mailbox.Maildir`.

Mailboxes are created only when configured to be (`autocreate`, a `mailboxes` table);
symlinks inside the root are refused, and what holds mail is 0700/0600 whatever the umask.
With a `storage.maildir` (`storage`), mail goes into its users' trees, where an IMAP
filter may choose the folder and flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import ClassVar, Final, final

from mailmodule import address
from mailmodule._fsutil import make_private_dirs, open_private_dir, open_private_file
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import AddressError, ConfigError, InvalidNameError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, IMAPFilter, StatusCollector, Storage, Table
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.imap_filters import run_imap_filters
from mailmodule.modules.storage.maildir import (
    MaildirStorage,
    check_folder_name,
    check_username,
    info_of_flags,
)

__all__ = ["MaildirTarget"]

_log = logging.getLogger("mailmodule.modules.maildir")
_counter = itertools.count()
_COPY_CHUNK = 1 << 16


def _unique_name() -> str:
    """A file name unique to this delivery, in the form the Maildir spec describes."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{host}"


def _safe_mailbox(name: str) -> bool:
    """Whether `name` can be a directory right under the root: one plain UTF-8 file name,
    not hidden, no separators or control characters, at most 255 bytes."""
    if not name or name.startswith(".") or len(name) > 255:
        return False
    try:
        if len(name.encode("utf-8")) > 255:
            return False
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return not any(c in "/\\" or c < " " or c == "\x7f" for c in name)


def _os_error(exc: OSError, what: str) -> SMTPError:
    """The reply for a failed file operation; the client learns no path or mailbox name."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        err = SMTPError(452, (4, 3, 1), "Mail system full")
    else:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _log.error("a symlink or a non-directory in a mailbox path is refused: %s", exc)
        err = SMTPError(451, (4, 3, 0), f"Temporary failure while {what}")
    err.__cause__ = exc
    return err


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


_ROOT: Final = Setting.string(
    "root",
    "the directory holding one Maildir per mailbox",
    "",
    default_doc="required without storage (in code: the first inline argument)",
)
_STORAGE: Final = Setting.module(
    "storage", "a storage.maildir whose users are the mailboxes, instead of root", Storage, None
)
_IMAP_FILTER: Final = Setting.module(
    "imap_filter", "chooses each message's folder and flags (needs storage)", IMAPFilter, None
)
_MAILBOXES: Final = Setting.module(
    "mailboxes",
    "maps a recipient to its mailbox name",
    Table,
    None,
    default_doc="none: the local part is the mailbox",
)
_LOOKUP_BY: Final = Setting.string(
    "lookup_by", "the key given to mailboxes", "local_part", type_doc='"local_part" or "address"'
)
_AUTOCREATE: Final = Setting.boolean(
    "autocreate",
    "create a missing Maildir on first delivery",
    False,
    default_doc="yes with mailboxes, else no",
)
_JUNK_FOLDER: Final = Setting.string(
    "junk_folder", "the Maildir++ folder of quarantined messages", "Junk"
)


@final
class MaildirTarget(ModuleBase):
    """`target.maildir`: delivers each message into the Maildir of each recipient.

    Settings: `root` (or the first inline argument), the directory holding one Maildir per
    mailbox; `mailboxes`, a table mapping a recipient to its mailbox name; `lookup_by`,
    "local_part" (default) or "address", the key given to that table (in
    `address.for_lookup` form, the local part unquoted); `autocreate`, whether a missing
    Maildir is created on first delivery: by default true with a `mailboxes` table (its
    mailboxes are the configured ones) and false without, when only Maildirs that already
    exist under the root receive mail (`autocreate = true` makes every safe local part a
    mailbox, as before); `junk_folder` ("Junk"), the Maildir++ folder for quarantined
    messages.

    `storage`, a reference to a `storage.maildir` instance, replaces `root`: mailboxes are
    its users (user names as it checks them), and folder names are written as it writes
    them (modified UTF-7). `imap_filter`, a reference to an IMAP filter, then chooses per
    mailbox the folder (an existing one; INBOX otherwise) and flags (the IMAP system
    flags are written in the file name, which puts the message in cur/; keywords are
    dropped); quarantined messages go to `junk_folder` unfiltered, as in maddy.

    Without a table the unquoted local part is the mailbox: `"joe"@example.org` goes to
    `joe`. Refused at `add_rcpt`: an unknown recipient or a mailbox that does not exist
    and is not created, 550 5.1.1; a local part that is no safe directory name (a
    separator, NUL or control character, ".", "..", a leading dot, over 255 bytes, not
    UTF-8), 550 5.1.3. A symlink or non-directory anywhere inside the root is never
    followed: directories are opened relative to the root with `O_NOFOLLOW`, and such a
    mailbox fails with 451 4.3.0. Every directory and file this module creates is 0700 or
    0600 whatever the umask (the root's existing parents keep their mode). Replies name no
    path or mailbox.

    `body` writes the message once into tmp/ and links it into the other mailboxes'
    tmp/; `commit` renames each into new/ (fsyncing file and directories); `abort` removes
    them. Deliveries implement `PartialDelivery`: a mailbox that cannot take the message
    fails only its recipients.
    """

    def __init__(
        self,
        mod_name: str = "target.maildir",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.root = ""
        self.mailboxes: Table | None = None
        self.lookup_by = "local_part"
        self.junk_folder = "Junk"
        self.junk_dir = ".Junk"  # the junk folder's directory in a mailbox
        self.autocreate = False
        self.storage: MaildirStorage | None = None
        self.imap_filter: IMAPFilter | None = None

    SETTINGS: ClassVar = (
        _ROOT,
        _STORAGE,
        _MAILBOXES,
        _LOOKUP_BY,
        _AUTOCREATE,
        _JUNK_FOLDER,
        _IMAP_FILTER,
    )

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        storage = cfg.value(_STORAGE)
        if storage is not None and not isinstance(storage, MaildirStorage):
            raise ConfigError(
                "expected a storage.maildir instance", module=cfg.module, key="storage"
            )
        self.storage = storage
        root = cfg.value(_ROOT, self.inline_default() or "")
        if storage is not None:
            if root:
                raise ConfigError("give root or storage, not both", module=cfg.module, key="root")
            root = storage.root
        if not root:
            raise ConfigError("required key is missing", module=cfg.module, key="root")
        found = cfg.value(_IMAP_FILTER)
        self.imap_filter = found if isinstance(found, IMAPFilter) else None
        if self.imap_filter is not None and storage is None:
            raise ConfigError(
                "an IMAP filter needs a storage", module=cfg.module, key="imap_filter"
            )
        ref = cfg.value(_MAILBOXES)
        self.mailboxes = ref if isinstance(ref, Table) else None
        self.lookup_by = cfg.value(_LOOKUP_BY)
        if self.lookup_by not in ("local_part", "address"):
            raise ConfigError(
                f"expected local_part or address, got {self.lookup_by!r}",
                module=cfg.module,
                key="lookup_by",
            )
        self.autocreate = cfg.value(_AUTOCREATE, self.mailboxes is not None)
        self.junk_folder = cfg.value(_JUNK_FOLDER)
        if not _safe_mailbox(self.junk_folder):
            raise ConfigError(
                f"expected a plain folder name, got {self.junk_folder!r}",
                module=cfg.module,
                key="junk_folder",
            )
        self.junk_dir = f".{self.junk_folder}"
        if storage is not None:
            try:
                self.junk_dir = check_folder_name(self.junk_folder) or self.junk_dir
            except InvalidNameError as exc:
                raise ConfigError(str(exc), module=cfg.module, key="junk_folder") from exc
        try:
            make_private_dirs(root)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {root!r}: {exc}", module=cfg.module, key="root"
            ) from exc
        self.root = os.path.realpath(root)

    def _open_root(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _has_mailbox(self, mailbox: str, folder_dir: str | None = None) -> bool:
        """Whether the mailbox's directory (or its folder `folder_dir`) exists; an error
        for a symlink in its place.

        Raises:
            OSError: ENOTDIR or ELOOP for a symlink or a non-directory.
        """
        opened = [self._open_root()]
        try:
            opened.append(open_private_dir(mailbox, opened[0], create=False))
            if folder_dir is not None:
                opened.append(open_private_dir(folder_dir, opened[1], create=False))
        except FileNotFoundError:
            return False
        finally:
            _close_all(opened)
        return True

    def _safe_user(self, name: str) -> bool:
        if not _safe_mailbox(name):
            return False
        if self.storage is None:
            return True
        try:
            check_username(name)
        except InvalidNameError:
            return False
        return True

    async def mailbox_of(self, rcpt: str) -> str | None:
        """The mailbox a recipient's mail goes to, or None when there is none.

        Raises:
            SMTPError: 550 5.1.3 when, without a table, the local part is no safe
                directory name.
        """
        try:
            local, domain = address.split(address.for_lookup(rcpt))
        except AddressError:
            return None
        try:
            local = address.unquote_local_part(local)  # `"joe"` is joe
        except AddressError:
            local = ""
        if self.mailboxes is None:
            if not self._safe_user(local):
                raise SMTPError(
                    550,
                    (5, 1, 3),
                    "Bad destination mailbox address syntax",
                    target_name=self.name(),
                )
            return local
        if not local:
            return None
        key = f"{local}@{domain}" if self.lookup_by == "address" and domain else local
        found = await self.mailboxes.lookup(key)
        if found is None:
            return None
        if not self._safe_user(found):
            _log.error("mailbox name %r for %r is not a safe directory name", found, rcpt)
            return None
        return found

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return _MaildirDelivery(self, msg_meta)


@final
class _MaildirDelivery:
    def __init__(self, target: MaildirTarget, meta: MsgMetadata) -> None:
        self._t = target
        self._meta = meta
        self._rcpts: dict[str, list[str]] = {}  # mailbox -> recipients
        # mailbox -> fds of its tmp/ and of new/ (or cur/), and the name the file gets there
        self._staged: dict[str, tuple[int, int, str]] = {}
        self._name = _unique_name()
        self._state = "open"

    async def add_rcpt(self, rcpt_to: str) -> None:
        mailbox = await self._t.mailbox_of(rcpt_to)
        if mailbox is None:
            raise SMTPError(550, (5, 1, 1), "No such mailbox here", target_name=self._t.name())
        if mailbox not in self._rcpts and not self._t.autocreate:
            try:
                known = await asyncio.to_thread(self._t._has_mailbox, mailbox)
            except OSError as exc:
                raise _os_error(exc, "looking up the mailbox") from exc
            if not known:
                raise SMTPError(550, (5, 1, 1), "No such mailbox here", target_name=self._t.name())
        rcpts = self._rcpts.setdefault(mailbox, [])
        if rcpt_to not in rcpts:
            rcpts.append(rcpt_to)

    async def body(self, header: Header, body: Buffer) -> None:
        failures = await asyncio.to_thread(self._stage_all, header, body)
        if failures:
            await self.abort()
            self._state = "failed"
            raise next(iter(failures.values()))
        self._state = "staged"

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        failures = await asyncio.to_thread(self._stage_all, header, body)
        for mailbox, err in failures.items():
            for rcpt in self._rcpts[mailbox]:
                c.set_status(rcpt, err)
        self._state = "staged" if self._staged else "failed"

    def _destination(self, mailbox: str, header: Header, body: Buffer) -> tuple[str | None, str]:
        """The folder directory the mailbox's copy goes to (None: the mailbox itself, INBOX)
        and its Maildir info letters: the junk folder, or what the IMAP filter chose.

        Raises:
            OSError: a symlink or non-directory where the chosen folder should be.
        """
        if self._meta.quarantine:
            return self._t.junk_dir, ""
        if self._t.imap_filter is None:
            return None, ""
        folder, flags = run_imap_filters(
            [self._t.imap_filter], mailbox, self._rcpts[mailbox][0], self._meta, header, body
        )
        letters: set[str] = set()
        for flag in flags:
            try:
                letters.update(info_of_flags([flag]))
            except InvalidNameError:
                _log.info("msg %s: flag %r is not kept in a Maildir", self._meta.id, flag)
        info = "".join(sorted(letters))
        if not folder:
            return None, info
        try:
            folder_dir = check_folder_name(folder) or None
        except InvalidNameError as exc:
            _log.warning("msg %s: IMAP filter chose %s; delivering to INBOX", self._meta.id, exc)
            return None, info
        if folder_dir is not None and not self._t._has_mailbox(mailbox, folder_dir):
            _log.warning(
                "msg %s: IMAP filter chose folder %r, which does not exist; delivering to INBOX",
                self._meta.id,
                folder,
            )
            return None, info
        return folder_dir, info

    def _open_folder(self, mailbox: str, folder_dir: str | None, info: str) -> tuple[int, int]:
        """Open (creating as allowed) the tmp/ and new/ (cur/ with `info`) the message goes
        to, in the mailbox or its folder `folder_dir`, never following a symlink below the
        root.

        Raises:
            OSError: a directory is missing and not to be created, is a symlink or is no
                directory, or cannot be made.
        """
        opened: list[int] = []
        try:
            root = self._t._open_root()
            opened.append(root)
            folder = open_private_dir(mailbox, root, create=self._t.autocreate)
            opened.append(folder)
            if folder_dir is not None:  # a Maildir++ folder inside the mailbox
                for sub in ("cur", "new", "tmp"):  # the mailbox stays a Maildir
                    os.close(open_private_dir(sub, folder, create=True))
                folder = open_private_dir(folder_dir, folder, create=True)
                opened.append(folder)
                with contextlib.suppress(FileExistsError):
                    os.close(open_private_file("maildirfolder", folder))
            cur = open_private_dir("cur", folder, create=True)
            opened.append(cur)
            tmp = open_private_dir("tmp", folder, create=True)
            opened.append(tmp)
            new = open_private_dir("new", folder, create=True)
            opened.append(new)
        except BaseException:
            _close_all(opened)
            raise
        dest = cur if info else new
        opened.remove(tmp)
        opened.remove(dest)
        _close_all(opened)
        return tmp, dest

    def _stage_all(self, header: Header, body: Buffer) -> dict[str, SMTPError]:
        """Write once, link into each other mailbox's tmp/; returns failures by mailbox."""
        if self._state != "open":
            raise SMTPError(503, (5, 5, 1), "Bad sequence of commands: a second body")
        failures: dict[str, SMTPError] = {}
        first: int | None = None  # the tmp/ holding the written copy
        for mailbox in self._rcpts:
            fds: tuple[int, int] | None = None
            try:
                folder_dir, info = self._destination(mailbox, header, body)
                fds = self._open_folder(mailbox, folder_dir, info)
                if first is None:
                    self._write(fds[0], header, body)
                    first = fds[0]
                else:
                    os.link(
                        self._name,
                        self._name,
                        src_dir_fd=first,
                        dst_dir_fd=fds[0],
                        follow_symlinks=False,
                    )
            except OSError as exc:
                if fds is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(self._name, dir_fd=fds[0])
                    _close_all(fds)
                failures[mailbox] = _os_error(exc, "writing the message")
                _log.warning("msg %s: mailbox %r failed: %s", self._meta.id, mailbox, exc)
                continue
            dest_name = f"{self._name}:2,{info}" if info else self._name
            self._staged[mailbox] = (fds[0], fds[1], dest_name)
        return failures

    def _write(self, tmp_dir: int, header: Header, body: Buffer) -> None:
        fd = open_private_file(self._name, tmp_dir)
        with os.fdopen(fd, "wb") as out, body.open() as reader:
            header.write_to(out)
            while chunk := reader.read(_COPY_CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())

    async def commit(self) -> None:
        if self._state != "staged":
            raise SMTPError(503, (5, 5, 1), "Bad sequence of commands: commit without a body")
        self._state = "done"
        await asyncio.to_thread(self._publish)

    def _publish(self) -> None:
        errors: list[OSError] = []
        staged, self._staged = self._staged, {}
        for tmp, dest, dest_name in staged.values():
            try:
                os.rename(self._name, dest_name, src_dir_fd=tmp, dst_dir_fd=dest)
                os.fsync(dest)
            except OSError as exc:
                errors.append(exc)
            finally:
                _close_all((tmp, dest))
        if errors:
            raise _os_error(errors[0], "moving the message into new/")

    async def abort(self) -> None:
        self._state = "done"
        staged, self._staged = self._staged, {}

        def remove() -> None:
            for tmp, dest, _name in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._name, dir_fd=tmp)
                _close_all((tmp, dest))

        await asyncio.to_thread(remove)
