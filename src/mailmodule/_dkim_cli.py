"""`mailmodule dkim keygen`: a new DKIM key and the TXT record that publishes it.

Kept apart from cli.py, which builds its parser for every command: this module imports
nothing heavy until the command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from mailmodule.modules.dkim.keys import KeyType

__all__ = ["add_parser", "run", "zone_record"]

_TYPES: Final[dict[str, KeyType]] = {"rsa": "rsa2048", "rsa4096": "rsa4096", "ed25519": "ed25519"}


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `dkim keygen` to the command line's subcommands."""
    dkim = sub.add_parser("dkim", parents=[common], help="DKIM keys (modify.dkim)")
    dkim_sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    keygen = dkim_sub.add_parser(
        "keygen",
        parents=[common],
        help="write a new private key to OUT and print its DNS TXT record",
        description="Write a new DKIM private key (PKCS #8 PEM, mode 0600) to OUT, its TXT "
        "record beside it (.dns for .key), and print the record as a zone file line. "
        "An existing OUT is never overwritten.",
    )
    keygen.add_argument("--domain", required=True, help="the signing domain (d=)")
    keygen.add_argument("--selector", required=True, help="the selector (s=)")
    keygen.add_argument(
        "--type",
        choices=sorted(_TYPES),
        default="rsa",
        help="rsa (2048 bits, default), rsa4096 or ed25519",
    )
    keygen.add_argument("out", metavar="OUT", help="the private key file to create")


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
