"""`check.spf` and the RFC 7208 evaluator it runs."""

from __future__ import annotations

from mailmodule.modules.spf._eval import SPFResult as SPFResult
from mailmodule.modules.spf._eval import check_host as check_host

__all__ = ["SPFResult", "check_host"]
