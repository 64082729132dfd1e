"""`check.require_mx_record`: the MAIL FROM domain must be able to receive replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, final

import idna

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
from mailmodule.errors import AddressError, SMTPError
from mailmodule.header import Header
from mailmodule.interfaces import CheckResult
from mailmodule.metadata import MsgMetadata
from mailmodule.modules._base import ModuleBase

__all__ = ["RequireMXCheck"]

_NOTHING: Final = CheckResult()
_NAME: Final = "require_mx_record"


@final
class RequireMXCheck(ModuleBase):
    """`check.require_mx_record`, as maddy's: the MAIL FROM domain must have MX records
    (an A or AAAA record alone does not do, as in maddy), and not the null MX of RFC 7505.

    Failures carry a reason, so the pipeline's `fail_action` decides (maddy's default for
    this check is quarantine: write `fail_action = "quarantine"` for it):
    550 5.7.27 for no MX (the domain may not exist) and for a null MX ("."), 550 5.1.7
    for a sender address that is not one or whose domain is not a valid IDN, 450 4.7.0
    for a temporary DNS failure. The null sender passes; so do address literals
    (`joe@[192.0.2.1]`), which need no MX.
    """

    def __init__(
        self,
        mod_name: str = "check.require_mx_record",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.resolver: Resolver | None = None

    SETTINGS: ClassVar[tuple[Setting[object], ...]] = ()

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self.resolver = shared_resolver(cfg)

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> _RequireMXState:
        return _RequireMXState(self)

    async def verdict(self, mail_from: str) -> CheckResult:
        """The check's result for the MAIL FROM address `mail_from`."""
        if not mail_from:
            return _NOTHING
        try:
            domain = address.split(mail_from)[1]
            if not domain:
                raise AddressError("no domain", address=mail_from)
            if domain.startswith("["):
                return _NOTHING
            domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
        except (AddressError, idna.IDNAError, UnicodeError):
            return _refusal(550, (5, 1, 7), "Malformed sender address")
        resolver = self.resolver or default_resolver()
        try:
            answer = await resolver.mx(domain)
        except DNSTemporaryError as exc:
            return _refusal(450, (4, 7, 0), "DNS error during policy check", str(exc))
        except DNSPermanentError:
            return _refusal(550, (5, 1, 7), "Malformed sender address")
        if not answer.records:
            return _refusal(550, (5, 7, 27), "Domain in MAIL FROM does not have any MX records")
        if any(mx.exchange == "" for mx in answer.records):
            return _refusal(550, (5, 7, 27), "Domain in MAIL FROM has null MX record")
        return _NOTHING


def _refusal(
    code: int, enhanced: tuple[int, int, int], message: str, error: str = ""
) -> CheckResult:
    misc = {"error": error} if error else None
    return CheckResult(reason=SMTPError(code, enhanced, message, check_name=_NAME, misc=misc))


@final
class _RequireMXState:
    def __init__(self, check: RequireMXCheck) -> None:
        self._check = check

    async def check_connection(self) -> CheckResult:
        return _NOTHING

    async def check_sender(self, mail_from: str) -> CheckResult:
        return await self._check.verdict(mail_from)

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return _NOTHING

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return _NOTHING

    def close(self) -> None:
        pass
