"""`mx_auth.local_policy`: the least MX and TLS security this server accepts, applied last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, TypeVar, final

from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError, SMTPError
from mailmodule.interfaces import MXLevel, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState
from mailmodule.modules._base import ModuleBase

__all__ = ["LocalPolicy"]

_MIN_TLS = Setting.string(
    "min_tls_level",
    "the least TLS security a connection must reach",
    "encrypted",
    type_doc="none, encrypted or authenticated",
)
_MIN_MX = Setting.string(
    "min_mx_level",
    "the least security an MX record must reach",
    "none",
    type_doc="none, mtasts or dnssec",
)
_WEIGHT: Final = 1000  # last: it judges what the other policies established
_L = TypeVar("_L", TLSLevel, MXLevel)


@final
class LocalPolicy(ModuleBase):
    """`mx_auth.local_policy`: refuse an MX or a connection below the configured levels.

    Settings: `min_tls_level` (default "encrypted"), `min_mx_level` (default "none").
    Refusals are temporary (451 4.7.0 for the MX, 451 4.7.1 for TLS), as maddy's: a
    policy evaluation spoiled by a passing DNS failure must not bounce mail. The levels
    pass through unchanged. One object serves every delivery: it keeps no state.
    """

    SETTINGS: ClassVar = (_MIN_TLS, _MIN_MX)

    def __init__(
        self,
        mod_name: str = "mx_auth.local_policy",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self.min_tls_level = TLSLevel.TLS_ENCRYPTED
        self.min_mx_level = MXLevel.MX_NONE

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        self.min_tls_level = _level(cfg, _MIN_TLS, TLSLevel)
        self.min_mx_level = _level(cfg, _MIN_MX, MXLevel)

    def weight(self) -> int:
        return _WEIGHT

    def start(self, msg_meta: MsgMetadata) -> LocalPolicy:
        return self

    async def prepare_domain(self, domain: str) -> None:
        return None

    async def prepare_conn(self, mx: str) -> None:
        return None

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        if mx_level < self.min_mx_level:
            raise SMTPError(
                451,
                (4, 7, 0),
                "Failed to establish the MX record authenticity",
                misc={"mx": mx, "mx_level": str(mx_level), "required": str(self.min_mx_level)},
            )
        return mx_level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        if tls_level < self.min_tls_level:
            raise SMTPError(
                451,
                (4, 7, 1),
                "TLS is not available or not authenticated but required",
                misc={
                    "mx": mx,
                    "tls_level": str(tls_level),
                    "required": str(self.min_tls_level),
                },
            )
        return tls_level

    def reset(self, new_msg: MsgMetadata | None) -> None:
        return None


def _level(cfg: ConfigMap, setting: Setting[str], kind: type[_L]) -> _L:
    text = cfg.value(setting)
    for level in kind:
        if str(level) == text:
            return level
    raise ConfigError(
        f"expected {setting.type_doc}, got {text!r}", module=cfg.module, key=setting.name
    )
