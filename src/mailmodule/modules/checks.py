"""`check.command`, `check.authorize_sender` and `check.iprev`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.errors
import email.header
import logging
import os
import re
import shlex
import shutil
import signal
from collections.abc import Awaitable, Mapping, Sequence
from typing import ClassVar, Final, final

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting, describe_value
from mailmodule.dns import (
    DNSPermanentError,
    DNSTemporaryError,
    Resolver,
    default_resolver,
    shared_resolver,
)
from mailmodule.errors import ConfigError, HeaderError, SMTPError
from mailmodule.header import Header, HeaderField
from mailmodule.interfaces import CheckResult, MultiTable, Table
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["AuthorizeSender", "CommandCheck", "IPRevCheck"]

_log = logging.getLogger("mailmodule.modules.checks")
_NOTHING: Final = CheckResult()
_ACTIONS: Final = ("reject", "quarantine", "ignore")
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z0-9_]+)\}")
_PLACEHOLDERS: Final = frozenset(
    {"sender", "rcpts", "msg_id", "auth_user", "remote_ip", "source_ip", "source_host"}
)
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Fields a command may not add: the pipeline strips forged ones before check fields go in.
_TRACE_FIELDS: Final = frozenset(
    {"authentication-results", "received", "return-path", "dkim-signature"}
)
_UNSAFE: Final = "A sender, recipient or client name cannot be passed safely to a content check"
_CHUNK: Final = 64 * 1024
# From and Sender fields, strictly (see AuthorizeSender).
_ATEXT: Final = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u00a0-\ufffc"  # UTF-8 allowed (RFC 6532)
_ATOM: Final = re.compile(f"[{_ATEXT}]+")
_DOT_ATOM: Final = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*")
_FOLDING: Final = re.compile(rb"\r?\n(?=[ \t])")
_ENCODED_WORD: Final = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_HIDES_ADDRESS: Final = re.compile(r"[@<>]")
# Controls (a bare CR too), Unicode spaces, invisible and bidi marks, U+FFFD and the like.
_BAD_CHAR: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f"
    "\u205f-\u206f\u3000\ud800-\udfff\ufeff\ufff0-\uffff]"
)
_GRACE: Final = 0.5  # seconds between SIGTERM and SIGKILL at the time limit
_REAP_LIMIT: Final = 5.0

_COMMAND: Final = Setting.raw(
    "command",
    "the program and its arguments, with placeholders such as {sender}",
    "list of strings, or one string split as a shell would (no shell runs)",
    default=None,
    default_doc="required (in code: the inline arguments)",
)
_ENV: Final = Setting.raw(
    "env", "variables added to the program's environment", 'table of NAME = "value"', {}
)
_COMMAND_TIMEOUT: Final = Setting.duration(
    "timeout", "the program's time limit", datetime.timedelta(seconds=30), positive=True
)
_MAX_HEADER_SIZE: Final = Setting.size(
    "max_header_size", "bytes of header fields the program may print", 64 * 1024, minimum=1
)
_CODES: Final = Setting.raw(
    "codes",
    "what each exit code does",
    'table of exit code = "reject", "quarantine" or "ignore"',
    default={"1": "reject", "2": "quarantine"},
)
_USER_TO_EMAIL: Final = Setting.module(
    "user_to_email",
    "the addresses each user may send as",
    Table,
    None,
    default_doc="none: the username itself is the address",
)
_IPREV_TIMEOUT: Final = Setting.duration(
    "timeout", "the forward DNS lookups' time limit", datetime.timedelta(seconds=5), positive=True
)


@final
class CommandCheck(ModuleBase):
    """`check.command`: runs a program with the message on standard input.

    Settings:
        command: the program and its arguments, a list, or a string split as a shell would
            (with `shlex`, before anything is substituted; no shell ever runs). An argument
            that is exactly `{sender}`, `{rcpts}` (space separated, one argument),
            `{msg_id}`, `{auth_user}`, `{remote_ip}` (or `{source_ip}`) or `{source_host}`
            is replaced by that value, as one argument. A known placeholder inside a longer
            argument (`--from={sender}`, `sh -c 'check {sender}'`) is refused at
            configuration: it would reach an option parser or a shell unquoted. A shell
            script takes values as its positional parameters: `sh -c 'check "$1"' sh
            {sender}`. Other braces are passed unchanged.
        env: extra environment variables, a table of strings. The program gets only PATH
            (the server's), LANG=C, LC_ALL=C, the values above as MAILMODULE_SENDER,
            MAILMODULE_RCPTS, MAILMODULE_MSG_ID, MAILMODULE_AUTH_USER,
            MAILMODULE_REMOTE_IP, MAILMODULE_SOURCE_IP and MAILMODULE_SOURCE_HOST, and
            these; no other variable and no other file descriptor of the server.
        timeout: bounds the whole run (default 30s). The program runs in a session and
            process group of its own; at the limit the whole group gets SIGTERM, then
            SIGKILL half a second later, and the program is reaped.
        max_header_size: the most the program may print before the empty line that ends
            its header fields (default 64K).
        codes: maps exit codes to "reject" (550 5.7.1), "quarantine" or "ignore" (default:
            1 rejects, 2 quarantines); 0 passes.

    What the program prints up to the first empty line (or all of it, when there is none)
    is read as header fields by `mailmodule.header` rules, folded lines included, and
    added on top of the message header in its order; what follows the empty line is read
    and discarded. Trace and authentication fields (Received, Return-Path,
    Authentication-Results, DKIM-Signature, ARC-*) are dropped with a warning: they are
    added after the pipeline removes forged ones, so a program could forge them.

    Temporary failures (451 4.7.0, naming the check): the program cannot start, times
    out, exits with a code not in `codes` or by a signal, prints more than
    `max_header_size` before the empty line, or prints a malformed header (a line that is
    not a field, a bare CR or a NUL).

    Refused (550 5.7.1): a value substituted for a placeholder that starts with "-",
    unless an argument "--" comes before it (the program could take it for an option:
    write commands as `prog [options] -- {sender} {rcpts}`); a value holding a NUL.
    """

    def __init__(
        self,
        mod_name: str = "check.command",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.argv: list[str] = list(inline_args)
        self.env: dict[str, str] = {}
        self.timeout = 30.0
        self.max_header_size = 64 * 1024
        self.codes: dict[int, str] = {1: "reject", 2: "quarantine"}

    SETTINGS: ClassVar = (_COMMAND, _ENV, _COMMAND_TIMEOUT, _MAX_HEADER_SIZE, _CODES)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        raw = cfg.value(_COMMAND, self.argv)
        if isinstance(raw, str):
            argv = shlex.split(raw)  # split first: substituted values never become words
        elif isinstance(raw, list | tuple) and all(isinstance(a, str) for a in raw):
            argv = list(raw)
        else:
            raise ConfigError("expected a command line", module=cfg.module, key="command")
        if not argv:
            raise ConfigError("required key is missing", module=cfg.module, key="command")
        for i, arg in enumerate(argv):
            names = set(_PLACEHOLDER.findall(arg)) & _PLACEHOLDERS
            if names and (i == 0 or _PLACEHOLDER.fullmatch(arg) is None):
                raise ConfigError(
                    f"placeholder {{{min(names)}}} must be a whole argument, not inside {arg!r}"
                    ' (a shell script reads it as "$1": sh -c \'prog "$1"\' sh {sender})',
                    module=cfg.module,
                    key="command",
                )
        # Found now, or every message would meet "cannot run" and the check's failure.
        found = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
        if found is None or not os.access(found, os.X_OK) or os.path.isdir(found):
            raise ConfigError(
                f"{argv[0]!r} is not an executable program", module=cfg.module, key="command"
            )
        self.argv = argv
        self.env = _env_setting(cfg)
        self.timeout = cfg.value(_COMMAND_TIMEOUT).total_seconds()
        self.max_header_size = cfg.value(_MAX_HEADER_SIZE)
        codes = cfg.value(_CODES)
        if not isinstance(codes, dict):
            raise ConfigError("expected exit code -> action", module=cfg.module, key="codes")
        parsed: dict[int, str] = {}
        for code, action in codes.items():
            if not str(code).isdigit() or action not in _ACTIONS:
                raise ConfigError(
                    f"expected exit code -> reject, quarantine or ignore, got {code!r}",
                    module=cfg.module,
                    key="codes",
                )
            parsed[int(code)] = str(action)
        self.codes = parsed

    def expand(self, values: Mapping[str, str]) -> list[str] | None:
        """The command line with placeholders replaced by `values`, one argument each.

        Returns:
            None when a value is unsafe as an argument: it holds a NUL, or it starts
            with "-" and no "--" argument comes before it.
        """
        argv: list[str] = []
        options_end = False
        for i, arg in enumerate(self.argv):
            match = _PLACEHOLDER.fullmatch(arg) if i else None
            if match is None or match[1] not in _PLACEHOLDERS:
                options_end = options_end or (i > 0 and arg == "--")
                argv.append(arg)
                continue
            value = values[match[1]]
            if "\0" in value or (value.startswith("-") and not options_end):
                return None
            argv.append(value)
        return argv

    def environment(self, values: Mapping[str, str]) -> dict[str, str]:
        """The program's whole environment: PATH, the C locale, `values`, then `env`."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C", "LC_ALL": "C"}
        env.update((f"MAILMODULE_{k.upper()}", v) for k, v in values.items())
        env.update(self.env)
        return env

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _CommandState:
        return _CommandState(self, msg_meta)


def _env_setting(cfg: ConfigMap) -> dict[str, str]:
    raw = cfg.value(_ENV)
    if not isinstance(raw, dict):
        raise ConfigError('expected a table of NAME = "value"', module=cfg.module, key="env")
    env: dict[str, str] = {}
    for name, value in raw.items():
        if not (isinstance(name, str) and _ENV_NAME.fullmatch(name)) or not isinstance(value, str):
            raise ConfigError(
                f'expected NAME = "value", got {name!r} = {describe_value("env", value)}',
                module=cfg.module,
                key="env",
            )
        if "\0" in value:
            raise ConfigError(f"value of {name} holds a NUL", module=cfg.module, key="env")
        env[name] = value
    return env


@final
class _CommandState:
    def __init__(self, check: CommandCheck, meta: MsgMetadata) -> None:
        self._check = check
        self._meta = meta
        self._sender = ""
        self._rcpts: list[str] = []

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        self._sender = mail_from
        return _NOTHING

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        self._rcpts.append(rcpt_to)
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        """Run the program; see `CommandCheck` for what each outcome means.

        On cancellation the program's process group is killed at once.
        """
        conn = self._meta.conn
        ip = str(conn.remote_ip or "") if conn else ""
        values = {
            "sender": self._sender,
            "rcpts": " ".join(self._rcpts),
            "msg_id": self._meta.id,
            "auth_user": conn.auth_user if conn else "",
            "remote_ip": ip,
            "source_ip": ip,
            "source_host": conn.hostname if conn else "",
        }
        check = self._check
        argv = check.expand(values)
        if argv is None or any("\0" in v for v in values.values()):
            _log.warning("msg %s: check.command: a value is unsafe as an argument", self._meta.id)
            return CheckResult(reject=True, reason=SMTPError(550, (5, 7, 1), _UNSAFE))
        message = header.to_bytes() + await asyncio.to_thread(_read, body)
        outcome = await _run(
            argv, check.environment(values), message, check.max_header_size, check.timeout
        )
        if isinstance(outcome, str):
            return self._temporary(outcome)
        code, head = outcome
        try:
            fields, dropped = await asyncio.to_thread(_output_fields, head)
        except HeaderError as exc:
            return self._temporary(f"malformed header fields in the output: {exc}")
        if dropped:
            _log.warning(
                "msg %s: check.command: dropped %s fields from %r",
                self._meta.id,
                ", ".join(dropped),
                argv[0],
            )
        return self._result(code, fields)

    def _temporary(self, why: str) -> CheckResult:
        _log.warning("msg %s: check.command: %s", self._meta.id, why)
        name = self._check.instance_name() or self._check.name()
        return CheckResult(
            reject=True,
            reason=SMTPError(
                451,
                (4, 7, 0),
                f"Temporary failure in content check {name}, try again later",
                check_name=name,
                misc={"reason": why},
            ),
        )

    def _result(self, code: int, fields: Header) -> CheckResult:
        if code == 0:
            return CheckResult(header=fields)
        action = self._check.codes.get(code)
        if action is None:
            return self._temporary(f"exit code {code}")
        if action == "quarantine":
            return CheckResult(quarantine=True, header=fields)
        if action == "ignore":
            return CheckResult(header=fields)
        return CheckResult(
            reject=True,
            reason=SMTPError(550, (5, 7, 1), "Message rejected by a content check"),
            header=fields,
        )

    def close(self) -> None:
        pass


def _read(body: Buffer) -> bytes:
    with body.open() as reader:
        return reader.read()


# The time limit is a parameter, not the caller's scope: at the limit the program gets
# SIGTERM and a grace period, where cancellation kills it at once.
async def _run(
    argv: list[str],
    env: dict[str, str],
    message: bytes,
    limit: int,
    timeout: float,  # noqa: ASYNC109
) -> tuple[int, bytes] | str:
    """Run `argv` fed `message`: its exit code and header part, or why it failed.

    The process group is always ended and the program reaped before this returns; on
    cancellation the group is killed at once and the child watcher reaps it.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            close_fds=True,
            start_new_session=True,  # its own process group, which the limit kills whole
        )
    except (OSError, ValueError) as exc:
        return f"cannot run {argv[0]!r}: {exc}"
    try:
        outcome = await _exchange(proc, message, limit, timeout)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        raise
    if isinstance(outcome, str):
        outcome = f"{argv[0]!r}: {outcome}"
    await _stop(proc)
    return outcome


async def _exchange(
    proc: asyncio.subprocess.Process,
    message: bytes,
    limit: int,
    timeout: float,  # noqa: ASYNC109  # see _run
) -> tuple[int, bytes] | str:
    assert proc.stdin is not None  # both are pipes
    assert proc.stdout is not None
    stdout = proc.stdout
    try:
        async with asyncio.timeout(timeout):  # one limit for input, output and exit
            async with asyncio.TaskGroup() as tasks:
                feeding = tasks.create_task(_feed(proc.stdin, message))
                head = await _read_head(stdout, limit)
                if head is None:
                    feeding.cancel()
                else:
                    while await stdout.read(_CHUNK):
                        pass  # what follows the header part is discarded
            if head is None:
                return f"more than {limit} bytes of header fields"
            return await proc.wait(), head
    except TimeoutError:
        return f"timed out after {timeout}s"


async def _feed(stdin: asyncio.StreamWriter, message: bytes) -> None:
    # A program may exit without reading all of its input.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(message)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _read_head(stdout: asyncio.StreamReader, limit: int) -> bytes | None:
    """The output up to and including its first empty line, or all of it; None past `limit`."""
    buf = bytearray()
    scanned = 0
    while True:
        end = _end_of_head(buf, scanned)
        if end >= 0:
            return bytes(buf[:end]) if end <= limit else None
        if len(buf) > limit:
            return None
        scanned = max(0, len(buf) - 2)
        chunk = await stdout.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk


def _end_of_head(buf: bytearray, start: int) -> int:
    """The offset just past the first empty line at or after `start`, or -1."""
    if start == 0 and buf[:1] == b"\n":
        return 1
    if start == 0 and buf[:2] == b"\r\n":
        return 2
    found = [i + len(eol) for eol in (b"\n\n", b"\n\r\n") if (i := buf.find(eol, start)) >= 0]
    return min(found, default=-1)


def _output_fields(head: bytes) -> tuple[Header, list[str]]:
    """A program's header part as CRLF fields, less the fields it may not add.

    Raises:
        HeaderError: a line is not a header field, or the text holds a bare CR or a NUL.
    """
    lf = head.replace(b"\r\n", b"\n")
    if b"\r" in lf or b"\0" in lf:
        raise HeaderError("a bare CR or a NUL in the header fields")
    if lf and not lf.endswith(b"\n"):
        lf += b"\n"  # so that every field ends with a line break
    fields = Header.parse(lf.replace(b"\n", b"\r\n"))
    dropped = [f.name for f in fields if _forges_trace(f.key)]
    if dropped:
        fields.remove_fields(lambda f: _forges_trace(f.key))
    return fields, dropped


def _forges_trace(key: str) -> bool:
    return key in _TRACE_FIELDS or key.startswith("arc-")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End the program's process group: SIGTERM, a grace period, SIGKILL; then reap it."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GRACE):
                await proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # also what it left behind after a normal exit
    try:
        async with asyncio.timeout(_REAP_LIMIT):
            await proc.wait()
            if proc.stdout is not None:
                while await proc.stdout.read(_CHUNK):
                    pass  # to the end: a paused pipe would keep its transport open
    except TimeoutError:  # a descendant that left the group still holds a pipe
        _log.error("check.command: pid %d: its output pipe stays open", proc.pid)


@final
class AuthorizeSender(ModuleBase):
    """`check.authorize_sender`: an authenticated user may only send as its own addresses.

    Settings: `user_to_email`, a table mapping a username to the addresses (a MultiTable
    for several) it may use in MAIL FROM and in the From field. Without it, the username
    itself must be the address. Messages without an authenticated user pass: this check
    is for submission. Addresses compare by `address.equal`.

    For an authenticated user, refused with 553 5.7.1: a MAIL FROM address, or any address
    of the From field (every one of them, not only the first), or of a Sender field, that
    is not the user's. Refused with 550 5.7.0: no From field, more than one From or Sender
    field (RFC 5322 allows one), and a From or Sender field that does not parse strictly.
    Strictly means: a comma-separated list of `local@domain` or `display name
    <local@domain>`, with a dot-atom local part and a valid domain; no group syntax (`:`
    and `;`), no domain literal, no quoted local part, no white space or comment inside an
    address, no control character (a bare CR included), no encoded word outside the display
    name; and neither a display name (its encoded words decoded) nor a comment may hold
    `@`, `<` or `>`, so no address can hide where a reader would see it. Unlike maddy, an
    authorized Sender field does not excuse a foreign From address.
    """

    def __init__(
        self,
        mod_name: str = "check.authorize_sender",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.table: Table | None = None

    SETTINGS: ClassVar = (_USER_TO_EMAIL,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        ref = cfg.value(_USER_TO_EMAIL)
        self.table = ref if isinstance(ref, Table) else None

    async def allowed(self, user: str) -> list[str]:
        """The addresses `user` may send as."""
        if self.table is None:
            return [user]
        if isinstance(self.table, MultiTable):
            return await self.table.lookup_multi(user)
        found = await self.table.lookup(user)
        return [] if found is None else [found]

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _AuthorizeState:
        return _AuthorizeState(self, msg_meta)


@final
class _AuthorizeState:
    def __init__(self, check: AuthorizeSender, meta: MsgMetadata) -> None:
        self._check = check
        self._user = meta.conn.auth_user if meta.conn is not None else ""

    async def _permits(self, addr: str) -> bool:
        return any(address.equal(addr, ok) for ok in await self._check.allowed(self._user))

    def _refuse(self, what: str) -> CheckResult:
        return CheckResult(
            reject=True,
            reason=SMTPError(553, (5, 7, 1), f"{what} does not belong to the authenticated user"),
        )

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        if not self._user or await self._permits(mail_from):
            return _NOTHING
        return self._refuse("The sender address")

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        if not self._user:
            return _NOTHING
        for name, required in (("From", True), ("Sender", False)):
            fields = header.fields(name)
            if not fields and not required:
                continue
            if len(fields) != 1:
                return self._malformed(f"Exactly one {name} field is required")
            text = _field_text(fields[0])
            found = None if text is None else _mailboxes(text)
            if not found:
                return self._malformed(f"Malformed {name} field")
            for addr in found:
                if not await self._permits(addr):
                    return self._refuse(f"The {name} address")
        return _NOTHING

    def _malformed(self, why: str) -> CheckResult:
        return CheckResult(reject=True, reason=SMTPError(550, (5, 7, 0), why))

    def close(self) -> None:
        pass


def _field_text(field: HeaderField) -> str | None:
    """The unfolded value of `field` from its raw bytes; None if it holds a bare CR or LF
    (which `HeaderField.value` would strip at its ends) or is not UTF-8."""
    raw = field.raw.removesuffix(b"\n").removesuffix(b"\r")
    text = _FOLDING.sub(b"", raw[raw.index(b":") + 1 :])
    if b"\r" in text or b"\n" in text:
        return None
    try:
        return text.decode("utf-8").strip(" \t")
    except UnicodeDecodeError:
        return None


def _mailboxes(value: str) -> list[str] | None:
    """The addresses of a From or Sender field value, or None when it does not parse strictly.

    See `AuthorizeSender` for the grammar accepted.
    """
    tokens = _tokens(value)
    if tokens is None:
        return None
    found: list[str] = []
    mailbox: list[tuple[str, str]] = []
    for token in [*tokens, ("special", ",")]:
        if token != ("special", ","):
            mailbox.append(token)
            continue
        addr = _mailbox(_strip_space(mailbox))
        if addr is None:
            return None
        found.append(addr)
        mailbox = []
    return found


def _strip_space(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    start, end = 0, len(tokens)
    while start < end and tokens[start][0] == "space":
        start += 1
    while end > start and tokens[end - 1][0] == "space":
        end -= 1
    return tokens[start:end]


def _mailbox(tokens: list[tuple[str, str]]) -> str | None:
    if ("special", "<") not in tokens:
        return _addr_spec(tokens)
    opening = tokens.index(("special", "<"))
    if tokens[-1] != ("special", ">"):
        return None
    if not all(_display_word(t) for t in tokens[:opening]):
        return None
    return _addr_spec(tokens[opening + 1 : -1])


def _display_word(token: tuple[str, str]) -> bool:
    kind, text = token
    if kind == "space" or token == ("special", "."):  # obs-phrase allows a period
        return True
    if kind == "quoted":
        return "=?" not in text and not _HIDES_ADDRESS.search(text)
    if kind != "atom":
        return False
    if _ENCODED_WORD.fullmatch(text) is None:
        return "=?" not in text
    try:
        decoded = str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return False
    return not _HIDES_ADDRESS.search(decoded) and "=?" not in decoded


def _addr_spec(tokens: list[tuple[str, str]]) -> str | None:
    if not tokens or any(kind not in ("atom", "special") for kind, _ in tokens):
        return None  # quoted strings, white space, comments
    text = "".join(t for _, t in tokens)
    local, at, domain = text.partition("@")
    if (
        not at
        or "=?" in text
        or any(c in "<>," for c in text)
        or not _DOT_ATOM.fullmatch(local)
        or not address.is_valid_domain(domain)
    ):
        return None
    return text


def _tokens(value: str) -> list[tuple[str, str]] | None:
    """Atoms, quoted strings (unescaped), specials and white space; comments count as white
    space. None for anything else: controls, group syntax, domain literals, bad quoting."""
    if _BAD_CHAR.search(value):
        return None
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t":
            while i < n and value[i] in " \t":
                i += 1
            tokens.append(("space", " "))
        elif ch == "(":
            end = value.find(")", i)
            comment = value[i + 1 : end]
            if end < 0 or any(c in comment for c in '()\\"') or _HIDES_ADDRESS.search(comment):
                return None
            tokens.append(("space", " "))
            i = end + 1
        elif ch == '"':
            text: list[str] = []
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\":
                    i += 1
                if i < n:
                    text.append(value[i])
                    i += 1
            if i >= n:
                return None  # unterminated
            tokens.append(("quoted", "".join(text)))
            i += 1
        elif ch in "<>,@.":
            tokens.append(("special", ch))
            i += 1
        else:
            match = _ATOM.match(value, i)
            if match is None:
                return None
            tokens.append(("atom", match[0]))
            i = match.end()
    return tokens


@final
class IPRevCheck(ModuleBase):
    """`check.iprev`: the client's reverse DNS must point back to its address (RFC 8601
    iprev), reported in Authentication-Results.

    The name comes from `ConnState.rdns_name` (looked up by the endpoint); the forward
    lookup (A and AAAA) goes through the server's resolver (`mailmodule.dns`). Loopback
    clients pass as "localhost" without a query. A client that fails carries a 550 5.7.25
    reason, so the configured fail action decides; a temporary DNS error, or no PTR name
    in time, is "temperror" and passes. Settings: `timeout` (default 5s), bounding the
    wait for the PTR name and the forward lookup.
    """

    def __init__(
        self,
        mod_name: str = "check.iprev",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.timeout = 5.0
        self.resolver: Resolver | None = None

    SETTINGS: ClassVar = (_IPREV_TIMEOUT,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self.timeout = cfg.value(_IPREV_TIMEOUT).total_seconds()
        self.resolver = shared_resolver(cfg)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _IPRevState:
        return _IPRevState(self, msg_meta)

    async def forward_ips(self, name: str) -> set[str]:
        """The addresses `name` resolves to (A and AAAA); none when it does not exist or
        is not a domain name.

        Raises:
            DNSTemporaryError: the lookup failed for now, or took longer than `timeout`.
        """
        resolver = self.resolver or default_resolver()
        try:
            async with asyncio.timeout(self.timeout):
                answer = await resolver.ip(name)
        except TimeoutError as exc:
            raise DNSTemporaryError("no answer in time", name=name, rdtype="A") from exc
        except DNSPermanentError:
            return set()
        return {str(r) for r in answer.records}


@final
class _IPRevState:
    def __init__(self, check: IPRevCheck, meta: MsgMetadata) -> None:
        self._check = check
        self._conn = meta.conn

    async def check_connection(self) -> CheckResult:
        from authres import AuthenticationResult, AuthenticationResultProperty

        conn = self._conn
        if conn is None or conn.rdns_name is None or conn.remote_ip is None:
            return _NOTHING  # not a network client: iprev does not apply
        ip = conn.remote_ip
        try:
            name = await asyncio.wait_for(_shielded(conn.rdns_name), self._check.timeout)
        except TimeoutError:
            name, outcome = None, "temperror"
        else:
            outcome = "fail"
        if name is not None:
            try:
                if await self._confirms(name, str(ip), ip.is_loopback):
                    outcome = "pass"
            except DNSTemporaryError:
                outcome = "temperror"
        prop = AuthenticationResultProperty("policy", "iprev", str(ip), name)
        result = AuthenticationResult("iprev", result=outcome, properties=[prop])
        if outcome != "fail":
            return CheckResult(auth_result=[result])
        reason = SMTPError(550, (5, 7, 25), "Reverse DNS does not match the client address")
        return CheckResult(auth_result=[result], reason=reason)

    async def _confirms(self, name: str, ip: str, loopback: bool) -> bool:
        if loopback and name == "localhost":
            return True
        return ip in await self._check.forward_ips(name)

    async def check_sender(self, mail_from: str) -> CheckResult:
        return _NOTHING

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return _NOTHING

    def close(self) -> None:
        pass


async def _shielded(name: Awaitable[str | None]) -> str | None:
    # Several checks may await the same lookup: never cancel it for the others.
    if isinstance(name, asyncio.Future):
        return await asyncio.shield(name)
    return await name
