"""`check.spf`: the client must be allowed to send for the MAIL FROM (or HELO) domain."""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Sequence
from typing import ClassVar, Final, Literal, final

import idna

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import DNSError, Resolver, default_resolver, shared_resolver
from mailmodule.errors import AddressError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import AuthResult, AuthResultProperty, CheckResult
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._actions import action_setting
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.spf._eval import Evaluator, IPAddress, SPFResult
from mailmodule.pipeline import FailAction

__all__ = ["SPFCheck"]

_log = logging.getLogger("mailmodule.modules.spf")
_NOTHING: Final = CheckResult()
# maddy's documented defaults (docs/reference/checks/spf.md).
_DEFAULTS: Final[dict[str, Literal["reject", "quarantine", "ignore"]]] = {
    "none": "ignore",
    "neutral": "ignore",
    "fail": "quarantine",
    "softfail": "ignore",
    "permerror": "reject",
    "temperror": "reject",
}
_KEYS: Final = {
    "none": "none_action",
    "neutral": "neutral_action",
    "fail": "fail_action",
    "softfail": "softfail_action",
    "permerror": "permerr_action",
    "temperror": "temperr_action",
}
_REPLIES: Final = {
    "none": (550, (5, 7, 23), "No SPF policy"),
    "neutral": (550, (5, 7, 23), "Neutral SPF result is not permitted"),
    "fail": (550, (5, 7, 23), "SPF authentication failed"),
    "softfail": (550, (5, 7, 23), "SPF authentication soft-failed"),
    "permerror": (550, (5, 7, 24), "SPF authentication failed with a permanent error"),
    "temperror": (451, (4, 7, 24), "SPF authentication failed with a temporary error"),
}
_ACTION_TYPE: Final = '"reject", "quarantine", "ignore" or "reject <code> <enhanced code> <text>"'
_DOCS: Final = {
    "none": "what an SPF result of none (no policy) does",
    "neutral": "what an SPF result of neutral does",
    "fail": "what an SPF fail does",
    "softfail": "what an SPF softfail does",
    "permerror": "what an SPF permerror (a broken policy) does",
    "temperror": "what an SPF temperror (DNS trouble) does",
}
_ACTION_SETTINGS: Final = {
    result: Setting.string(_KEYS[result], _DOCS[result], _DEFAULTS[result], type_doc=_ACTION_TYPE)
    for result in _DEFAULTS
}
_ENFORCE_EARLY: Final = Setting.boolean(
    "enforce_early", "act at MAIL FROM, not after the body (no DMARC override)", False
)
_CHECK_HELO: Final = Setting.boolean(
    "check_helo", "evaluate the HELO identity too; a HELO fail decides", False
)
_DEBUG: Final = Setting.boolean("debug", "maddy's; logging levels are the server's here", False)
_DMARC_WALK: Final = 8  # the most _dmarc names looked at, as DMARCbis's tree walk
_EXPLANATION_MAX: Final = 200


