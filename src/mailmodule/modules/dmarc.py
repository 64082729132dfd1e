"""DMARC (RFC 7489): the From domain's policy applied to the SPF and DKIM results, as
maddy's pipeline `dmarc` directive does.

Organizational domains come from the public suffix list bundled with `publicsuffixlist`
(read from the package, never fetched: a server must not depend on a download at run time,
and the package's releases follow the list). `tldextract` would fetch the list unless told
not to, and `publicsuffix2` has not been updated since 2019.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import re
from collections.abc import Sequence
from typing import Final, Literal, final

import attrs
from publicsuffixlist import PublicSuffixList

from mailmodule import address
from mailmodule.config import ConfigMap
from mailmodule.dns import DNSPermanentError, DNSTemporaryError, Resolver, shared_resolver
from mailmodule.errors import AddressError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import AuthResult, AuthResultProperty, CheckResult
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = [
    "DMARC",
    "DMARCRecord",
    "aligned",
    "evaluate",
    "organizational_domain",
]

_log = logging.getLogger("mailmodule.modules.dmarc")
Policy = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]
_POLICIES: Final = ("none", "quarantine", "reject")
_TAG: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 3.2): the public suffix and one label more; a
    public suffix itself, or a name the list cannot place, stands for itself."""
    return _psl().privatesuffix(domain.lower()) or domain.lower()


@final
@attrs.frozen(kw_only=True)
class DMARCRecord:
    """A DMARC policy record (RFC 7489 6.3); tags not used for evaluation are dropped."""

    policy: Policy
    subdomain_policy: Policy | None = None
    adkim: Alignment = "r"
    aspf: Alignment = "r"
    pct: int = 100


class _BadRecord(Exception):
    """Raised inside this module for a record that does not parse; never leaves it."""


def _parse_record(text: str) -> DMARCRecord:
    """A `v=DMARC1; p=...` record.

    Raises:
        _BadRecord: v= is not DMARC1 first, p= is missing or unknown, or another tag
            used here has a value RFC 7489 does not allow.
    """
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip():
            continue
        name, eq, value = spec.partition("=")
        name = name.strip()
        if not eq or not _TAG.fullmatch(name) or name in tags:
            raise _BadRecord(f"malformed tag {spec.strip()[:30]!r}")
        tags[name] = value.strip()
    if next(iter(tags), None) != "v" or tags["v"] != "DMARC1":
        raise _BadRecord("v=DMARC1 must come first")
    policy = _policy(tags.get("p"), "p")
    if policy is None:
        raise _BadRecord("no p= tag")
    adkim, aspf = _alignment(tags, "adkim"), _alignment(tags, "aspf")
    pct = tags.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        raise _BadRecord(f"pct={pct[:10]} is not 0 to 100")
    return DMARCRecord(
        policy=policy,
        subdomain_policy=_policy(tags.get("sp"), "sp"),
        adkim=adkim,
        aspf=aspf,
        pct=int(pct),
    )


def _policy(value: str | None, tag: str) -> Policy | None:
    if value is None:
        return None
    for policy in _POLICIES:
        if value.lower() == policy:
            return policy
    raise _BadRecord(f"{tag}={value[:20]} is not none, quarantine or reject")


def _alignment(tags: dict[str, str], tag: str) -> Alignment:
    value = tags.get(tag, "r").lower()
    if value == "r":
        return "r"
    if value == "s":
        return "s"
    raise _BadRecord(f"{tag}={value[:10]} is not r or s")


def aligned(from_domain: str, domain: str, mode: Alignment) -> bool:
    """Whether an authenticated `domain` aligns with the From domain (RFC 7489 3.1)."""
    if not domain:
        return False
    a, b = from_domain.lower().rstrip("."), domain.lower().rstrip(".")
    if mode == "s" or a == b:
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@final
@attrs.frozen
class _Found:
    """A policy, the domain it was found at, or why there is none."""

    record: DMARCRecord | None
    policy_domain: str = ""
    error: Literal["temperror", "permerror"] | None = None
    reason: str | None = None


def _from_domain(header: Header) -> str | None:
    """The one From address's domain (lookup form), or None when there is not exactly
    one From field with exactly one address."""
    fields = header.values("From")
    if len(fields) != 1:
        return None
    addrs = [a for _, a in email.utils.getaddresses(fields) if a]
    if len(addrs) != 1 or "@" not in addrs[0]:
        return None
    try:
        return address.domain_for_lookup(address.split(addrs[0])[1])
    except AddressError:
        return None


