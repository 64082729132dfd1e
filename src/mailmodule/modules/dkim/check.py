"""`check.dkim`: every DKIM signature of a message verified (RFC 6376, RFC 8463)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import ClassVar, Final, final

import attrs

from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import Resolver, shared_resolver
from mailmodule.errors import ConfigError, SMTPError, StorageError
from mailmodule.header import Header
from mailmodule.interfaces import AuthResult, AuthResultProperty, CheckResult
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.dkim import _canon, _crypto
from mailmodule.modules.dkim._keys import fetch_keys
from mailmodule.modules.dkim._tags import Invalid, KeyRecord, Signature, parse_signature
from mailmodule.pipeline import FailAction

__all__ = ["DKIMCheck", "fail_action_setting"]

_log = logging.getLogger("mailmodule.modules.dkim")
_NOTHING: Final = CheckResult()
#: Signatures verified per message; the others are ignored (a message can carry hundreds,
#: each costing a DNS query and a public-key operation).
MAX_SIGNATURES: Final = 10
_NO_SIG: Final = SMTPError(550, (5, 7, 20), "No DKIM signatures")
_BROKEN: Final = SMTPError(550, (5, 7, 20), "No passing DKIM signatures")
_TEMPORARY: Final = SMTPError(451, (4, 7, 20), "Temporary error during DKIM verification")
_IO_ERROR: Final = SMTPError(451, (4, 3, 0), "Internal I/O error during DKIM verification")


_REQUIRED_FIELDS: Final = Setting.string_list(
    "required_fields", "fields a signature must cover to pass", ["From", "Subject"]
)
_FAIL_OPEN: Final = Setting.boolean(
    "fail_open", "on a temporary DNS error, go on with dkim=temperror instead of refusing", False
)
_ACTION_TYPE: Final = 'string: "reject", "quarantine" or "ignore"'
_NO_SIG_ACTION: Final = Setting.string(
    "no_sig_action",
    "what to do with a message without a signature",
    "ignore",
    type_doc=_ACTION_TYPE,
)
_BROKEN_SIG_ACTION: Final = Setting.string(
    "broken_sig_action",
    "what to do with a message none of whose signatures passes",
    "ignore",
    type_doc=_ACTION_TYPE,
)


def fail_action_setting(cfg: ConfigMap, setting: Setting[str]) -> FailAction:
    """A FailAction setting written as "reject", "quarantine" or "ignore".

    Raises:
        ConfigError: any other value, naming the setting.
    """
    key = setting.name
    value = cfg.value(setting)
    if value == "reject":
        return FailAction(action="reject")
    if value == "quarantine":
        return FailAction(action="quarantine")
    if value == "ignore":
        return FailAction(action="ignore")
    raise ConfigError(
        f"expected reject, quarantine or ignore, got {value!r}", module=cfg.module, key=key
    )


@final
class DKIMCheck(ModuleBase):
    """`check.dkim`: verifies every DKIM signature (up to 10), as maddy's check.dkim.

    Each signature gives one `dkim=` result in the Authentication-Results field, with
    `header.d`, `header.i`, `header.s` and `header.b` (the first 8 characters of b=):
    pass; fail (the body hash or the signature does not verify); policy (the body goes on
    beyond the signed length l=: what follows is not covered, so the signature does not
    vouch for the message); neutral (a failure under a key in testing mode, t=y, which
    counts as no signature); permerror (malformed or refused signature or key: rsa-sha1,
    RSA keys under 1024 bits, a revoked key, a key unfit by its k=, h=, s= or t=s, x=
    passed, t= more than 15 minutes ahead, a required field not signed); temperror (the
    key lookup failed for now). A message without signatures gives `dkim=none`.

    Settings:
        required_fields: fields a signature must cover to pass (default From, Subject).
        fail_open: on a temporary DNS error, go on with dkim=temperror instead of
            refusing the message with 451 4.7.20 (default false).
        no_sig_action: for a message without a signature (default ignore).
        broken_sig_action: for a message with signatures of which none passes (default
            ignore). Both take reject (550 5.7.20), quarantine or ignore.

    The key lookups use the server's resolver (`mailmodule.dns.shared_resolver`), unless
    `resolver` was set before `init`.
    """

    SETTINGS: ClassVar = (_REQUIRED_FIELDS, _FAIL_OPEN, _NO_SIG_ACTION, _BROKEN_SIG_ACTION)

    def __init__(
        self,
        mod_name: str = "check.dkim",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.resolver: Resolver | None = None
        self.required_fields: frozenset[str] = frozenset({"from", "subject"})
        self.fail_open = False
        self.no_sig_action = FailAction(action="ignore")
        self.broken_sig_action = FailAction(action="ignore")

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        if self.inline_args:
            raise ConfigError("check.dkim takes no inline arguments", module=cfg.module)
        self.required_fields = frozenset(f.lower() for f in cfg.value(_REQUIRED_FIELDS))
        self.fail_open = cfg.value(_FAIL_OPEN)
        self.no_sig_action = fail_action_setting(cfg, _NO_SIG_ACTION)
        self.broken_sig_action = fail_action_setting(cfg, _BROKEN_SIG_ACTION)
        if self.resolver is None:
            self.resolver = shared_resolver(cfg)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _DKIMState:
        return _DKIMState(self, msg_meta.id)

    async def verify(self, header: Header, body: Buffer) -> list[AuthResult]:
        """One result per signature of the message (at most 10), top signature first.

        Raises:
            StorageError, OSError: the body cannot be read.
        """
        if self.resolver is None:
            raise RuntimeError("check.dkim: init() was not called and no resolver is set")
        fields = [_canon.wire(f.raw) for f in header]
        signatures: list[tuple[bytes, Signature | Invalid]] = []
        for raw in fields:
            name = raw.partition(b":")[0].rstrip(b" \t").lower()
            if name != b"dkim-signature":
                continue
            if len(signatures) == MAX_SIGNATURES:
                _log.info("ignoring DKIM signatures beyond the first %d", MAX_SIGNATURES)
                break
            try:
                signatures.append((raw, parse_signature(raw.partition(b":")[2])))
            except Invalid as exc:
                signatures.append((raw, exc))
        keys = await fetch_keys(
            self.resolver,
            ((s.selector, s.domain) for _, s in signatures if isinstance(s, Signature)),
        )
        return await asyncio.to_thread(
            _verify_all, signatures, fields, body, keys, self.required_fields
        )


def _verify_all(
    signatures: list[tuple[bytes, Signature | Invalid]],
    fields: list[bytes],
    body: Buffer,
    keys: dict[tuple[str, str], KeyRecord | Invalid],
    required: frozenset[str],
) -> list[AuthResult]:
    with body.open() as reader:
        cache = _crypto.BodyCache(_canon.wire(reader.read()))
    now = int(time.time())
    results: list[AuthResult] = []
    for raw, sig in signatures:
        if isinstance(sig, Invalid):
            results.append(_result(sig.result, sig.reason, _lenient_tags(raw)))
            continue
        props = {
            "d": sig.domain,
            "i": sig.identity,
            "s": sig.selector,
            "b": sig.b_text[:8],
        }
        key = keys[(sig.selector, sig.domain)]
        try:
            if isinstance(key, Invalid):
                raise key
            _crypto.verify(sig, raw, fields, cache, key, now)
            unsigned = sorted(required.difference(sig.signed_fields))
            if unsigned:
                raise Invalid("permerror", f"{', '.join(unsigned)} not signed")
        except Invalid as exc:
            if isinstance(key, KeyRecord) and key.testing and exc.result != "temperror":
                results.append(_result("neutral", f"{exc.reason} (key in testing mode)", props))
            else:
                results.append(_result(exc.result, exc.reason, props))
            continue
        results.append(_result("pass", None, props))
    return results


def _lenient_tags(raw: bytes) -> dict[str, str]:
    """d=, i=, s= and b= of a signature that did not parse, as far as they can be read."""
    tags: dict[str, str] = {}
    for spec in raw.partition(b":")[2].decode("ascii", "replace").split(";"):
        name, eq, value = spec.partition("=")
        name = name.strip(" \t\r\n")
        if eq and name in ("d", "i", "s", "b") and name not in tags:
            tags[name] = "".join(value.split())[: 8 if name == "b" else 255]
    return {k: tags[k] for k in ("d", "i", "s", "b") if tags.get(k)}


def _result(result: str, reason: str | None, props: dict[str, str]) -> AuthResult:
    return AuthResult(
        method="dkim",
        result=result,
        reason=reason,
        properties=[AuthResultProperty("header", k, v) for k, v in props.items()],
    )


def _act(action: FailAction, result: CheckResult, name: str) -> CheckResult:
    """`result` with the check's own action applied; a result that does not refuse keeps no
    reason, which the pipeline's fail action would take for a failure."""
    acted = action.apply(result, name)
    return acted if acted.reject else attrs.evolve(acted, reason=None)


