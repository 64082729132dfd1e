"""`mx_auth.mtasts`: MTA-STS (RFC 8461), the recipient domain's word on its MX hosts and TLS.

The policy of a domain is found as RFC 8461 section 5.1 says: the `_mta-sts.<domain>` TXT
record gives the policy id; a cached policy with that id, not older than its `max_age`,
is used as it is; else the policy file is fetched over HTTPS (certificate verified for
`mta-sts.<domain>`) and cached, in memory and, with `cache_dir`, on disk. Without a TXT
record, or when the lookup or the fetch fails, a cached policy still within its `max_age`
stays in force; else the domain has no policy.

Under a policy in "enforce" mode an MX that matches none of its patterns is refused, and
so is a connection without TLS or whose certificate did not verify (a `tls_level` below
`TLS_AUTHENTICATED`: PKIX verification as the target reports it, or a policy applied
before this one, such as `mx_auth.dane` listed first among the equal weights).
Refusals are temporary (451): RFC 8461 section 5.1 wants the policy checked again
before a message fails for good. In "testing" mode a mismatch only leaves the MX
level where it was. A matching MX is raised to `MX_MTASTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Final, final

import attrs
import idna

from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import DNSError, Resolver, shared_resolver
from mailmodule.errors import ConfigError, SMTPError
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.mx_auth._fetch import fetch_policy_text
from mailmodule.modules.mx_auth._sts import (
    STSMode,
    STSPolicy,
    STSPolicyError,
    parse_policy,
    record_id,
)

__all__ = ["MTASTSPolicy"]

_CACHE_DIR = Setting.string(
    "cache_dir",
    "directory where fetched policies are kept across restarts",
    None,
    default_doc="none: policies are kept in memory only",
)
_CA_FILE = Setting.string(
    "ca_file",
    "PEM file of the CAs trusted for policy hosts",
    None,
    default_doc="the system's trust store",
)
_PORT = Setting.integer("policy_port", "HTTPS port of the policy hosts", 443, minimum=1)
_TIMEOUT = Setting.duration(
    "fetch_timeout",
    "how long one policy fetch may take",
    datetime.timedelta(minutes=1),
    positive=True,
)
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_WEIGHT: Final = 10


@final
@attrs.frozen(kw_only=True)
class _Cached:
    id: str
    fetched: float  # seconds since the epoch
    text: str
    policy: STSPolicy

    def fresh(self, now: float) -> bool:
        return now < self.fetched + self.policy.max_age


@final
class MTASTSPolicy(ModuleBase):
    """`mx_auth.mtasts`: the MXAuthPolicy of MTA-STS; see the module docstring.

    Settings: `cache_dir`, `ca_file`, `policy_port` (443; another only in tests),
    `fetch_timeout`. `policy(domain)` is the lookup itself, for tools and tests.
    """

    SETTINGS: ClassVar = (_CACHE_DIR, _CA_FILE, _PORT, _TIMEOUT)

    def __init__(
        self,
        mod_name: str = "mx_auth.mtasts",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._memory: dict[str, _Cached] = {}
        self._cache_dir: Path | None = None
        self._context = ssl.create_default_context()
        self._port = 443
        self._timeout = 60.0
        self._resolver: Resolver | None = None

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        cache_dir = cfg.value(_CACHE_DIR)
        ca_file = cfg.value(_CA_FILE)
        try:
            self._context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot read CA file {ca_file!r}: {exc}", module=cfg.module, key="ca_file"
            ) from exc
        if cache_dir is not None:
            try:
                os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create {cache_dir!r}: {exc}", module=cfg.module, key="cache_dir"
                ) from exc
            self._cache_dir = Path(cache_dir)
        self._port = cfg.value(_PORT)
        self._timeout = cfg.value(_TIMEOUT).total_seconds()
        self._resolver = shared_resolver(cfg)

    def weight(self) -> int:
        return _WEIGHT

    def start(self, msg_meta: MsgMetadata) -> _MTASTSDelivery:
        return _MTASTSDelivery(self)

    async def policy(self, domain: str) -> STSPolicy | None:
        """The policy in force for `domain` (RFC 8461 section 5.1), or None for none.

        Never raises for the network or the cache: failures mean "no new policy".
        """
        name = _a_label(domain)
        if name is None:
            return None
        now = time.time()
        cached = await self._load(name)
        usable = cached.policy if cached is not None and cached.fresh(now) else None
        assert self._resolver is not None, "init was not called"
        try:
            answer = await self._resolver.txt(f"_mta-sts.{name}")
        except DNSError:
            return usable
        policy_id = record_id(answer.records)
        if policy_id is None:
            return usable
        if cached is not None and cached.id == policy_id and usable is not None:
            return usable
        try:
            async with asyncio.timeout(self._timeout):
                text = await fetch_policy_text(
                    name, resolver=self._resolver, context=self._context, port=self._port
                )
            policy = parse_policy(text)
        except (STSPolicyError, TimeoutError):
            return usable
        await self._store(name, _Cached(id=policy_id, fetched=now, text=text, policy=policy))
        return policy

    async def _load(self, name: str) -> _Cached | None:
        if name in self._memory or self._cache_dir is None:
            return self._memory.get(name)
        found = await asyncio.to_thread(_read_cached, self._cache_dir / f"{name}.json")
        if found is not None:
            self._memory[name] = found
        return found

    async def _store(self, name: str, entry: _Cached) -> None:
        self._memory[name] = entry
        if self._cache_dir is not None:
            # On failure the policy is still kept in memory; the disk copy is a convenience.
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_write_cached, self._cache_dir, name, entry)


def _a_label(domain: str) -> str | None:
    try:
        name = idna.encode(domain.rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
    return name if _HOST.fullmatch(name) and len(name) <= 253 else None


def _read_cached(path: Path) -> _Cached | None:
    try:
        data = json.loads(path.read_bytes())
        text, policy_id, fetched = data["policy"], data["id"], data["fetched"]
        if not isinstance(text, str) or not isinstance(policy_id, str):
            return None
        if not isinstance(fetched, int | float):
            return None
        return _Cached(id=policy_id, fetched=fetched, text=text, policy=parse_policy(text))
    except (OSError, ValueError, KeyError, TypeError, STSPolicyError):
        return None  # a missing or damaged entry is no entry: the policy is fetched anew


def _write_cached(directory: Path, name: str, entry: _Cached) -> None:
    data = json.dumps({"id": entry.id, "fetched": entry.fetched, "policy": entry.text})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(data)
        os.replace(tmp, directory / f"{name}.json")
    except BaseException:
        os.unlink(tmp)
        raise


@final
class _MTASTSDelivery:
    def __init__(self, owner: MTASTSPolicy) -> None:
        self._owner = owner
        self._lookups: dict[str, asyncio.Task[STSPolicy | None]] = {}

    async def prepare_domain(self, domain: str) -> None:
        if domain not in self._lookups:
            self._lookups[domain] = asyncio.create_task(self._owner.policy(domain))

    async def prepare_conn(self, mx: str) -> None:
        return None

    async def _policy(self, domain: str) -> STSPolicy | None:
        await self.prepare_domain(domain)
        policy = await self._lookups[domain]
        return None if policy is None or policy.mode is STSMode.NONE else policy

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        policy = await self._policy(domain)
        if policy is None:
            return mx_level
        if policy.matches(mx):
            return max(mx_level, MXLevel.MX_MTASTS)
        if policy.mode is STSMode.ENFORCE:
            raise SMTPError(
                451,
                (4, 7, 0),
                "MX host is not listed in the recipient domain's MTA-STS policy",
                misc={"domain": domain, "mx": mx},
            )
        return mx_level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        policy = await self._policy(domain)
        if policy is None or policy.mode is not STSMode.ENFORCE:
            return tls_level
        if not tls_state.handshake_complete:
            raise SMTPError(
                451,
                (4, 7, 1),
                "TLS is required by MTA-STS but unavailable or failed",
                misc={"domain": domain, "mx": mx},
            )
        if tls_level < TLSLevel.TLS_AUTHENTICATED:
            raise SMTPError(
                451,
                (4, 7, 1),
                "MX certificate is not trusted but MTA-STS requires authentication",
                misc={"domain": domain, "mx": mx, "tls_level": str(tls_level)},
            )
        return tls_level

    def reset(self, new_msg: MsgMetadata | None) -> None:
        for task in self._lookups.values():
            task.cancel()
        self._lookups.clear()
