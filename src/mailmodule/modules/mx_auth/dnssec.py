"""`mx_auth.dnssec`: an MX record from a DNSSEC-validated answer is `MX_DNSSEC`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, final

from mailmodule.config import ConfigMap, Setting
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState
from mailmodule.modules._base import ModuleBase

__all__ = ["DNSSECPolicy"]

_WEIGHT: Final = 1


@final
class DNSSECPolicy(ModuleBase):
    """`mx_auth.dnssec`: raise the MX level to `MX_DNSSEC` when the MX lookup was signed.

    "Signed" is what the target reports: the answer's AD bit from a validating resolver
    (`mailmodule.dns.Answer.authenticated`, with `dnssec = true` in the `[dns]` table).
    It never refuses and leaves TLS alone; `mx_auth.local_policy` with
    `min_mx_level = "dnssec"` makes the level a requirement. No settings; stateless.
    """

    SETTINGS: ClassVar[tuple[Setting[object], ...]] = ()

    def __init__(
        self,
        mod_name: str = "mx_auth.dnssec",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)

    def weight(self) -> int:
        return _WEIGHT

    def start(self, msg_meta: MsgMetadata) -> DNSSECPolicy:
        return self

    async def prepare_domain(self, domain: str) -> None:
        return None

    async def prepare_conn(self, mx: str) -> None:
        return None

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        return max(mx_level, MXLevel.MX_DNSSEC) if dnssec else mx_level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        return tls_level

    def reset(self, new_msg: MsgMetadata | None) -> None:
        return None