@final
class SPFCheck(ModuleBase):
    """`check.spf`: RFC 7208 SPF for the MAIL FROM identity (the HELO identity for the null
    sender), reported in Authentication-Results as `spf=<result>` with `smtp.mailfrom`
    (the address) or `smtp.helo` (the name); DMARC reads those.

    Settings (maddy's):
        none_action, neutral_action, fail_action, softfail_action, permerr_action,
            temperr_action: what each result does: "reject", "quarantine", "ignore", or
            "reject 550 5.7.23 text". Defaults as maddy documents them: fail quarantines,
            permerror and temperror reject, the others are ignored. A rejection is 550
            5.7.23 (fail, softfail, none, neutral; a fail carries the domain's
            explanation), 550 5.7.24 (permerror) or 451 4.7.24 (temperror).
        enforce_early: act at MAIL FROM (default false). When false the result is
            computed at MAIL FROM but acted on after the body: if a DMARC evaluation
            follows (`dmarc_follows`) and the From domain publishes a DMARC policy other
            than p=none, the action is left to DMARC and only the result is reported.
        check_helo: also evaluate the HELO identity (RFC 7208 2.3; default false); a
            HELO "fail" decides, whatever MAIL FROM gives. Both results are reported
            (DMARC reads the `smtp.mailfrom` one).

    `dmarc_follows` says whether every pipeline running this check evaluates DMARC after
    it: the server sets it from `dmarc = true`; an app passing a DMARC `ResultsCheck` to
    its `Pipeline` sets it itself. Without it (the default) nothing is left to DMARC, so
    no policy published by the sender's domain can switch the SPF action off.

    Verdicts are kept while the DNS answers they rest on are cached (`Evaluator`).
    Messages without a client IP (made locally) are not checked. A MAIL FROM whose domain
    is not a valid IDN is refused with 550 5.1.7.
    """

    def __init__(
        self,
        mod_name: str = "check.spf",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.resolver: Resolver | None = None
        self.evaluator: Evaluator | None = None
        self.actions: dict[str, FailAction] = {
            result: FailAction(action=action) for result, action in _DEFAULTS.items()
        }
        self.enforce_early = False
        self.check_helo = False
        self.dmarc_follows = False

    SETTINGS: ClassVar = (*_ACTION_SETTINGS.values(), _ENFORCE_EARLY, _CHECK_HELO, _DEBUG)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self.resolver = shared_resolver(cfg)
        self.evaluator = Evaluator(self.resolver)
        self.actions = {
            result: action_setting(cfg, _KEYS[result], _DEFAULTS[result]) for result in _DEFAULTS
        }
        self.enforce_early = cfg.value(_ENFORCE_EARLY)
        self.check_helo = cfg.value(_CHECK_HELO)
        cfg.value(_DEBUG)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _SPFState:
        return _SPFState(self, msg_meta)

    async def evaluate(self, ip: IPAddress, mail_from: str, helo: str) -> list[AuthResult]:
        """The SPF results of one client: HELO first when `check_helo` is set, then MAIL
        FROM (the HELO identity itself for the null sender). Both are always evaluated,
        so DMARC finds the MAIL FROM result; a HELO "fail" still decides (`outcome`).

        Raises:
            AddressError: `mail_from`'s domain is not a valid IDN.
        """
        if self.evaluator is None:
            self.evaluator = Evaluator(self.resolver or default_resolver())
        evaluator = self.evaluator
        results: list[AuthResult] = []
        if self.check_helo or not mail_from:
            verdict = await evaluator.check_host(ip, helo, "", helo=helo)
            results.append(_auth_result(verdict, helo=helo))
            if not mail_from:
                return results
        sender = _prepare(mail_from)
        domain = sender.rpartition("@")[2]
        verdict = await evaluator.check_host(ip, domain, sender, helo=helo)
        results.append(_auth_result(verdict, mailfrom=mail_from))
        return results

    def outcome(self, results: list[AuthResult], *, act: bool = True) -> CheckResult:
        """The check's result for these SPF results; `act` false reports them only."""
        decisive = next((r for r in results if r.result == "fail"), results[-1])
        action = self.actions.get(decisive.result)
        if not act or action is None or action.action == "ignore":
            return CheckResult(auth_result=results)
        if action.action == "quarantine":
            return CheckResult(auth_result=results, quarantine=True)
        code, enhanced, text = _REPLIES[decisive.result]
        if decisive.result == "fail" and decisive.reason_comment:
            text = f"{text}: {decisive.reason_comment}"
        reason = SMTPError(code, enhanced, text, check_name=self.instance_name() or self.name())
        return action.apply(
            CheckResult(auth_result=results, reason=reason), reason.check_name or ""
        )


def _prepare(mail_from: str) -> str:
    """The MAIL FROM address for SPF: its domain as A-labels; a non-ASCII local part
    becomes empty (%{l} cannot name it), as maddy does."""
    local, domain = address.split(mail_from)
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"malformed domain: {exc}", address=mail_from) from exc
    return f"{local if local.isascii() else ''}@{domain}"


