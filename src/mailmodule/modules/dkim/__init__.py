"""DKIM (RFC 6376, RFC 8463 ed25519): `check.dkim` verifies, `modify.dkim` signs."""

from __future__ import annotations

from mailmodule.modules.dkim.check import DKIMCheck as DKIMCheck
from mailmodule.modules.dkim.modify import DKIMSigner as DKIMSigner

__all__ = ["DKIMCheck", "DKIMSigner"]
