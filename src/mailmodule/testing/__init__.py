"""The testing kit: conformance suites for plugin authors, hypothesis strategies
(`mailmodule.testing.strategies`), and a pytest plugin (loaded automatically through the
`pytest11` entry point).

Needs pytest, pytest-asyncio and hypothesis: `pip install mailmodule[testing]`. The plugin
itself needs only pytest, so installing mailmodule never breaks another project's pytest;
that is why the strategies module is not imported here.
"""

from __future__ import annotations

from mailmodule.testing.conformance import BlobStoreSuite as BlobStoreSuite
from mailmodule.testing.conformance import BrokenBuffer as BrokenBuffer
from mailmodule.testing.conformance import CheckSuite as CheckSuite
from mailmodule.testing.conformance import DeliveryTargetSuite as DeliveryTargetSuite
from mailmodule.testing.conformance import ModifierSuite as ModifierSuite
from mailmodule.testing.conformance import PlainAuthSuite as PlainAuthSuite
from mailmodule.testing.conformance import TableSuite as TableSuite

__all__ = [
    "BlobStoreSuite",
    "BrokenBuffer",
    "CheckSuite",
    "DeliveryTargetSuite",
    "ModifierSuite",
    "PlainAuthSuite",
    "TableSuite",
]
