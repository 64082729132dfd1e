"""docs/go-names.md has a row for every name in the seed's index."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import mailmodule

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


METHOD_ROWS = [
    [cell.strip().strip("`") for cell in row.split("|")[1:3]]
    for row in DOC.split("## Methods", 1)[1].splitlines()
    if row.startswith("| `")
]


@pytest.mark.parametrize(("go", "python"), METHOD_ROWS, ids=[r[0] for r in METHOD_ROWS])
def test_every_method_row_names_a_real_method(go: str, python: str) -> None:
    owner, method = python.split(".")
    cls = getattr(mailmodule, owner)
    assert callable(getattr(cls, method)), python
    assert go.split(".")[-1].lower() == method.replace("_", ""), (go, python)


def test_every_async_row_is_a_coroutine_function() -> None:
    for row in DOC.split("## Methods", 1)[1].splitlines():
        if row.startswith("| `") and "| async" in row:
            owner, method = row.split("|")[2].strip().strip("`").split(".")
            assert inspect.iscoroutinefunction(getattr(getattr(mailmodule, owner), method)), row
