"""`check.dnsbl`: scores a client by the DNS block lists (RFC 5782) that list it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import ClassVar, Final, final

import attrs

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import (
    DNSPermanentError,
    DNSTemporaryError,
    Resolver,
    default_resolver,
    shared_resolver,
)
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import CheckResult
from mailmodule.metadata import ConnState, MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["DNSBLCheck", "DNSList", "Listing", "ResponseRule", "reversed_name"]

_log = logging.getLogger("mailmodule.modules.dnsbl")
_NOTHING: Final = CheckResult()
_LISTED: Final = "Client identity is listed in the used DNSBL"
_LIST_KEYS: Final = frozenset(
    {"client_ipv4", "client_ipv6", "ehlo", "mailfrom", "score", "responses", "response"}
)
_RULE_KEYS: Final = frozenset({"networks", "score", "message"})
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LISTS: Final = Setting.raw(
    "lists",
    "the lists to ask: zone -> client_ipv4, client_ipv6, ehlo, mailfrom, score, responses, "
    "response",
    "table of zone = table",
    {},
    default_doc="none beyond the inline arguments (at least one list is required)",
)
_QUARANTINE_THRESHOLD: Final = Setting.integer(
    "quarantine_threshold", "the score from which a message is quarantined", 1
)
_REJECT_THRESHOLD: Final = Setting.integer(
    "reject_threshold", "the score from which a message is refused", 9999
)
_CHECK_EARLY: Final = Setting.boolean(
    "check_early", "refuse a client over reject_threshold when it connects", False
)


@final
@attrs.frozen(kw_only=True)
class ResponseRule:
    """Answers within `networks` add `score` (and `message`, for the reply)."""

    networks: tuple[IPNetwork, ...]
    score: int
    message: str = ""


@final
@attrs.frozen(kw_only=True)
class DNSList:
    """One list: its zone, which identities it is asked about, how answers count."""

    zone: str
    client_ipv4: bool = True
    client_ipv6: bool = False
    ehlo: bool = False
    mailfrom: bool = False
    score: int = 1
    responses: tuple[IPNetwork, ...] = (ipaddress.IPv4Network("127.0.0.0/24"),)
    rules: tuple[ResponseRule, ...] = ()


@final
@attrs.frozen
class Listing:
    """Where a list named an identity: the list's zone, the identity (an address or a
    domain), the score it adds, the reason (the list's TXT record or its answers) and
    the message of the response rule that matched."""

    zone: str
    identity: str
    score: int
    reason: str
    message: str


@final
class DNSBLCheck(ModuleBase):
    """`check.dnsbl`, as maddy's: the client's IP address (IPv4 octets or IPv6 nibbles
    reversed), its EHLO name and its MAIL FROM domain looked up in each list; the scores
    of the lists that list it add up.

    Settings:
        lists: a table of zone -> list settings (or the zones as inline arguments, each
            with the defaults): `client_ipv4` (default true), `client_ipv6` (false),
            `ehlo` (false), `mailfrom` (false), `score` (1; negative for a list of good
            clients, then without `ehlo` or `mailfrom`), `responses` (the answers that
            count, networks or addresses, default ["127.0.0.1/24"]), and `response`, a
            list of `{ networks = [...], score = N, message = "..." }` rules that replace
            `responses` and `score` (each rule counts once).
        quarantine_threshold: the score from which a message is quarantined (default 1).
        reject_threshold: the score from which it is refused (default 9999), with 554
            5.7.0 and the rules' messages or "Client identity is listed in the used DNSBL".
        check_early: also refuse, when it connects, a client whose address alone reaches
            `reject_threshold` (default false; an EarlyCheck, as maddy's).

    A temporary DNS failure of any list refuses the message for now (451 4.7.0); a list
    that refuses queries (a permanent DNS error) is skipped with a warning. An EHLO
    address literal is not looked up, nor a MAIL FROM domain equal to the EHLO name of a
    list asked about both. Messages without a client address are not checked. The lists'
    TXT records (or the answers) are logged as the reason, never sent to the client.
    """

    def __init__(
        self,
        mod_name: str = "check.dnsbl",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.lists: tuple[DNSList, ...] = ()
        self.quarantine_threshold = 1
        self.reject_threshold = 9999
        self.check_early = False
        self.resolver: Resolver | None = None

    SETTINGS: ClassVar = (_LISTS, _QUARANTINE_THRESHOLD, _REJECT_THRESHOLD, _CHECK_EARLY)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self.resolver = shared_resolver(cfg)
        self.quarantine_threshold = cfg.value(_QUARANTINE_THRESHOLD)
        self.reject_threshold = cfg.value(_REJECT_THRESHOLD)
        self.check_early = cfg.value(_CHECK_EARLY)
        lists = [DNSList(zone=_zone(cfg, zone)) for zone in self.inline_args]
        raw = cfg.value(_LISTS)
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "expected a table of zone -> settings", module=cfg.module, key="lists"
            )
        for zone, settings in raw.items():
            lists.append(_list(cfg, str(zone), settings))
        if not lists:
            raise ConfigError("no lists to check", module=cfg.module, key="lists")
        self.lists = tuple(lists)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _DNSBLState:
        return _DNSBLState(self, msg_meta)

    async def check_connection(self, state: ConnState) -> None:
        """With `check_early`, refuse a client whose address alone scores the reject
        threshold, when it connects (EarlyCheck); the EHLO name and MAIL FROM domain are
        not known yet and wait for the message.

        Raises:
            SMTPError: 554 5.7.0 for a listed client; 451 4.7.0 on DNS trouble.
        """
        if not self.check_early or state.remote_ip is None:
            return
        try:
            found = await self.listings(state.remote_ip, "", "")
        except DNSTemporaryError as exc:
            raise _dns_trouble(exc) from exc
        verdict = self.verdict(found)
        if verdict.reject and verdict.reason is not None:
            raise verdict.reason

    def verdict(self, found: Sequence[Listing]) -> CheckResult:
        """What the listings add up to: refused at `reject_threshold`, quarantined at
        `quarantine_threshold`, else nothing."""
        score = sum(listing.score for listing in found)
        messages = [listing.message for listing in found if listing.message]
        reason = SMTPError(
            554,
            (5, 7, 0),
            "; ".join(messages) or _LISTED,
            check_name=self.instance_name() or self.name(),
            misc={"lists": [listing.zone for listing in found], "score": score},
        )
        if found and score >= self.reject_threshold:
            return CheckResult(reject=True, reason=reason)
        if found and score >= self.quarantine_threshold:
            return CheckResult(quarantine=True)
        return _NOTHING

    async def listings(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ehlo: str, mail_from: str
    ) -> list[Listing]:
        """Where the client is listed, every list asked at once.

        Raises:
            DNSTemporaryError: a list could not be asked for now.
        """
        queries = [
            (dns_list, identity, name)
            for dns_list in self.lists
            for identity, name in _queries(dns_list, ip, ehlo, mail_from)
        ]
        found = await asyncio.gather(*(self._ask(*q) for q in queries))
        return [listing for listing in found if listing is not None]

    async def _ask(self, dns_list: DNSList, identity: str, name: str) -> Listing | None:
        resolver = self.resolver or default_resolver()
        try:
            answer = await resolver.a(name)
        except DNSPermanentError as exc:
            _log.warning("check.dnsbl: %s refuses queries, skipped: %s", dns_list.zone, exc)
            return None
        addresses = answer.records
        if dns_list.rules:
            hits = [r for r in dns_list.rules if any(a in n for a in addresses for n in r.networks)]
            if not hits:
                return None
            score = sum(r.score for r in hits)
            message = next((r.message for r in hits if r.message), "")
        else:
            if not any(a in n for a in addresses for n in dns_list.responses):
                return None
            score, message = dns_list.score, ""
        try:
            texts = (await resolver.txt(name)).records
        except (DNSTemporaryError, DNSPermanentError):
            texts = ()
        reason = "; ".join(t.decode("ascii", "replace") for t in texts) or "; ".join(
            str(a) for a in addresses
        )
        return Listing(dns_list.zone, identity, score, reason, message)


def _dns_trouble(exc: DNSTemporaryError) -> SMTPError:
    return SMTPError(451, (4, 7, 0), "DNS error during policy check", misc={"error": str(exc)})


def _zone(cfg: ConfigMap, zone: str) -> str:
    name = zone.strip().rstrip(".").lower()
    if not address.is_valid_domain(name) or "." not in name:
        raise ConfigError(f"expected a DNS zone, got {zone!r}", module=cfg.module, key="lists")
    return name


def _flag(
    cfg: ConfigMap, zone: str, settings: Mapping[str, object], key: str, default: bool
) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(
            f"lists.{zone}: {key} must be true or false", module=cfg.module, key="lists"
        )
    return value


def _int(cfg: ConfigMap, where: str, value: object) -> int:
    if type(value) is not int:
        raise ConfigError(f"{where} must be an integer", module=cfg.module, key="lists")
    return value


def _networks(cfg: ConfigMap, where: str, value: object) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{where} must be a list of addresses or networks", module=cfg.module, key="lists"
        )
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}", module=cfg.module, key="lists") from exc


def _list(cfg: ConfigMap, zone: str, settings: object) -> DNSList:
    name = _zone(cfg, zone)
    if not isinstance(settings, Mapping):
        raise ConfigError(f"lists.{zone} must be a table", module=cfg.module, key="lists")
    unknown = sorted(set(settings) - _LIST_KEYS)
    if unknown:
        raise ConfigError(
            f"lists.{zone}: unknown key {unknown[0]!r}", module=cfg.module, key="lists"
        )
    score = _int(cfg, f"lists.{zone}.score", settings.get("score", 1))
    ehlo = _flag(cfg, zone, settings, "ehlo", False)
    mailfrom = _flag(cfg, zone, settings, "mailfrom", False)
    if score < 0 and (ehlo or mailfrom):
        raise ConfigError(
            f"lists.{zone}: a negative score is for client addresses only, not ehlo or mailfrom",
            module=cfg.module,
            key="lists",
        )
    rules = []
    raw_rules = settings.get("response", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"lists.{zone}.response must be a list", module=cfg.module, key="lists")
    for i, rule in enumerate(raw_rules):
        where = f"lists.{zone}.response[{i}]"
        if not isinstance(rule, Mapping) or set(rule) - _RULE_KEYS or "networks" not in rule:
            raise ConfigError(
                f'{where} must be {{ networks = [...], score = N, message = "..." }}',
                module=cfg.module,
                key="lists",
            )
        message = rule.get("message", "")
        if not isinstance(message, str):
            raise ConfigError(f"{where}.message must be a string", module=cfg.module, key="lists")
        rules.append(
            ResponseRule(
                networks=_networks(cfg, f"{where}.networks", rule["networks"]),
                score=_int(cfg, f"{where}.score", rule.get("score", 0)),
                message=message,
            )
        )
    responses = settings.get("responses", ["127.0.0.1/24"])
    return DNSList(
        zone=name,
        client_ipv4=_flag(cfg, zone, settings, "client_ipv4", True),
        client_ipv6=_flag(cfg, zone, settings, "client_ipv6", False),
        ehlo=ehlo,
        mailfrom=mailfrom,
        score=score,
        responses=_networks(cfg, f"lists.{zone}.responses", responses),
        rules=tuple(rules),
    )


def reversed_name(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The name a list is asked for `ip` (without the zone): IPv4 octets reversed, IPv6
    nibbles reversed; an IPv4-mapped IPv6 address as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


def _queries(
    dns_list: DNSList,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ehlo: str,
    mail_from: str,
) -> list[tuple[str, str]]:
    """(identity, name) pairs to ask `dns_list` about."""
    found = []
    v4 = isinstance(ip, ipaddress.IPv4Address) or ip.ipv4_mapped is not None
    if dns_list.client_ipv4 if v4 else dns_list.client_ipv6:
        found.append((str(ip), f"{reversed_name(ip)}.{dns_list.zone}"))
    ehlo = ehlo.rstrip(".").lower()
    literal = ehlo.startswith("[")
    if dns_list.ehlo and ehlo and not literal and address.is_valid_domain(ehlo):
        found.append((ehlo, f"{ehlo}.{dns_list.zone}"))
    if dns_list.mailfrom and mail_from:
        try:
            domain = address.split(mail_from)[1].rstrip(".").lower()
        except AddressError:
            domain = ""
        same = dns_list.ehlo and domain == ehlo
        if domain and not same and not domain.startswith("[") and address.is_valid_domain(domain):
            found.append((domain, f"{domain}.{dns_list.zone}"))
    return found


@final
class _DNSBLState:
    def __init__(self, check: DNSBLCheck, meta: MsgMetadata) -> None:
        self._check = check
        self._meta = meta

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        conn = self._meta.conn
        if conn is None or conn.remote_ip is None:
            return _NOTHING
        check = self._check
        try:
            found = await check.listings(conn.remote_ip, conn.hostname, mail_from)
        except DNSTemporaryError as exc:
            _log.warning("msg %s: check.dnsbl: %s", self._meta.id, exc)
            return CheckResult(reject=True, reason=_dns_trouble(exc))
        for listing in found:
            _log.info(
                "msg %s: check.dnsbl: %s listed on %s (score %d): %s",
                self._meta.id,
                listing.identity,
                listing.zone,
                listing.score,
                listing.reason,
            )
        return check.verdict(found)

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return _NOTHING

    def close(self) -> None:
        pass
