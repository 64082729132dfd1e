"""Checks that need no network: `check.command` and `check.authorize_sender`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shlex
from collections.abc import Awaitable, Sequence
from typing import Final, final

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.errors import AddressError, ConfigError, HeaderError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import CheckResult, MultiTable, Table
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["AuthorizeSender", "CommandCheck", "IPRevCheck"]

_log = logging.getLogger("mailmodule.modules.checks")
_NOTHING: Final = CheckResult()
_ACTIONS: Final = ("reject", "quarantine", "ignore")


@final
class CommandCheck(ModuleBase):
    """`check.command`: runs a program with the message on standard input.

    Settings: `command`, the program and its arguments (a list, or a string split as a
    shell would, without running a shell); in the arguments, `{sender}`, `{rcpts}` (space
    separated), `{msg_id}`, `{auth_user}` and `{remote_ip}` are replaced. The same values
    are in the environment as MAILMODULE_SENDER, MAILMODULE_RCPTS, MAILMODULE_MSG_ID,
    MAILMODULE_AUTH_USER and MAILMODULE_REMOTE_IP. `timeout` (default 30s) bounds the run.
    `codes` maps exit codes to "reject", "quarantine" or "ignore" (default: 1 rejects,
    2 quarantines); 0 passes, and any other code, a timeout or a program that cannot start
    is a temporary failure. Lines the program prints in the form `Name: value` are added
    to the message header.
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
        self.timeout = 30.0
        self.codes: dict[int, str] = {1: "reject", 2: "quarantine"}

    def init(self, cfg: ConfigMap) -> None:
        raw = cfg.get("command", self.argv)
        if isinstance(raw, str):
            argv = shlex.split(raw)
        elif isinstance(raw, list | tuple) and all(isinstance(a, str) for a in raw):
            argv = list(raw)
        else:
            raise ConfigError("expected a command line", module=cfg.module, key="command")
        if not argv:
            raise ConfigError("required key is missing", module=cfg.module, key="command")
        self.argv = argv
        self.timeout = cfg.duration("timeout", datetime.timedelta(seconds=30)).total_seconds()
        codes = cfg.get("codes")
        if codes is not None:
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

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _CommandState:
        return _CommandState(self, msg_meta)


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
        conn = self._meta.conn
        values = {
            "sender": self._sender,
            "rcpts": " ".join(self._rcpts),
            "msg_id": self._meta.id,
            "auth_user": conn.auth_user if conn else "",
            "remote_ip": str(conn.remote_ip or "") if conn else "",
        }
        argv = [arg.format_map(values) for arg in self._check.argv]
        env = {**os.environ, **{f"MAILMODULE_{k.upper()}": v for k, v in values.items()}}
        message = header.to_bytes() + await asyncio.to_thread(_read, body)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            return self._temporary(f"cannot run {argv[0]!r}: {exc}")
        try:
            out, _ = await asyncio.wait_for(proc.communicate(message), self._check.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return self._temporary(f"{argv[0]!r} timed out after {self._check.timeout}s")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return self._result(proc.returncode or 0, out)

    def _temporary(self, why: str) -> CheckResult:
        _log.warning("msg %s: check.command: %s", self._meta.id, why)
        return CheckResult(
            reject=True, reason=SMTPError(451, (4, 7, 1), "Temporary failure of a content check")
        )

    def _result(self, code: int, out: bytes) -> CheckResult:
        fields = Header()
        for line in reversed(out.decode("utf-8", "replace").splitlines()):
            name, sep, value = line.partition(":")
            if sep and name.strip() and value.strip():
                with contextlib.suppress(HeaderError):
                    fields.add(name.strip(), value.strip())
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


@final
class AuthorizeSender(ModuleBase):
    """`check.authorize_sender`: an authenticated user may only send as its own addresses.

    Settings: `user_to_email`, a table mapping a username to the addresses (a MultiTable
    for several) it may use in MAIL FROM and in the From field. Without it, the username
    itself must be the address. Messages without an authenticated user pass: this check
    is for submission. Addresses compare by `address.equal`.
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

    def init(self, cfg: ConfigMap) -> None:
        ref = cfg.module_ref("user_to_email", Table, None)
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
        from_field = header.get("From", "")
        _, addr = _parse_from(from_field)
        if addr and await self._permits(addr):
            return _NOTHING
        return self._refuse("The From address")

    def close(self) -> None:
        pass


def _parse_from(value: str) -> tuple[str, str]:
    import email.utils

    name, addr = email.utils.parseaddr(value)
    try:
        address.split(addr)
    except AddressError:
        return name, ""
    return name, addr


@final
class IPRevCheck(ModuleBase):
    """`check.iprev`: the client's reverse DNS must point back to its address (RFC 8601
    iprev), reported in Authentication-Results.

    The name comes from `ConnState.rdns_name` (looked up by the endpoint); the forward
    lookup uses dnspython. Loopback clients pass as "localhost" without a query. A client
    that fails carries a 550 5.7.25 reason, so the configured fail action decides; a DNS
    error is "temperror" and passes. Settings: `timeout` (default 5s).
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

    def init(self, cfg: ConfigMap) -> None:
        self.timeout = cfg.duration("timeout", datetime.timedelta(seconds=5)).total_seconds()

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _IPRevState:
        return _IPRevState(self, msg_meta)


async def _forward_ips(name: str, lifetime: float) -> set[str]:
    import dns.asyncresolver
    import dns.exception

    found: set[str] = set()
    for rdtype in ("A", "AAAA"):
        try:
            answer = await dns.asyncresolver.resolve(name, rdtype, lifetime=lifetime)
        except (dns.exception.DNSException, OSError):
            continue
        found.update(str(r) for r in answer)
    return found


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
        if name is not None and await self._confirms(name, str(ip), ip.is_loopback):
            outcome = "pass"
        prop = AuthenticationResultProperty("policy", "iprev", str(ip), name)
        result = AuthenticationResult("iprev", result=outcome, properties=[prop])
        if outcome != "fail":
            return CheckResult(auth_result=[result])
        reason = SMTPError(550, (5, 7, 25), "Reverse DNS does not match the client address")
        return CheckResult(auth_result=[result], reason=reason)

    async def _confirms(self, name: str, ip: str, loopback: bool) -> bool:
        if loopback and name == "localhost":
            return True
        return ip in await _forward_ips(name, self._check.timeout)

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
