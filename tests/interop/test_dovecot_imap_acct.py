"""`mailmodule imap-acct` and Dovecot (Debian's dovecot-imapd) on one Maildir++ tree: an
account the command creates is Dovecot's to serve, and the folders a mail client creates
through Dovecot are the ones `imap-acct mboxes` lists."""

from __future__ import annotations

import imaplib
import subprocess
import sys
from pathlib import Path

from tests.interop.test_dovecot_imap import (
    PASSWORD,
    dovecot,
    hand_over,
    imap_folders,
    start_dovecot,
    stop,
    tree,
)
from tests.serve_kit import write_config

__all__ = ["dovecot", "tree"]  # the fixtures, used by name

CONFIG = """
[modules.mailboxes]
module = "storage.maildir"
root = "{root}"
"""


def imap_acct(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailmodule", "imap-acct", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dovecot_serves_an_account_imap_acct_created_and_mboxes_lists_its_folders(
    dovecot: str, tree: Path
) -> None:
    config = write_config(tree, CONFIG)
    created = imap_acct(config, "create", "joe")
    assert created.returncode == 0, created.stderr
    hand_over(tree / "mail")
    proc, port = start_dovecot(dovecot, tree)
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        imap.login("joe", PASSWORD)
        for name in ("Sent", "Projects.2026", "Entw&APw-rfe"):  # modified UTF-7: Entwürfe
            typ, said = imap.create(f'"{name}"')
            assert typ == "OK", (name, said)
        seen_by_dovecot = set(imap_folders(imap))
        imap.logout()
    finally:
        stop(proc)
    listed = imap_acct(config, "mboxes", "joe")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["INBOX", "Entwürfe", "Projects", "Projects.2026", "Sent"]
    assert seen_by_dovecot >= {"INBOX", "Sent", "Projects.2026", "Entw&APw-rfe"}
    assert imap_acct(config, "list").stdout == "joe\n"
