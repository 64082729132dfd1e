"""`mailmodule dkim keygen`: a new DKIM key and the TXT record that publishes it.

cli.py builds the parser; this module, imported only when the command runs, does the work.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from mailmodule.modules.dkim.keys import KeyType

__all__ = ["run", "zone_record"]

_TYPES: Final[dict[str, KeyType]] = {"rsa": "rsa2048", "rsa4096": "rsa4096", "ed25519": "ed25519"}


def zone_record(selector: str, domain: str, value: str) -> str:
    """The TXT record as a zone file line, the value cut into strings of 255 characters."""
    parts = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {parts} )"


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `dkim keygen`; returns the exit code.

    Raises:
        ConfigError: the domain or selector is malformed, or OUT cannot be written.
    """
    import idna

    from mailmodule.errors import ConfigError
    from mailmodule.modules.dkim._tags import SELECTOR
    from mailmodule.modules.dkim.keys import dns_record, generate_key, write_key

    try:
        domain = idna.encode(args.domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ConfigError(f"not a domain: {args.domain!r}", key="--domain") from exc
    if not SELECTOR.fullmatch(args.selector):
        raise ConfigError(f"not a selector: {args.selector!r}", key="--selector")
    key = generate_key(_TYPES[args.type])
    try:
        record_path = write_key(args.out, key)
    except FileExistsError as exc:
        raise ConfigError(f"{args.out} exists; not overwritten", key="OUT") from exc
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror}", key="OUT") from exc
    out.write(zone_record(args.selector, domain, dns_record(key)) + "\n")
    out.write(f"; private key in {args.out}, this record in {record_path}\n")
    return 0
