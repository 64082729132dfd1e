"""docs/go-names.md has a row for every name in the seed's index."""

from __future__ import annotations

from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parent.parent / "docs" / "go-names.md").read_text()
ROWS = [line for line in DOC.splitlines() if line.startswith("| `")]

# The index of maddy's framework/module package (shared/seed/module-godoc.txt).
SEED_INDEX = [
    "AuthDisabled",
    "AuthMTASTS",
    "AuthDNSSEC",
    "AuthCommonDomain",
    "TLSLevel",
    "TLSNone",
    "TLSEncrypted",
    "TLSAuthenticated",
    "MXLevel",
    "MXNone",
    "MX_MTASTS",
    "MX_DNSSEC",
    "UnknownBlobSize",
    "ErrNoSuchBlob",
    "ErrUnknownCredentials",
    "Initialized",
    "NoRun",
    "GenerateMsgID",
    "HasInstance",
    "Register",
    "RegisterAlias",
    "RegisterDeprecated",
    "RegisterEndpoint",
    "RegisterInstance",
    "Get",
    "GetEndpoint",
    "GetInstance",
    "Blob",
    "BlobStore",
    "Check",
    "CheckResult",
    "CheckState",
    "ConnState",
    "Delivery",
    "DeliveryMXAuthPolicy",
    "DeliveryTarget",
    "Dummy",
    "EarlyCheck",
    "FuncNewEndpoint",
    "FuncNewModule",
    "IMAPFilter",
    "MXAuthPolicy",
    "ManageableStorage",
    "Modifier",
    "ModifierState",
    "Module",
    "MsgMetadata",
    "MultiTable",
    "MutableTable",
    "PartialDelivery",
    "PlainAuth",
    "PlainUserDB",
    "StatusCollector",
    "Storage",
    "TLSLoader",
    "Table",
]


@pytest.mark.parametrize("name", SEED_INDEX)
def test_every_seed_name_has_a_row(name: str) -> None:
    go_cells = [row.split("|")[1] for row in ROWS]
    assert any(f"`{name}`" in cell for cell in go_cells), name
