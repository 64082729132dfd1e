"""MTA-STS (RFC 8461) as data: the `_mta-sts` TXT record, the policy file, MX patterns.

Pure parsing and matching, no I/O; `mx_auth.mtasts` fetches and caches.

    >>> policy = parse_policy("version: STSv1\\nmode: enforce\\nmx: *.example.net\\nmax_age: 60")
    >>> policy.matches("mx1.example.net"), policy.matches("a.b.example.net")
    (True, False)
    >>> parse_record("v=STSv1; id=20260101T000000;")
    '20260101T000000'
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final, final

import attrs

from mailmodule.errors import DataError

__all__ = [
    "MAX_AGE_LIMIT",
    "MAX_POLICY_SIZE",
    "STSMode",
    "STSPolicy",
    "STSPolicyError",
    "parse_policy",
    "parse_record",
    "record_id",
]

#: The largest `max_age` a policy may give (RFC 8461 section 3.2: about a year).
MAX_AGE_LIMIT: Final = 31557600
#: The largest policy file taken (RFC 8461 section 3.3 suggests 64 KiB).
MAX_POLICY_SIZE: Final = 64 * 1024

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,32}")
# A host name or a pattern with one leading "*." label (RFC 8461 section 3.2).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


class STSPolicyError(DataError):
    """Raised when an `_mta-sts` TXT record or a policy file breaks RFC 8461's grammar.

    A sender treats the domain as having no valid policy (or keeps a cached one).
    """


class STSMode(enum.Enum):
    """What a policy asks of a sender whose MX or TLS does not meet it."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@final
@attrs.frozen(kw_only=True)
class STSPolicy:
    """A parsed policy file: the mode, the MX patterns (lower-case), `max_age` in seconds."""

    mode: STSMode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, mx: str) -> bool:
        """Whether the MX host name `mx` matches a pattern (RFC 8461 section 4.1).

        A "*." pattern stands for exactly one label: "*.example.net" matches
        "mx.example.net", neither "example.net" nor "a.mx.example.net".
        """
        host = mx.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, dot, tail = host.partition(".")
                if head and dot and tail == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def record_id(texts: Iterable[bytes]) -> str | None:
    """The policy id of a domain's `_mta-sts` TXT records, or None for no policy.

    Records not starting with "v=STSv1" are ignored; more than one that does, or one
    that does not parse, means no policy (RFC 8461 section 3.1).
    """
    found = [text for text in texts if text.startswith(b"v=STSv1")]
    if len(found) != 1:
        return None
    try:
        return parse_record(found[0].decode("ascii"))
    except (UnicodeDecodeError, STSPolicyError):
        return None


def parse_record(text: str) -> str:
    """The `id` of one `_mta-sts` TXT record's text.

    Raises:
        STSPolicyError: not "v=STSv1" first, or no valid `id` field.
    """
    fields = [field.strip(" \t") for field in text.split(";")]
    if fields and fields[-1] == "":
        fields.pop()
    if not fields or fields[0] != "v=STSv1":
        raise STSPolicyError(f"MTA-STS record does not start with v=STSv1: {text[:64]!r}")
    for field in fields[1:]:
        key, eq, value = field.partition("=")
        if key == "id":
            if not eq or not _ID.fullmatch(value):
                raise STSPolicyError(f"MTA-STS record has an invalid id: {value[:64]!r}")
            return value
    raise STSPolicyError("MTA-STS record has no id")


def parse_policy(text: str) -> STSPolicy:
    """The policy a policy file's text states.

    Lines are "key: value", ended by CRLF or LF; unknown keys are ignored; `mx` may repeat.

    Raises:
        STSPolicyError: a line is not "key: value", or `version`, `mode` or `max_age` is
            missing, repeated or invalid, an `mx` pattern is malformed, or the mode is
            not "none" and no `mx` is given.
    """
    if len(text) > MAX_POLICY_SIZE:
        raise STSPolicyError(f"MTA-STS policy is longer than {MAX_POLICY_SIZE} characters")
    single: dict[str, str] = {}
    patterns: list[str] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip(" \t"):
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not colon or not _KEY.fullmatch(key):
            raise STSPolicyError(f"MTA-STS policy line {number} is not 'key: value'")
        if key == "mx":
            pattern = value.lower().rstrip(".")
            if not _PATTERN.fullmatch(pattern) or len(pattern) > 253:
                raise STSPolicyError(f"MTA-STS policy has a malformed mx: {value[:64]!r}")
            patterns.append(pattern)
        elif key in ("version", "mode", "max_age"):
            if key in single:
                raise STSPolicyError(f"MTA-STS policy gives {key} twice")
            single[key] = value
    if single.get("version") != "STSv1":
        raise STSPolicyError("MTA-STS policy version is not STSv1")
    try:
        mode = STSMode(single.get("mode", ""))
    except ValueError:
        raise STSPolicyError(
            f"MTA-STS policy mode is not enforce, testing or none: {single.get('mode')!r}"
        ) from None
    max_age = single.get("max_age", "")
    if not max_age.isascii() or not max_age.isdigit() or len(max_age) > 10:
        raise STSPolicyError(f"MTA-STS policy max_age is not a number: {max_age[:16]!r}")
    if mode is not STSMode.NONE and not patterns:
        raise STSPolicyError(f"MTA-STS policy in mode {mode.value} names no mx")
    return STSPolicy(mode=mode, mx=tuple(patterns), max_age=min(int(max_age), MAX_AGE_LIMIT))
