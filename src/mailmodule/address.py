"""E-mail address normalization, with the semantics of maddy's `framework/address`.

Addresses are RFC 5321 forward-path tokens: `local@domain`, or the special `postmaster` with
no domain. Domains may be A-labels (`xn--...`) or U-labels; the canonical form used inside a
server is NFC, lower-cased U-labels (`clean_domain`), and the key form for tables lower-cases
the local part too (`for_lookup`).

    >>> clean_domain("Joe@XN--BCHER-KVA.Example")
    'Joe@bücher.example'
    >>> for_lookup("Joe@Bücher.Example.")
    'joe@bücher.example'
    >>> to_ascii("joe@bücher.example")
    'joe@xn--bcher-kva.example'
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata

import idna

from mailmodule.errors import AddressError

__all__ = [
    "clean_domain",
    "domain_for_lookup",
    "equal",
    "for_lookup",
    "is_ascii",
    "is_valid",
    "is_valid_domain",
    "is_valid_local_part",
    "split",
    "to_ascii",
    "unquote_local_part",
]

_ASCII_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DOT_ATOM_CHARS = frozenset("!#$%&'*+-/=?^_`{|}~.")


def split(addr: str) -> tuple[str, str]:
    """Split an address into local part and domain, at the last `@`.

    `postmaster` in any case has no domain: `split("Postmaster") == ("Postmaster", "")`.

    Raises:
        AddressError: the `@` is missing, or the local part or the domain is empty.
    """
    if addr.lower() == "postmaster":
        return addr, ""
    at = addr.rfind("@")
    if at < 0:
        raise AddressError("missing at-sign", address=addr)
    local, domain = addr[:at], addr[at + 1 :]
    if not local:
        raise AddressError("empty local part", address=addr)
    if not domain:
        raise AddressError("empty domain", address=addr)
    return local, domain


def clean_domain(addr: str) -> str:
    """The address with its domain as NFC, lower-cased U-labels; the local part untouched.

    Address literals (`[192.0.2.1]`, `[IPv6:...]`) are kept as they are.

    Raises:
        AddressError: the address does not split, or its domain is not a valid IDN.
    """
    local, domain = split(addr)
    if not domain:
        return local
    return f"{local}@{_clean(domain, addr)}"


def for_lookup(addr: str) -> str:
    """The key form of an address for tables and comparisons.

    The local part is NFC-normalized and lower-cased, the domain cleaned as by
    `clean_domain` and any trailing dot dropped. `equal(a, b)` exactly when their
    `for_lookup` forms are the same.

    Raises:
        AddressError: the address does not split, or its domain is not a valid IDN.
    """
    if addr.isascii():  # the common case, as fast as lower() allows
        at = addr.rfind("@")
        if 0 < at < len(addr) - 1 and addr[at + 1] != "[":
            low = addr.lower()
            if "xn--" not in low:
                return low.removesuffix(".")
    return _for_lookup(addr)


def _for_lookup(addr: str) -> str:
    """`for_lookup` of any address, without its shortcut for plain ASCII ones."""
    local, domain = split(addr)
    # NFC again after lower(): lower-casing can leave a sequence that composes.
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())
    if not domain:
        return local
    return f"{local}@{_clean(domain, addr).removesuffix('.')}"


def domain_for_lookup(domain: str) -> str:
    """The key form of a domain: NFC, lower-cased U-labels, no trailing dot.

    Raises:
        AddressError: the domain is empty or not a valid IDN.
    """
    if not domain:
        raise AddressError("empty domain", address=domain)
    return _clean(domain, domain).removesuffix(".")


def equal(a: str, b: str) -> bool:
    """Whether two addresses are the same mailbox: `for_lookup` forms match.

    Malformed addresses compare lower-cased, as maddy does, so `equal` never raises and is
    an equivalence relation.
    """
    return a == b or _key(a) == _key(b)


def _key(addr: str) -> str:
    try:
        return for_lookup(addr)
    except AddressError:
        return addr.lower()


def to_ascii(addr: str) -> str:
    """The address with its domain as A-labels, for peers without SMTPUTF8.

    Raises:
        AddressError: the local part is not ASCII (it has no ASCII form), or the domain is
            not a valid IDN.
    """
    local, domain = split(addr)
    if not local.isascii():
        raise AddressError("local part is not ASCII and has no ASCII form", address=addr)
    if not domain:
        return local
    if domain.isascii() and "xn--" not in domain.lower():
        return addr
    if _is_literal(domain):
        return addr
    return f"{local}@{_to_alabels(domain, addr)}"


def is_ascii(s: str) -> bool:
    """Whether the string is all ASCII."""
    return s.isascii()


def is_valid_domain(domain: str) -> bool:
    """Whether `domain` is a valid DNS domain name (IDNs included, no trailing dot).

    Labels are letters, digits, hyphens and underscores (no hyphen first or last), or valid
    IDNA labels; each at most 63 octets in ASCII form; at most 253 octets in all.
    """
    if not domain or domain.startswith(".") or domain.endswith("."):
        return False
    try:
        ascii_form = _to_alabels(domain, domain)
    except AddressError:
        return False
    if len(ascii_form) > 253:
        return False
    return all(_ASCII_LABEL.fullmatch(label) for label in ascii_form.split("."))


def is_valid_local_part(local: str) -> bool:
    """Whether `local` is a valid local part: a dot-atom or a quoted string (RFC 5321/6531).

    Non-ASCII characters are allowed (RFC 6531); control characters are not.
    """
    if not local:
        return False
    if local.startswith('"'):
        try:
            raw = unquote_local_part(local)
        except AddressError:
            return False
        return all(ch >= " " and ch != "\x7f" for ch in raw)
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(
        (ch.isascii() and ch.isalnum()) or ch in _DOT_ATOM_CHARS or ord(ch) > 0x7F for ch in local
    )


def is_valid(addr: str) -> bool:
    """Whether `addr` is a valid address: `postmaster`, or a valid local part and domain.

    At most 320 characters in all (RFC 3696); domain literals are checked as IP addresses.
    """
    if len(addr) > 320:
        return False
    try:
        local, domain = split(addr)
    except AddressError:
        return False
    if not domain:
        return True
    if not is_valid_local_part(local):
        return False
    if _is_literal(domain):
        return _valid_literal(domain)
    return is_valid_domain(domain)


def unquote_local_part(local: str) -> str:
    """Undo the quoting and escaping of a local part: `"a\\"b c"` becomes `a"b c`.

    Raises:
        AddressError: the quoting is malformed (a closing quote not at the end, a backslash
            outside quotes, an unquoted `@`, or nothing left).
    """
    out: list[str] = []
    quoted = escaped = closed = False
    for ch in local:
        if closed:
            raise AddressError("closing quote must end the local part", address=local)
        if escaped:
            escaped = False
            out.append(ch)
            continue
        if ch == '"':
            quoted = not quoted
            closed = not quoted
            continue
        if ch == "\\":
            if not quoted:
                raise AddressError("backslash outside a quoted string", address=local)
            escaped = True
            continue
        if ch == "@" and not quoted:
            raise AddressError("unquoted at-sign in the local part", address=local)
        out.append(ch)
    if quoted or escaped:
        raise AddressError("unterminated quoted string", address=local)
    if not out:
        raise AddressError("empty local part", address=local)
    return "".join(out)


def _is_literal(domain: str) -> bool:
    return domain.startswith("[") and domain.endswith("]")


def _valid_literal(domain: str) -> bool:
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
        expect: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = ipaddress.IPv6Address
    else:
        expect = ipaddress.IPv4Address
    try:
        expect(inner)
    except ValueError:
        return False
    return True


def _clean(domain: str, addr: str) -> str:
    try:
        return _clean_domain(domain)
    except _BadDomain as exc:
        raise AddressError(str(exc), address=addr) from exc.__cause__


class _BadDomain(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def _clean_domain(domain: str) -> str:
    if _is_literal(domain):
        return domain
    if domain.isascii() and "xn--" not in domain.lower():
        return domain.lower()  # the common case: nothing to map
    labels = domain.split(".")
    out = []
    for label in labels:
        if label.isascii() and not label.lower().startswith("xn--"):
            out.append(label.lower())
            continue
        try:
            ulabel = idna.decode(idna.encode(label, uts46=True))
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise _BadDomain(f"invalid internationalized domain label {label!r}: {exc}") from exc
        out.append(unicodedata.normalize("NFC", ulabel).lower())
    return ".".join(out)


def _to_alabels(domain: str, addr: str) -> str:
    out = []
    for label in domain.split("."):
        if label.isascii():
            out.append(label)
            if label.lower().startswith("xn--"):
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError, ValueError) as exc:
                    raise AddressError(f"invalid A-label {label!r}: {exc}", address=addr) from exc
            continue
        try:
            out.append(idna.encode(label, uts46=True).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise AddressError(
                f"invalid internationalized domain label {label!r}: {exc}", address=addr
            ) from exc
    return ".".join(out)