def _auth_result(
    verdict: SPFResult, *, mailfrom: str | None = None, helo: str | None = None
) -> AuthResult:
    prop = (
        AuthResultProperty("smtp", "mailfrom", mailfrom)
        if mailfrom is not None
        else AuthResultProperty("smtp", "helo", helo)
    )
    # A comment may hold no parentheses or backslashes of its own (RFC 5322 ccontent).
    explanation = "".join(c for c in _printable(verdict.explanation) if c not in "()\\")
    return AuthResult(
        method="spf",
        result=verdict.result,
        reason=_printable(verdict.reason) or None,
        reason_comment=explanation or None,
        properties=(prop,),
    )


def _printable(text: str | None) -> str:
    """`text` safe to put in a header field or a reply: printable ASCII, bounded."""
    if not text:
        return ""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned[:_EXPLANATION_MAX]


@final
class _SPFState:
    def __init__(self, check: SPFCheck, meta: MsgMetadata) -> None:
        self._check = check
        self._meta = meta
        self._pending: asyncio.Task[list[AuthResult]] | None = None
        self._done = False

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        conn = self._meta.conn
        if conn is None or conn.remote_ip is None:
            self._done = True  # made locally: SPF does not apply
            return _NOTHING
        try:
            if mail_from:
                _prepare(mail_from)
        except AddressError:
            self._done = True
            return CheckResult(
                reject=True, reason=SMTPError(550, (5, 1, 7), "Malformed sender address")
            )
        work = self._check.evaluate(conn.remote_ip, mail_from, conn.hostname)
        if self._check.enforce_early:
            self._done = True
            return self._check.outcome(await work)
        # Runs while the recipients and the body arrive; awaited in check_body.
        self._pending = asyncio.ensure_future(work)
        return _NOTHING

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        if self._done or self._pending is None:
            return _NOTHING
        results = await self._pending
        self._pending = None
        defer = self._check.dmarc_follows and await self._dmarc_enforced(header)
        if defer and results[-1].result != "pass":
            _log.info(
                "msg %s: check.spf: %s, the action is left to DMARC",
                self._meta.id,
                results[-1].result,
            )
        return self._check.outcome(results, act=not defer)

    async def _dmarc_enforced(self, header: Header) -> bool:
        """Whether the From domain publishes a DMARC policy other than p=none."""
        values = header.values("From")
        found = email.utils.getaddresses(values) if len(values) == 1 else []
        if len(found) != 1 or "@" not in found[0][1]:
            return False
        domain = found[0][1].rpartition("@")[2].lower().rstrip(".")
        return await dmarc_policy_enforced(self._check.resolver or default_resolver(), domain)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


async def dmarc_policy_enforced(resolver: Resolver, domain: str) -> bool:
    """Whether `domain` falls under a DMARC policy (p=, or sp= below the policy domain)
    other than "none", found by a tree walk up from `_dmarc.<domain>`. DNS trouble counts
    as no policy."""
    labels = domain.split(".")
    for depth in range(min(len(labels), _DMARC_WALK)):
        if len(labels) - depth < 2 and depth:
            break
        name = ".".join(labels[depth:])
        try:
            answer = await resolver.txt(f"_dmarc.{name}")
        except DNSError:
            return False
        records = [r for r in answer.records if r.lower().startswith(b"v=dmarc1")]
        if len(records) != 1:
            continue
        tags = {}
        for part in records[0].decode("ascii", "replace").split(";"):
            key, _, value = part.partition("=")
            tags[key.strip().lower()] = value.strip().lower()
        policy = tags.get("p", "")
        if depth and "sp" in tags:
            policy = tags["sp"]
        return policy in ("quarantine", "reject")
    return False
