"""`mx_auth.dane`: DANE for SMTP (RFC 7672), TLSA records vouching for an MX's certificate.

Before each connection the MX host's address and its `_25._tcp.<mx>` TLSA records are
looked up through the shared resolver; only DNSSEC-validated answers count (the AD bit:
the `[dns]` table needs `dnssec = true` and a validating server, else this policy never
applies). RFC 7672's rules then decide:

- the MX RRset or the host's address records are not validated: DANE does not apply;
- a validated denial (no TLSA records): DANE does not apply;
- the TLSA lookup failed (a time-out, SERVFAIL, often a bogus signature): the MX is not
  used for now (451 4.7.5, section 2.1.1);
- TLSA records exist: TLS is required (451 4.7.4 without it) even when none is usable
  (section 2.2); when some are usable, the certificate chain must match one (DANE-EE, or
  DANE-TA with the MX name checked), else 451 4.7.5, and a match raises the TLS level to
  `TLS_AUTHENTICATED`, whatever PKIX said.

Refusals are temporary: the target tries the next MX and the queue tries again later.
CNAMEs are not chased: the TLSA base name is the MX host name as given.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from typing import ClassVar, Final, final

import attrs

from mailmodule.config import ConfigMap, Setting
from mailmodule.dns import TLSA, DNSError, Resolver, shared_resolver
from mailmodule.errors import SMTPError
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState
from mailmodule.modules._base import ModuleBase
from mailmodule.modules.mx_auth._tlsa import authenticates, usable_records

__all__ = ["DANEPolicy"]

_WEIGHT: Final = 10


@final
@attrs.frozen
class _Found:
    """The TLSA records of an MX host; None when DANE does not apply; or the lookup error."""

    records: tuple[TLSA, ...] | None
    error: DNSError | None = None


@final
class DANEPolicy(ModuleBase):
    """`mx_auth.dane`: the MXAuthPolicy of DANE; see the module docstring. No settings.

    `tlsa(mx)` is the lookup itself, for tools and tests.
    """

    SETTINGS: ClassVar[tuple[Setting[object], ...]] = ()

    def __init__(
        self,
        mod_name: str = "mx_auth.dane",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._resolver: Resolver | None = None

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self._resolver = shared_resolver(cfg)

    def weight(self) -> int:
        return _WEIGHT

    def start(self, msg_meta: MsgMetadata) -> _DANEDelivery:
        return _DANEDelivery(self)

    async def tlsa(self, mx: str) -> tuple[TLSA, ...] | None:
        """The validated TLSA records of MX host `mx`; None when DANE does not apply to it.

        Raises:
            DNSError: a lookup failed; RFC 7672 then wants the MX left alone for now.
        """
        assert self._resolver is not None, "init was not called"
        host = mx.rstrip(".")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return None  # an address literal has no TLSA base name
        if not (await self._resolver.a(host)).authenticated:
            return None
        answer = await self._resolver.tlsa(f"_25._tcp.{host}")
        return answer.records if answer.authenticated else None


@final
class _DANEDelivery:
    def __init__(self, owner: DANEPolicy) -> None:
        self._owner = owner
        self._lookups: dict[str, asyncio.Task[_Found]] = {}
        self._secure_mx: dict[str, bool] = {}

    async def prepare_domain(self, domain: str) -> None:
        return None

    async def prepare_conn(self, mx: str) -> None:
        if mx not in self._lookups:
            self._lookups[mx] = asyncio.create_task(self._find(mx))

    async def _find(self, mx: str) -> _Found:
        try:
            return _Found(await self._owner.tlsa(mx))
        except DNSError as exc:
            return _Found(None, exc)

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        self._secure_mx[mx] = dnssec
        return mx_level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        if not self._secure_mx.get(mx, False):
            return tls_level  # RFC 7672 section 2.2.1: an insecure MX RRset turns DANE off
        await self.prepare_conn(mx)
        found = await self._lookups[mx]
        misc = {"domain": domain, "mx": mx}
        if found.error is not None:
            raise SMTPError(
                451,
                (4, 7, 5),
                "TLSA lookup failed (DANE)",
                misc={**misc, "error": str(found.error)},
            ) from found.error
        if not found.records:
            return tls_level
        if not tls_state.handshake_complete:
            raise SMTPError(451, (4, 7, 4), "TLS is required by DANE but unavailable", misc=misc)
        if not usable_records(found.records):
            return tls_level
        if not authenticates(found.records, tls_state.peer_certificates, mx.rstrip(".")):
            raise SMTPError(
                451, (4, 7, 5), "MX certificate matches no TLSA record (DANE)", misc=misc
            )
        return max(tls_level, TLSLevel.TLS_AUTHENTICATED)

    def reset(self, new_msg: MsgMetadata | None) -> None:
        for task in self._lookups.values():
            task.cancel()
        self._lookups.clear()
        self._secure_mx.clear()
