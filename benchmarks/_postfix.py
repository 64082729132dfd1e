"""A real Postfix instance in a temporary directory, for the benchmarks to measure against.

Its own main.cf and master.cf, queue and data directories, listening on a loopback port;
smtpd queues each message (fsynced, as Postfix always does) and virtual(8) delivers it
into a Maildir. Needs root (`postfix -c DIR start` does) and the postfix package
(`bash .ci/install-peers`). `running()` always stops it, even when the caller fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = postfix.bench
mydomain = postfix.bench
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
virtual_mailbox_domains = example.org
virtual_mailbox_base = {base}/mail
virtual_mailbox_maps = static:user/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
biff = no
smtputf8_enable = no
"""

# The daemons this setup needs, none chrooted (the queue is a temporary directory).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -   0  cleanup
qmgr      unix  n  -  n  300 1  qmgr
rewrite   unix  -  -  n  -   -  trivial-rewrite
bounce    unix  -  -  n  -   0  bounce
defer     unix  -  -  n  -   0  bounce
trace     unix  -  -  n  -   0  bounce
verify    unix  -  -  n  -   1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
showq     unix  n  -  n  -   -  showq
error     unix  -  -  n  -   -  error
retry     unix  -  -  n  -   -  error
discard   unix  -  -  n  -   -  discard
virtual   unix  -  n  n  -   -  virtual
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
postlog   unix-dgram n - n - 1 postlogd
"""


def why_not() -> str | None:
    """Why a Postfix instance cannot run here, or None when it can."""
    if shutil.which("postfix") is None and not os.access("/usr/sbin/postfix", os.X_OK):
        return "postfix is not installed (bash .ci/install-peers)"
    if not os.access("/usr/lib/postfix/sbin/master", os.X_OK):
        return "Postfix's daemons are not in /usr/lib/postfix/sbin"
    if os.geteuid() != 0:
        return "starting a Postfix instance needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user"
    return None


def version() -> str:
    """Postfix's version, as `postconf -d mail_version` says it."""
    result = subprocess.run(
        ["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, timeout=60
    )
    return result.stdout.strip() or "(version unknown)"


def _postfix(config: Path, *args: str) -> None:
    """`postfix -c config *args`; RuntimeError with what it logged, if it fails."""
    result = subprocess.run(
        ["postfix", "-c", str(config), *args], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        log = config.parent / "maillog"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        raise RuntimeError(f"postfix {' '.join(args)} failed: {result.stderr.strip()} {tail}")


@contextlib.contextmanager
def running(base: Path, port: int) -> Iterator[Path]:
    """Postfix listening on 127.0.0.1:`port`, all its files under `base`; yields the
    Maildir it delivers to (`base`/mail/user). Stopped on the way out, whatever happens."""
    for directory in (base, *base.parents):
        if directory.exists() and not directory.stat().st_mode & 0o001:
            raise RuntimeError(f"Postfix's daemons (user postfix) cannot enter {directory}")
    nobody = pwd.getpwnam("nobody")
    config = base / "etc"
    for sub in ("etc", "spool", "data", "mail"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.chown(base / "data", pwd.getpwnam("postfix").pw_uid, -1)
    os.chown(base / "mail", nobody.pw_uid, nobody.pw_gid)
    (config / "main.cf").write_text(MAIN_CF.format(base=base, uid=nobody.pw_uid, gid=nobody.pw_gid))
    (config / "master.cf").write_text(MASTER_CF.format(port=port))
    started = False
    try:
        _postfix(config, "set-permissions")
        _postfix(config, "start")
        started = True
        yield base / "mail" / "user"
    finally:
        if started or (base / "spool" / "pid" / "master.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _postfix(config, "stop")
            _wait_stopped(base)


def _wait_stopped(base: Path) -> None:
    """Wait (10 seconds at most) until the instance's master has exited, else kill it."""
    pid_file = base / "spool" / "pid" / "master.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # its daemons exit when their master is gone
