"""Dovecot's LMTP server (Debian's dovecot-lmtpd) as the upstream of target.lmtp: each
recipient gets Dovecot's own verdict, and the message lands in the mailbox as we sent it.

Dovecot runs as a user-owned instance on a free loopback port in a temporary directory,
as in test_dovecot_imap.py; mail is written as `nobody`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmodule import Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.interfaces import PartialDelivery
from mailmodule.modules import SMTPTarget
from tests.endpoint_kit import free_port
from tests.interop.conftest import require_peer
from tests.interop.test_dovecot_imap import launch, log, stop
from tests.modules_kit import build, new_registry

CONFIG = """\
protocols = lmtp
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = no
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:~/Maildir
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {tmp}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {tmp}/passwd
  default_fields = home={tmp}/mail/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""

HEADER = Header([("From", "a@example.net"), ("To", "joe@example.org"), ("Subject", "LMTP")])
BODY = b"Hello over LMTP.\r\n.a line with a dot\r\n"


@pytest.fixture
def dovecot() -> str:
    path = require_peer("dovecot")
    if not os.access("/usr/lib/dovecot/lmtp", os.X_OK):
        pytest.skip("Dovecot's LMTP server is missing: install dovecot-lmtpd (.ci/install-peers)")
    if os.geteuid() != 0:
        pytest.skip("dovecot needs root to switch to its users and the mail user")
    for user in ("dovecot", "dovenull", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip(f"user {user} missing: install Debian's dovecot-core")
    return path


@pytest.fixture
def tree() -> Iterator[Path]:
    """A directory outside pytest's private tmp, which Dovecot's mail user can enter."""
    path = Path(tempfile.mkdtemp(prefix="mailmodule-lmtp-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_lmtp(binary: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Dovecot serving LMTP for joe and ann, and for `broken`, whose home cannot be made
    (a regular file stands in its path), so that its delivery fails after DATA."""
    port = free_port()
    user = pwd.getpwnam("nobody")
    (tmp / "blocker").write_text("not a directory\n")
    (tmp / "passwd").write_text(f"joe::::::\nann::::::\nbroken:::::{tmp}/blocker/home:\n")
    (tmp / "mail").mkdir()
    os.chown(tmp / "mail", user.pw_uid, user.pw_gid)
    config = CONFIG.format(tmp=tmp, port=port, uid=user.pw_uid, gid=user.pw_gid)
    return launch(binary, tmp, config, port, b"220"), port


class Collector:
    def __init__(self) -> None:
        self.statuses: dict[str, Exception | None] = {}

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses[rcpt_to] = err


async def test_dovecot_lmtp_gives_each_recipient_its_own_outcome(dovecot: str, tree: Path) -> None:
    proc, port = start_lmtp(dovecot, tree)
    try:
        target = build(
            new_registry(),
            "target.lmtp",
            "dovecot",
            {"targets": [f"tcp://127.0.0.1:{port}"], "hostname": "mx.test"},
        )
        assert isinstance(target, SMTPTarget)
        delivery = await target.start(MsgMetadata(id="m1"), "a@example.net")
        await delivery.add_rcpt("joe@example.org")
        with pytest.raises(SMTPError) as unknown:
            await delivery.add_rcpt("nobody-here@example.org")
        await delivery.add_rcpt("broken@example.org")
        await delivery.add_rcpt("ann@example.org")
        assert isinstance(delivery, PartialDelivery)
        collector = Collector()
        await delivery.body_non_atomic(collector, HEADER, MemoryBuffer(BODY))
        await delivery.commit()
        target.close()
    finally:
        stop(proc)

    assert (unknown.value.code, unknown.value.enhanced_code) == (550, (5, 1, 1))
    assert unknown.value.target_name == "target.lmtp"
    assert set(collector.statuses) == {"joe@example.org", "broken@example.org", "ann@example.org"}
    assert collector.statuses["joe@example.org"] is None
    assert collector.statuses["ann@example.org"] is None
    broken = collector.statuses["broken@example.org"]
    assert isinstance(broken, SMTPError), log(tree)
    assert broken.is_temporary  # Dovecot's own 451 for that mailbox alone
    for user in ("joe", "ann"):
        (message,) = (tree / "mail" / user / "Maildir" / "new").iterdir()
        data = message.read_bytes()
        # Dovecot keeps mail with LF line ends; what we sent is there, dot and all.
        unix = data.replace(b"\r\n", b"\n")
        assert unix.endswith(b"\n\n" + BODY.replace(b"\r\n", b"\n"))
        assert b"Subject: LMTP" in data
