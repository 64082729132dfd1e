"""`check.spf` and the RFC 7208 evaluator it runs."""

from __future__ import annotations

from mailmodule.modules.spf._check import SPFCheck as SPFCheck
from mailmodule.modules.spf._check import dmarc_policy_enforced as dmarc_policy_enforced
from mailmodule.modules.spf._eval import Evaluator as Evaluator
from mailmodule.modules.spf._eval import SPFResult as SPFResult
from mailmodule.modules.spf._eval import check_host as check_host

__all__ = ["Evaluator", "SPFCheck", "SPFResult", "check_host", "dmarc_policy_enforced"]
