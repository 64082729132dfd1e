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
from mailmodule.pipeline._delivery import ABORT_TIMEOUT as ABORT_TIMEOUT
from mailmodule.pipeline._delivery import PipelineDelivery as PipelineDelivery
from mailmodule.pipeline._delivery import RecipientRecord as RecipientRecord
from mailmodule.pipeline._delivery import RecipientStatus as RecipientStatus
from mailmodule.pipeline._delivery import TargetOutcome as TargetOutcome
from mailmodule.pipeline._pipeline import Pipeline as Pipeline
from mailmodule.pipeline._routes import NO_ROUTE as NO_ROUTE
from mailmodule.pipeline._routes import Destination as Destination
from mailmodule.pipeline._routes import Source as Source
from mailmodule.pipeline._state import DeliveryState as DeliveryState

__all__ = [
    "ABORT_TIMEOUT",
    "NO_ROUTE",
    "CheckSpec",
    "DeliveryState",
    "Destination",
    "FailAction",
    "Pipeline",
    "PipelineDelivery",
    "RecipientRecord",
    "RecipientStatus",
    "Source",
    "TargetOutcome",
    "authserv_id_of",
    "format_authentication_results",
    "parse_authentication_results",
    "remove_forged_authentication_results",
]
