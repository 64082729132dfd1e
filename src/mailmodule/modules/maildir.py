"""`target.maildir`: delivery into Maildir mailboxes, readable by `mailbox.Maildir`."""

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
from typing import final

from mailmodule import address
from mailmodule._fsutil import fsync_dir
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import Delivery, StatusCollector, Table
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

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
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def _os_error(exc: OSError, what: str) -> SMTPError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        err = SMTPError(452, (4, 3, 1), "Mail system full")
    else:
        err = SMTPError(451, (4, 3, 0), f"Temporary failure while {what}")
    err.__cause__ = exc
    return err


def _ensure_maildir(path: str, known: set[str]) -> None:
    if path in known:
        return
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    known.add(path)


@final
class MaildirTarget(ModuleBase):
    """`target.maildir`: delivers each message into the Maildir of each recipient.

    Settings: `root` (or the first inline argument), the directory holding one Maildir per
    mailbox; `mailboxes`, a table mapping a recipient to its mailbox name (without it, the
    local part is the mailbox); `lookup_by`, "local_part" (default) or "address", the key
    given to that table (in `address.for_lookup` form); `junk_folder` ("Junk"), the
    Maildir++ folder for quarantined messages.

    `body` writes the message once into tmp/ and links it into the other mailboxes'
    tmp/; `commit` renames each into new/ (fsyncing file and directories); `abort` removes
    them. Unknown recipients are refused at `add_rcpt` with 550 5.1.1. Deliveries
    implement `PartialDelivery`: a mailbox that cannot take the message fails only its
    recipients.
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
        self.known_dirs: set[str] = set()  # Maildirs known to exist: no mkdir per message

    def init(self, cfg: ConfigMap) -> None:
        root = cfg.string("root", self.inline_args[0] if self.inline_args else "")
        if not root:
            raise ConfigError("required key is missing", module=cfg.module, key="root")
        ref = cfg.module_ref("mailboxes", Table, None)
        self.mailboxes = ref if isinstance(ref, Table) else None
        self.lookup_by = cfg.string("lookup_by", "local_part")
        if self.lookup_by not in ("local_part", "address"):
            raise ConfigError(
                f"expected local_part or address, got {self.lookup_by!r}",
                module=cfg.module,
                key="lookup_by",
            )
        self.junk_folder = cfg.string("junk_folder", "Junk")
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {root!r}: {exc}", module=cfg.module, key="root"
            ) from (exc)
        self.root = root

    async def mailbox_of(self, rcpt: str) -> str | None:
        """The mailbox a recipient's mail goes to, or None when there is none."""
        try:
            key = address.for_lookup(rcpt)
        except AddressError:
            return None
        local = address.split(key)[0]
        if self.mailboxes is None:
            return local if _safe_mailbox(local) else None
        found = await self.mailboxes.lookup(key if self.lookup_by == "address" else local)
        if found is None:
            return None
        if not _safe_mailbox(found):
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
        self._staged: dict[str, str] = {}  # mailbox -> its file in tmp/
        self._name = _unique_name()
        self._state = "open"

    def _folder(self, mailbox: str) -> str:
        path = os.path.join(self._t.root, mailbox)
        if self._meta.quarantine:
            path = os.path.join(path, f".{self._t.junk_folder}")
        return path

    async def add_rcpt(self, rcpt_to: str) -> None:
        mailbox = await self._t.mailbox_of(rcpt_to)
        if mailbox is None:
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

    def _stage_all(self, header: Header, body: Buffer) -> dict[str, SMTPError]:
        """Write once, link into each other mailbox's tmp/; returns failures by mailbox."""
        if self._state != "open":
            raise SMTPError(503, (5, 5, 1), "Bad sequence of commands: a second body")
        failures: dict[str, SMTPError] = {}
        first: str | None = None
        for mailbox in self._rcpts:
            folder = self._folder(mailbox)
            tmp = os.path.join(folder, "tmp", self._name)
            try:
                known = self._t.known_dirs
                _ensure_maildir(os.path.join(self._t.root, mailbox), known)
                if folder != os.path.join(self._t.root, mailbox) and folder not in known:
                    _ensure_maildir(folder, known)  # a Maildir++ folder
                    open(os.path.join(folder, "maildirfolder"), "ab").close()
                if first is None:
                    self._write(tmp, header, body)
                    first = tmp
                else:
                    os.link(first, tmp)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                failures[mailbox] = _os_error(exc, f"writing to mailbox {mailbox!r}")
                _log.warning("msg %s: mailbox %r failed: %s", self._meta.id, mailbox, exc)
                continue
            self._staged[mailbox] = tmp
        return failures

    @staticmethod
    def _write(path: str, header: Header, body: Buffer) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
        for mailbox, tmp in self._staged.items():
            folder = self._folder(mailbox)
            try:
                os.rename(tmp, os.path.join(folder, "new", self._name))
                fsync_dir(os.path.join(folder, "new"))
            except OSError as exc:
                errors.append(exc)
        self._staged.clear()
        if errors:
            raise _os_error(errors[0], "moving the message into new/")

    async def abort(self) -> None:
        self._state = "done"
        staged, self._staged = self._staged, {}

        def remove() -> None:
            for tmp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

        await asyncio.to_thread(remove)
