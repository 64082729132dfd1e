"""IMAP storage modules: `storage.maildir`, Maildir++ trees as Dovecot lays them out."""

from __future__ import annotations

from mailmodule.modules.storage.maildir import MaildirMailbox as MaildirMailbox
from mailmodule.modules.storage.maildir import MaildirStorage as MaildirStorage
from mailmodule.modules.storage.maildir import MaildirUser as MaildirUser

__all__ = ["MaildirMailbox", "MaildirStorage", "MaildirUser"]
