"""`tls.loader.file`: certificates from PEM files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar, Final, final

from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import ConfigError
from mailmodule.interfaces import CertificateChain
from mailmodule.modules._base import ModuleBase

__all__ = ["FileTLSLoader"]


_CERTS: Final = Setting.raw(
    "certs",
    "the certificate chains and their keys, in PEM files",
    'list of ["certfile", "keyfile"] pairs',
    default=None,
    default_doc="required (in code: the inline arguments certfile keyfile)",
)


@final
class FileTLSLoader(ModuleBase):
    """`tls.loader.file`: a certificate chain and key from PEM files.

    Settings: `certs`, a list of [certfile, keyfile] pairs (or the inline arguments
    certfile keyfile). The files are checked at init; the endpoint loads them.
    """

    def __init__(
        self,
        mod_name: str = "tls.loader.file",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._chains: list[CertificateChain] = []

    SETTINGS: ClassVar = (_CERTS,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        raw = cfg.value(_CERTS, [list(self.inline_args)] if len(self.inline_args) == 2 else [])
        if not isinstance(raw, list) or not raw:
            raise ConfigError("expected [[certfile, keyfile], ...]", module=cfg.module, key="certs")
        chains = []
        for pair in raw:
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(p, str) for p in pair)
            ):
                raise ConfigError(
                    f"expected [certfile, keyfile], got {pair!r}", module=cfg.module, key="certs"
                )
            for path in pair:
                if not os.access(path, os.R_OK):
                    raise ConfigError(f"cannot read {path!r}", module=cfg.module, key="certs")
            chains.append(CertificateChain(certfile=pair[0], keyfile=pair[1]))
        self._chains = chains

    def load_certs(self) -> list[CertificateChain]:
        return list(self._chains)
