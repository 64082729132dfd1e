"""MX authentication policies (the seed's `MXAuthPolicy`): what outbound delivery may trust.

`mx_auth.local_policy` (minimum levels), `mx_auth.mtasts` (RFC 8461), `mx_auth.dane`
(RFC 7672) and `mx_auth.dnssec` (the AD bit), applied by `PolicyGroup` in weight order.
"""

from __future__ import annotations

from mailmodule.modules.mx_auth._sts import STSMode as STSMode
from mailmodule.modules.mx_auth._sts import STSPolicy as STSPolicy
from mailmodule.modules.mx_auth._sts import STSPolicyError as STSPolicyError
from mailmodule.modules.mx_auth._sts import parse_policy as parse_policy
from mailmodule.modules.mx_auth._sts import parse_record as parse_record
from mailmodule.modules.mx_auth._tlsa import authenticates as authenticates
from mailmodule.modules.mx_auth.dane import DANEPolicy as DANEPolicy
from mailmodule.modules.mx_auth.dnssec import DNSSECPolicy as DNSSECPolicy
from mailmodule.modules.mx_auth.group import PolicyDelivery as PolicyDelivery
from mailmodule.modules.mx_auth.group import PolicyGroup as PolicyGroup
from mailmodule.modules.mx_auth.local_policy import LocalPolicy as LocalPolicy
from mailmodule.modules.mx_auth.mtasts import MTASTSPolicy as MTASTSPolicy

__all__ = [
    "DANEPolicy",
    "DNSSECPolicy",
    "LocalPolicy",
    "MTASTSPolicy",
    "PolicyDelivery",
    "PolicyGroup",
    "STSMode",
    "STSPolicy",
    "STSPolicyError",
    "authenticates",
    "parse_policy",
    "parse_record",
]