@final
@attrs.define
class _DKIMState:
    _check: DKIMCheck
    _msg_id: str

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        return _NOTHING

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        check = self._check
        if "dkim-signature" not in header:
            none = CheckResult(
                reason=_NO_SIG, auth_result=[AuthResult(method="dkim", result="none")]
            )
            return _act(check.no_sig_action, none, check.name())
        try:
            results = await check.verify(header, body)
        except (OSError, StorageError) as exc:
            _log.error("msg %s: check.dkim: cannot read the body: %s", self._msg_id, exc)
            return CheckResult(reject=True, reason=_IO_ERROR)
        outcomes = {r.result for r in results}
        if "temperror" in outcomes and "pass" not in outcomes and not check.fail_open:
            _log.info("msg %s: check.dkim: temporary error, refused for now", self._msg_id)
            return CheckResult(reject=True, reason=_TEMPORARY)
        if "pass" in outcomes:
            return CheckResult(auth_result=results)
        if outcomes == {"neutral"}:  # keys in testing mode: as if unsigned (RFC 6376 3.6.1)
            found = CheckResult(reason=_NO_SIG, auth_result=results)
            return _act(check.no_sig_action, found, check.name())
        _log.info("msg %s: check.dkim: no passing signature", self._msg_id)
        found = CheckResult(reason=_BROKEN, auth_result=results)
        return _act(check.broken_sig_action, found, check.name())

    def close(self) -> None:
        pass
