"""`modify.dkim`: signs messages with a key per domain (RFC 6376, RFC 8463)."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import time
from collections.abc import Sequence
from typing import ClassVar, Final, final

import attrs
import idna

from mailmodule import address
from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import AddressError, ConfigError
from mailmodule.header import Header, HeaderField
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.dkim import _canon, _crypto
from mailmodule.modules.dkim._canon import Canon
from mailmodule.modules.dkim._crypto import PrivateKey
from mailmodule.modules.dkim._tags import SELECTOR
from mailmodule.modules.dkim.keys import KEY_TYPES, KeyType, load_or_generate

__all__ = ["OVERSIGN_FIELDS", "SIGN_FIELDS", "DKIMSigner"]

_log = logging.getLogger("mailmodule.modules.dkim")

#: Signed once more than they occur, so that none can be added: maddy's list.
OVERSIGN_FIELDS: Final = (
    "Subject", "Sender", "To", "Cc", "From", "Date",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "Reply-To", "In-Reply-To", "Message-Id", "References",
    "Autocrypt", "Openpgp",
)  # fmt: skip
#: Signed as often as they occur: relays and list managers may add more (maddy's list).
SIGN_FIELDS: Final = (
    "List-Id", "List-Help", "List-Unsubscribe", "List-Post", "List-Owner", "List-Archive",
    "Resent-To", "Resent-Sender", "Resent-Message-Id", "Resent-Date", "Resent-From",
    "Resent-Cc",
)  # fmt: skip
_CANONS: Final = ("relaxed", "simple")
_DOMAINS: Final = Setting.string_list(
    "domains", "the domains to sign for", default_doc="required (or the inline arguments)"
)
_SELECTOR: Final = Setting.string(
    "selector", "the selector (s=)", default_doc="required (or the last inline argument)"
)
_KEY_PATH: Final = Setting.string(
    "key_path",
    "the key file per domain; a missing one is generated, with its TXT record beside it",
    "dkim_keys/{domain}_{selector}.key",
)
_NEWKEY_ALGO: Final = Setting.string(
    "newkey_algo", "the type of a generated key", "rsa2048", type_doc="rsa2048, rsa4096 or ed25519"
)
_OVERSIGN: Final = Setting.string_list(
    "oversign_fields", "fields signed once more than they occur", list(OVERSIGN_FIELDS)
)
_SIGN: Final = Setting.string_list(
    "sign_fields", "fields signed as often as they occur", list(SIGN_FIELDS)
)
_HEADER_CANON: Final = Setting.string(
    "header_canon", "header canonicalization", "relaxed", type_doc="relaxed or simple"
)
_BODY_CANON: Final = Setting.string(
    "body_canon", "body canonicalization", "relaxed", type_doc="relaxed or simple"
)
_SIG_EXPIRY: Final = Setting.duration(
    "sig_expiry", "x= this long after signing; 0 for none", datetime.timedelta(days=5)
)
_HASH: Final = Setting.string("hash", "the hash algorithm", "sha256", type_doc="sha256 only")
_MULTIPLE_FROM: Final = Setting.boolean(
    "allow_multiple_from", "sign messages with several From fields", False
)
_SUBDOMAINS: Final = Setting.boolean(
    "sign_subdomains", "sign a subdomain's sender with the one domain's key", False
)


@final
class DKIMSigner(ModuleBase):
    """`modify.dkim`: adds a DKIM-Signature to each message, as maddy's modify.dkim.

    The signing domain is the envelope sender's; for the null sender and postmaster it
    is the From field's domain when a key is configured for it, else the first of
    `domains`. A message whose domain has no key is passed on unsigned. With
    `sign_subdomains`, a sender in a subdomain of the one domain signs with it.

    Settings (inline: `modify.dkim DOMAIN... SELECTOR`):
        domains, selector: required.
        key_path: the key file per domain (default "dkim_keys/{domain}_{selector}.key");
            a missing key is generated (see `newkey_algo`) and its TXT record written
            beside it as .dns, to be published at SELECTOR._domainkey.DOMAIN.
        newkey_algo: rsa2048 (default), rsa4096 or ed25519.
        oversign_fields, sign_fields: the fields signed (defaults `OVERSIGN_FIELDS`,
            `SIGN_FIELDS`); oversigned ones are listed once more than they occur.
        header_canon, body_canon: relaxed (default) or simple.
        sig_expiry: x= this long after signing (default 5 days; 0 for none).
        hash: sha256, the only one (RFC 8301).
        allow_multiple_from: sign a message with several From fields (default false:
            passed on unsigned, as verifiers refuse them).
        sign_subdomains: see above; only with a single domain.
    """

    SETTINGS: ClassVar = (
        _DOMAINS,
        _SELECTOR,
        _KEY_PATH,
        _NEWKEY_ALGO,
        _OVERSIGN,
        _SIGN,
        _HEADER_CANON,
        _BODY_CANON,
        _SIG_EXPIRY,
        _HASH,
        _MULTIPLE_FROM,
        _SUBDOMAINS,
    )

    def __init__(
        self,
        mod_name: str = "modify.dkim",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.domains: list[str] = []
        self.selector = ""
        self.keys: dict[str, PrivateKey] = {}
        self.oversign: tuple[str, ...] = OVERSIGN_FIELDS
        self.sign: tuple[str, ...] = SIGN_FIELDS
        self.canon: tuple[Canon, Canon] = ("relaxed", "relaxed")
        self.expiry = datetime.timedelta(days=5)
        self.multiple_from_ok = False
        self.sign_subdomains = False

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        domains: list[str] = []
        selector = ""
        if self.inline_args:
            if len(self.inline_args) < 2:
                raise ConfigError("expected DOMAIN... SELECTOR", module=cfg.module)
            domains = list(self.inline_args[:-1])
            selector = self.inline_args[-1]
        domains = cfg.value(_DOMAINS, domains)
        selector = cfg.value(_SELECTOR, selector)
        if not domains:
            raise ConfigError("at least one domain is needed", module=cfg.module, key="domains")
        if not selector:
            raise ConfigError("required key is missing", module=cfg.module, key="selector")
        template = cfg.value(_KEY_PATH)
        algo = cfg.value(_NEWKEY_ALGO)
        if algo not in KEY_TYPES:
            raise ConfigError(
                f"expected one of {', '.join(KEY_TYPES)}, got {algo!r}",
                module=cfg.module,
                key="newkey_algo",
            )
        self.oversign = tuple(cfg.value(_OVERSIGN))
        self.sign = tuple(cfg.value(_SIGN))
        self.canon = (_canon_setting(cfg, _HEADER_CANON), _canon_setting(cfg, _BODY_CANON))
        self.expiry = cfg.value(_SIG_EXPIRY)
        if cfg.value(_HASH) != "sha256":
            raise ConfigError("only sha256 is allowed (RFC 8301)", module=cfg.module, key="hash")
        self.multiple_from_ok = cfg.value(_MULTIPLE_FROM)
        self.sign_subdomains = cfg.value(_SUBDOMAINS)
        if self.sign_subdomains and len(domains) > 1:
            raise ConfigError(
                "sign_subdomains takes a single domain", module=cfg.module, key="domains"
            )
        self.domains, self.selector = [], selector
        if not SELECTOR.fullmatch(selector):
            raise ConfigError(f"not a selector: {selector!r}", module=cfg.module, key="selector")
        for domain in domains:
            try:  # also keeps "/" and ".." out of key_path
                key_domain = address.domain_for_lookup(domain)
                if not address.is_valid_domain(key_domain):
                    raise AddressError("invalid domain", address=domain)
            except AddressError as exc:
                raise ConfigError(
                    f"not a domain: {domain!r}", module=cfg.module, key="domains"
                ) from exc
            path = template.replace("{domain}", domain).replace("{selector}", selector)
            try:
                key, record_path = load_or_generate(path, _key_type(algo))
            except ConfigError as exc:
                raise ConfigError(exc.message, module=cfg.module, key="key_path") from exc
            if record_path is not None:
                _log.warning(
                    "modify.dkim: generated a new %s key in %s; publish the TXT record in %s "
                    "at %s._domainkey.%s",
                    algo,
                    path,
                    record_path,
                    selector,
                    domain,
                )
            self.domains.append(key_domain)
            self.keys[key_domain] = key

    def fields_to_sign(self, header: Header) -> list[str]:
        """The h= list for `header`: each field as often as it occurs, oversigned ones once
        more; a name configured twice counts once."""
        names: list[str] = []
        seen: set[str] = set()
        for oversign, configured in ((True, self.oversign), (False, self.sign)):
            for name in configured:
                if name.lower() in seen:
                    continue
                seen.add(name.lower())
                names.extend([name] * (len(header.fields(name)) + oversign))
        return names

    def domain_for(self, mail_from: str, header: Header) -> str | None:
        """The domain to sign for (lookup form), as the class docstring says; None when
        there is no key for it."""
        try:
            domain = address.split(mail_from)[1] if mail_from else ""
            domain = address.domain_for_lookup(domain) if domain else ""
        except AddressError:
            return None
        if not domain:  # the null sender, postmaster
            domain = _from_domain(header) or ""
            if domain not in self.keys:
                domain = self.domains[0]
        if self.sign_subdomains and domain.endswith("." + self.domains[0]):
            domain = self.domains[0]
        return domain if domain in self.keys else None

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> _SignState:
        return _SignState(self, msg_meta.id)


def _key_type(value: str) -> KeyType:
    for kind in KEY_TYPES:
        if kind == value:
            return kind
    raise ValueError(value)


def _canon_setting(cfg: ConfigMap, setting: Setting[str]) -> Canon:
    key = setting.name
    value = cfg.value(setting)
    if value == "relaxed":
        return "relaxed"
    if value == "simple":
        return "simple"
    raise ConfigError(f"expected relaxed or simple, got {value!r}", module=cfg.module, key=key)


def _from_domain(header: Header) -> str | None:
    froms = header.values("From")
    if len(froms) != 1:
        return None
    addr = email.utils.parseaddr(froms[0])[1]
    try:
        return address.domain_for_lookup(address.split(addr)[1])
    except AddressError:
        return None


@final
@attrs.define
class _SignState:
    _signer: DKIMSigner
    _msg_id: str
    _mail_from: str = ""

    async def rewrite_sender(self, mail_from: str) -> str:
        self._mail_from = mail_from
        return mail_from

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        return [rcpt_to]

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        signer = self._signer
        if len(header.fields("From")) > 1 and not signer.multiple_from_ok:
            _log.info("msg %s: modify.dkim: several From fields, not signed", self._msg_id)
            return
        domain = signer.domain_for(self._mail_from, header)
        if domain is None:
            _log.info("msg %s: modify.dkim: no key for the sender's domain", self._msg_id)
            return
        try:  # d= in A-labels, which every verifier reads
            d = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            _log.warning("msg %s: modify.dkim: %r has no A-label form", self._msg_id, domain)
            return
        now = int(time.time())
        expiry = int(signer.expiry.total_seconds())
        field = await asyncio.to_thread(
            _sign,
            header,
            body,
            signer.keys[domain],
            d,
            signer.selector,
            signer.fields_to_sign(header),
            signer.canon,
            now,
            now + expiry if expiry else None,
        )
        header.add_field(field)

    def close(self) -> None:
        pass


def _sign(
    header: Header,
    body: Buffer,
    key: PrivateKey,
    domain: str,
    selector: str,
    names: list[str],
    canon: tuple[Canon, Canon],
    now: int,
    expires: int | None,
) -> HeaderField:
    with body.open() as reader:
        data = reader.read()
    fields = [_canon.wire(f.raw) for f in header]
    raw = _crypto.sign(
        fields=fields,
        body=data,
        key=key,
        domain=domain,
        selector=selector,
        names=names,
        canon=canon,
        timestamp=now,
        expires=expires,
    )
    lf_header = bool(fields) and not any(f.raw.endswith(b"\r\n") for f in header)
    return HeaderField("DKIM-Signature", raw.replace(b"\r\n", b"\n") if lf_header else raw)