@final
class DMARC(ModuleBase):
    """The DMARC evaluation of a pipeline (`Pipeline(result_checks=[dmarc])`; in the server's
    TOML: `dmarc = true` under `[pipeline]`).

    The policy is the From domain's `_dmarc` record, else its organizational domain's
    (with `sp=` there when given). DMARC passes when a DKIM signature (`dkim=pass`,
    `header.d`) or SPF (`spf=pass`, `smtp.mailfrom`, else `smtp.helo`) aligns with the From
    domain, relaxed (same organizational domain) or strict (`adkim`, `aspf`). A failing
    message gets its domain's policy, for `pct` percent of messages: `reject` refuses it
    with 550 5.7.1, `quarantine` sends it to Junk. Every message gets a `dmarc=` result with
    `header.from`. As maddy: without both a DKIM and an SPF result it is `dmarc=none`; a
    temporary DNS error is `temperror` and refuses the message for now (450 4.7.1); a
    record that does not parse is `permerror` and applies no policy. Unlike maddy, a
    message with no From field, several, or several addresses in it is refused
    (550 5.7.1, `dmarc=permerror`): a reader could not tell whose policy should apply.
    """

    def __init__(
        self,
        mod_name: str = "dmarc",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.resolver: Resolver | None = None

    def init(self, cfg: ConfigMap) -> None:
        if self.resolver is None:
            self.resolver = shared_resolver(cfg)
        _psl()  # read the list now, not on the first message

    async def fetch(self, from_domain: str) -> _Found:
        """The policy for `from_domain`: its own record, else its organizational domain's."""
        found = await self._lookup(from_domain)
        if found.record is not None or found.error is not None:
            return found
        org = organizational_domain(from_domain)
        if org == from_domain:
            return found
        return await self._lookup(org)

    async def _lookup(self, domain: str) -> _Found:
        if self.resolver is None:
            raise RuntimeError("dmarc: init() was not called and no resolver is set")
        try:
            answer = await self.resolver.txt(f"_dmarc.{domain}")
        except DNSTemporaryError as exc:
            return _Found(None, domain, "temperror", f"policy lookup failed: {exc}")
        except DNSPermanentError as exc:
            return _Found(None, domain, "permerror", f"policy lookup failed: {exc}")
        texts = [r.decode("ascii", "replace") for r in answer.records]
        records = [t for t in texts if t.startswith("v=DMARC1")]
        if len(records) != 1:  # none, or several: no policy (RFC 7489 6.6.3)
            return _Found(None, domain)
        try:
            return _Found(_parse_record(records[0]), domain)
        except _BadRecord as exc:
            return _Found(None, domain, "permerror", f"malformed policy record: {exc}")

    async def check_results(
        self, msg_meta: MsgMetadata, header: Header, results: tuple[AuthResult, ...]
    ) -> CheckResult:
        from_domain = _from_domain(header)
        if from_domain is None:
            why = "exactly one From field with one address is required"
            return CheckResult(
                reject=True,
                reason=SMTPError(550, (5, 7, 1), f"DMARC: {why}", check_name="dmarc"),
                auth_result=[_result("permerror", why, "")],
            )
        found = await self.fetch(from_domain)
        if found.error == "temperror":
            return CheckResult(
                reject=True,
                reason=SMTPError(450, (4, 7, 1), "DMARC check failed", check_name="dmarc"),
                auth_result=[_result("temperror", found.reason, from_domain)],
            )
        if found.record is None:
            return CheckResult(
                auth_result=[_result(found.error or "none", found.reason, from_domain)]
            )
        outcome, reason = evaluate(from_domain, found.record, results)
        result = CheckResult(auth_result=[_result(outcome, reason, from_domain)])
        if outcome != "fail":
            return result
        record = found.record
        if record.pct < 100 and random.randrange(100) >= record.pct:
            return result
        policy = record.policy
        if found.policy_domain != from_domain and record.subdomain_policy is not None:
            policy = record.subdomain_policy
        _log.info("msg %s: dmarc: %s fails, policy %s", msg_meta.id, from_domain, policy)
        if policy == "quarantine":
            return attrs.evolve(result, quarantine=True)
        if policy == "reject":
            reply = SMTPError(550, (5, 7, 1), "DMARC check failed", check_name="dmarc")
            return attrs.evolve(result, reject=True, reason=reply)
        return result


def _domain_of(value: str | None) -> str:
    if not value:
        return ""
    return value.rpartition("@")[2].lower().rstrip(".")


def evaluate(
    from_domain: str, record: DMARCRecord, results: Sequence[AuthResult]
) -> tuple[str, str | None]:
    """The DMARC result (pass, fail, none, temperror) and its reason, from the SPF and DKIM
    results, as maddy's EvaluateAlignment."""
    dkim_present = dkim_aligned = dkim_temp = False
    for res in results:
        if res.method == "dkim":
            dkim_present = True
            if aligned(from_domain, _domain_of(res.get("header", "d")), record.adkim):
                dkim_aligned = dkim_aligned or res.result == "pass"
                dkim_temp = dkim_temp or res.result == "temperror"
    # SPF authenticates the MAIL FROM domain; the HELO name only for the null sender
    # (RFC 7489 3.1.2), when check.spf reported no smtp.mailfrom.
    spf = [r for r in results if r.method == "spf"]
    chosen = next((r for r in spf if r.get("smtp", "mailfrom")), spf[0] if spf else None)
    spf_result = chosen.result if chosen is not None else ""
    spf_aligned = False
    if chosen is not None and chosen.result == "pass":
        domain = _domain_of(chosen.get("smtp", "mailfrom")) or _domain_of(
            chosen.get("smtp", "helo")
        )
        spf_aligned = aligned(from_domain, domain, record.aspf)
    if not dkim_present or not spf_result:
        return "none", "not enough information (SPF and DKIM checks are needed)"
    if dkim_temp and not dkim_aligned and not spf_aligned:
        return "temperror", "DKIM authentication temp error"
    if not dkim_aligned and spf_result == "temperror":
        return "temperror", "SPF authentication temp error"
    if dkim_aligned or spf_aligned:
        return "pass", None
    return "fail", "no aligned identifiers"


def _result(outcome: str, reason: str | None, from_domain: str) -> AuthResult:
    props = [AuthResultProperty("header", "from", from_domain)] if from_domain else []
    return AuthResult(method="dmarc", result=outcome, reason=reason, properties=props)
