"""Write docs/api.md from the docstrings of the public API (`python scripts/gen_api.py`).

tests/test_docs.py fails when docs/api.md is not what this script writes.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import typing
from pathlib import Path

PACKAGES = [
    "mailmodule",
    "mailmodule.address",
    "mailmodule.buffer",
    "mailmodule.dns",
    "mailmodule.pipeline",
    "mailmodule.modules",
    "mailmodule.endpoint",
    "mailmodule.metrics",
    "mailmodule.server",
    "mailmodule.testing",
    "mailmodule.testing.dnsserver",
]
ADDRESS = re.compile(r" object at 0x[0-9a-f]+>")
QUALIFIER = re.compile(r"\b(?:mailmodule(?:\.[a-z_]+)*\.|collections\.abc\.|typing\.)(?=[A-Z])")
OUT = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def signature(obj: object) -> str:
    if not callable(obj):
        return ""
    try:
        sig = inspect.signature(obj, eval_str=True)
    except (NameError, TypeError, ValueError):
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return ""
    return QUALIFIER.sub("", ADDRESS.sub(">", str(sig)))


def render() -> str:
    lines = [
        "# API",
        "",
        "Generated from the docstrings by `python scripts/gen_api.py`; do not edit by hand.",
    ]
    for name in PACKAGES:
        module = importlib.import_module(name)
        lines += ["", f"## `{name}`", "", summary(module), ""]
        for public in module.__all__:
            obj = getattr(module, public)
            if typing.get_origin(obj) is not None:  # a type alias such as ModuleFactory
                alias = (
                    repr(obj).replace("collections.abc.", "").replace("mailmodule.interfaces.", "")
                )
                lines.append(f"- `{public}` = `{alias}`")
            elif inspect.ismodule(obj):
                lines.append(f"- `{public}` (module): {summary(obj)}")
            elif inspect.isclass(obj):
                lines.append(f"- `{public}` (class): {summary(obj)}")
            elif callable(obj):
                lines.append(f"- `{public}{signature(obj)}`: {summary(obj)}")
            elif ADDRESS.search(repr(obj)):
                lines.append(f"- `{public}`: a `{type(obj).__name__}`")
            else:
                lines.append(f"- `{public}` = `{obj!r}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.exit(0)
