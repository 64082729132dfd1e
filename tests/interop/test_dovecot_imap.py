"""Dovecot (Debian's dovecot-imapd) serves over IMAP the Maildir++ tree storage.maildir and
target.maildir write: folders, flags and messages as we wrote them.

Dovecot refuses to touch mail as root (hard-coded), so the tree we write as root is handed
to `nobody` before Dovecot reads it, as a deployment would share one mail user between
mailmodule and Dovecot.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmodule import Header, MemoryBuffer, MsgMetadata
from mailmodule.modules import MaildirStorage, MaildirTarget
from mailmodule.modules.storage import _utf7
from tests.endpoint_kit import free_port
from tests.interop.conftest import require_peer
from tests.modules_kit import build, new_registry

PASSWORD = "secret"
_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) "(?P<delim>.)" "?(?P<name>.*?)"?$')
_FETCH = re.compile(rb"UID (?P<uid>\d+) FLAGS \((?P<flags>[^)]*)\)")

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:{tmp}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {tmp}/passwd
  default_fields = home={tmp}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _message(n: int, subject: str) -> bytes:
    head = f"From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{n}@test>\r\n"
    return f"{head}\r\nBody {n}.\r\n".encode()


@pytest.fixture
def dovecot() -> str:
    path = require_peer("dovecot")
    if os.geteuid() != 0:
        pytest.skip("dovecot needs root to switch to its users and the mail user")
    for user in ("dovecot", "dovenull", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip(f"user {user} missing: install Debian's dovecot-imapd")
    return path


@pytest.fixture
def tree() -> Iterator[Path]:
    """A directory outside pytest's private tmp, which Dovecot's mail user can enter."""
    path = Path(tempfile.mkdtemp(prefix="mailmodule-dovecot-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def deliver(target: MaildirTarget, body: bytes, *, quarantine: bool = False) -> None:
    head, _, text = body.partition(b"\r\n\r\n")
    fields = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n")]
    delivery = await target.start(MsgMetadata(id="m", quarantine=quarantine), "a@example.org")
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(Header([(k, v) for k, v in fields]), MemoryBuffer(text))
    await delivery.commit()


async def write_tree(root: Path) -> MaildirStorage:
    """What mailmodule writes: deliveries, folders created and renamed, flags set."""
    registry = new_registry()
    storage = build(registry, "storage.maildir", "mail", {"root": str(root)})
    assert isinstance(storage, MaildirStorage)
    storage.create_imap_acct("joe")
    target = build(registry, "target.maildir", "local", {"storage": "&mail"})
    assert isinstance(target, MaildirTarget)
    await deliver(target, _message(1, "plain"))
    await deliver(target, _message(2, "spam"), quarantine=True)
    joe = storage.get_imap_acct("joe")
    await joe.create_mailbox("Archive.2024")
    await joe.create_mailbox("Entwürfe")
    await joe.create_mailbox("Old.Child")
    await joe.rename_mailbox("Old", "Projects")
    inbox = await joe.get_mailbox("INBOX")
    await inbox.append_message(_message(3, "answered"), ["\\Seen", "\\Answered"])
    (first,) = [m for m in await inbox.list_messages() if not m.flags]
    await inbox.set_message_flags(first.key, ["\\Flagged"])
    archive = await joe.get_mailbox("Archive.2024")
    await archive.append_message(_message(4, "draft"), ["\\Draft"])
    await archive.append_message(_message(5, "gone"), ["\\Deleted"])
    await archive.expunge()
    child = await joe.get_mailbox("Projects.Child")
    await child.append_message(_message(6, "child"), ["\\Seen", "\\Flagged", "\\Deleted"])
    return storage


async def expected(storage: MaildirStorage) -> dict[str, dict[bytes, frozenset[str]]]:
    """Every folder (by its modified UTF-7 name) -> message -> flags, as we read them."""
    joe = storage.get_imap_acct("joe")
    out: dict[str, dict[bytes, frozenset[str]]] = {}
    for info in await joe.list_mailboxes():
        if "\\Noselect" in info.attributes:
            continue
        box = await joe.get_mailbox(info.name)
        out[_utf7.encode(info.name)] = {
            await box.read_message(m.key): m.flags for m in await box.list_messages()
        }
    return out


def hand_over(root: Path) -> None:
    """Give the tree to the mail user Dovecot reads it as."""
    user = pwd.getpwnam("nobody")
    for directory, dirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in dirs + files)):
            os.lchown(name, user.pw_uid, user.pw_gid)


def start_dovecot(binary: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    user = pwd.getpwnam("nobody")
    (tmp / "passwd").write_text(f"joe:{{PLAIN}}{PASSWORD}::::::\n")
    config = CONFIG.format(tmp=tmp, port=port, uid=user.pw_uid, gid=user.pw_gid)
    return launch(binary, tmp, config, port, b"* OK"), port


def launch(
    binary: str, tmp: Path, config: str, port: int, greeting: bytes
) -> subprocess.Popen[bytes]:
    """Dovecot run with `config` from `tmp` (its run/ and state/ made there), once `port`
    greets with `greeting`; the test fails with Dovecot's log if it does not."""
    conf = tmp / "dovecot.conf"
    conf.write_text(config)
    for sub in ("run", "state"):
        (tmp / sub).mkdir()
    with (tmp / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dovecot exited {proc.returncode}: {log(tmp)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(greeting):
                    return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    pytest.fail(f"dovecot did not listen on {port}: {log(tmp)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop Dovecot: its master shuts its children down; the group is killed if it must."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a child that outlived its master


def log(tmp: Path) -> str:
    parts = [
        p.read_text(errors="replace") for p in (tmp / "dovecot.log", tmp / "stderr") if p.exists()
    ]
    return "\n".join(parts)


def imap_folders(imap: imaplib.IMAP4) -> dict[str, set[str]]:
    typ, lines = imap.list('""', "*")
    assert typ == "OK"
    folders: dict[str, set[str]] = {}
    for line in lines:
        assert isinstance(line, bytes)
        m = _LIST.match(line)
        assert m, line
        assert m["delim"] == b"."
        folders[m["name"].decode()] = set(m["attrs"].decode().split())
    return folders


def imap_messages(imap: imaplib.IMAP4, folder: str) -> dict[bytes, tuple[int, frozenset[str]]]:
    """Message -> (UID, flags) of `folder`, read-only (EXAMINE: Dovecot changes nothing)."""
    typ, count = imap.select(f'"{folder}"', readonly=True)
    assert typ == "OK", (folder, count)
    if count == [b"0"]:
        return {}
    typ, data = imap.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK"
    found: dict[bytes, tuple[int, frozenset[str]]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        m = _FETCH.search(item[0])
        assert m, item[0]
        flags = frozenset(m["flags"].decode().split()) - {"\\Recent"}
        found[item[1]] = (int(m["uid"]), flags)
    return found


def test_dovecot_serves_the_tree_we_write(dovecot: str, tree: Path) -> None:
    storage = asyncio.run(write_tree(tree / "mail"))
    ours = asyncio.run(expected(storage))
    hand_over(tree / "mail")
    proc, port = start_dovecot(dovecot, tree)
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        imap.login("joe", PASSWORD)

        folders = imap_folders(imap)
        assert set(folders) == {
            "INBOX",
            "Archive",
            "Archive.2024",
            "Entw&APw-rfe",
            "Junk",
            "Projects",
            "Projects.Child",
        }
        assert "\\HasChildren" in folders["Archive"]
        assert "\\HasChildren" in folders["Projects"]
        assert "\\HasNoChildren" in folders["Projects.Child"]
        assert set(ours) == set(folders)

        seen = {folder: imap_messages(imap, folder) for folder in folders}
        for folder, messages in ours.items():
            assert {body: flags for body, (_uid, flags) in seen[folder].items()} == messages
        assert seen["INBOX"][_message(1, "plain")][1] == {"\\Flagged"}
        assert seen["INBOX"][_message(3, "answered")][1] == {"\\Seen", "\\Answered"}
        assert set(seen["Junk"]) == {_message(2, "spam")}
        assert [flags for _uid, flags in seen["Archive.2024"].values()] == [{"\\Draft"}]

        # Dovecot has indexed the tree; flags we change now keep the message's UID.
        uid = seen["INBOX"][_message(1, "plain")][0]
        inbox = asyncio.run(storage.get_imap_acct("joe").get_mailbox("INBOX"))
        (key,) = [
            m.key
            for m in asyncio.run(inbox.list_messages())
            if asyncio.run(inbox.read_message(m.key)) == _message(1, "plain")
        ]
        asyncio.run(inbox.set_message_flags(key, ["\\Seen", "\\Deleted"]))
        imap.noop()
        again = imap_messages(imap, "INBOX")
        assert again[_message(1, "plain")] == (uid, frozenset({"\\Seen", "\\Deleted"}))

        imap.logout()
    finally:
        stop(proc)
    expected_warnings = ("Corrected permissions", "Killed with signal 15")  # setup, stop
    problems = [
        line
        for line in log(tree).splitlines()
        if re.search(r"(Error|Fatal|Panic|Warning): ", line)
        and not any(w in line for w in expected_warnings)
    ]
    assert problems == [], log(tree)
