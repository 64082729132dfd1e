"""The message pipeline: runs checks, modifiers and delivery targets by their contracts."""

from __future__ import annotations

from mailmodule.pipeline._authresults import authserv_id_of as authserv_id_of
from mailmodule.pipeline._authresults import (
    format_authentication_results as format_authentication_results,
)
from mailmodule.pipeline._authresults import (
    parse_authentication_results as parse_authentication_results,
)
from mailmodule.pipeline._authresults import (
    remove_forged_authentication_results as remove_forged_authentication_results,
)
from mailmodule.pipeline._checks import CheckSpec as CheckSpec
from mailmodule.pipeline._checks import FailAction as FailAction
from mailmodule.pipeline._pipeline import ABORT_TIMEOUT as ABORT_TIMEOUT
from mailmodule.pipeline._pipeline import Destination as Destination
from mailmodule.pipeline._pipeline import Pipeline as Pipeline
from mailmodule.pipeline._pipeline import PipelineDelivery as PipelineDelivery

__all__ = [
    "ABORT_TIMEOUT",
    "CheckSpec",
    "Destination",
    "FailAction",
    "Pipeline",
    "PipelineDelivery",
    "authserv_id_of",
    "format_authentication_results",
    "parse_authentication_results",
    "remove_forged_authentication_results",
]
