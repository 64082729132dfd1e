"""Message header: an ordered, case-insensitive multimap that keeps every field's raw bytes.

The twin of go-message's `textproto.Header`. A parsed header is written back byte for byte
(DKIM signatures depend on it): each field keeps the bytes it was read from, folding and line
endings included, and so does the empty line that ends the header.

    >>> header, offset = read_header(b"Subject: hi\\r\\nFrom: a@example.org\\r\\n\\r\\nbody")
    >>> header.get("subject")
    'hi'
    >>> field = header.add("Received", "from localhost")  # on top, as trace fields go
    >>> header.to_bytes()[:26]
    b'Received: from localhost\\r\\n'
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, final, overload

import attrs

from mailmodule.errors import HeaderError

__all__ = ["Header", "HeaderField", "read_header"]

# RFC 5322 ftext: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_FIELD_NAME_STR = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_FOLD_WIDTH = 78


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


@final
@attrs.frozen
class HeaderField:
    """One header field: its name as written, and the raw bytes it was read from.

    `key` is the name in lower case, which lookups compare.

    `raw` holds the whole field, name, folding and line ending included; `value` is the
    unfolded text after the colon with surrounding white space removed, decoded as UTF-8
    (bytes that are not UTF-8 show as U+FFFD; `raw` keeps them).
    """

    name: str
    raw: bytes = attrs.field(repr=False)
    key: str = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(lambda f: f.name.lower(), True)
    )

    @property
    def value(self) -> str:
        colon = self.raw.index(b":")
        body = _FOLD.sub(b"", self.raw[colon + 1 :])
        return body.strip(b" \t\r\n").decode("utf-8", "replace")

    @classmethod
    def build(cls, name: str, value: str, *, eol: bytes = b"\r\n") -> HeaderField:
        """A new field `name: value`, folded at white space to 78 columns where it can be.

        Raises:
            HeaderError: the name is not RFC 5322 field text, the value holds a line
                break (which would smuggle in another field) or has no UTF-8 form (a lone
                surrogate).
        """
        if type(name) is not str or not _FIELD_NAME_STR.fullmatch(name):
            raise HeaderError(f"invalid field name {name!r}")
        if type(value) is not str:
            raise HeaderError(f"value of field {name!r} must be a str, got {type(value).__name__}")
        if "\r" in value or "\n" in value or "\0" in value:
            raise HeaderError(f"value of field {name!r} contains a line break or NUL")
        try:
            return cls(name, _fold(f"{name}: {value}", eol).encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise HeaderError(f"value of field {name!r} is not valid Unicode") from exc


def _fold(line: str, eol: bytes) -> str:
    nl = eol.decode("ascii")
    if len(line) <= _FOLD_WIDTH:
        return line + nl
    out: list[str] = []
    current = ""
    # Split before each run of white space; a fold goes before white space only.
    for word in re.split(r"(?=[ \t])", line):
        if current and len(current) + len(word) > _FOLD_WIDTH and current.strip():
            out.append(current)
            current = word
        else:
            current += word
    out.append(current)
    return nl.join(out) + nl


@final
class Header:
    """An ordered, case-insensitive multimap of header fields, top field first.

    Lookups ignore case. `add` puts a field on top, as go-message does, so trace fields such as
    `Received` are prepended. Iteration yields `HeaderField`s in order.

    A header that was parsed is written back byte for byte by `to_bytes`; fields added later
    use the line ending the parsed header used (CRLF for a new header).

    `add` and `add_field` take O(1) amortized time, so building a header of n fields costs
    O(n); lookups, `set` and `delete` are O(n).
    """

    __slots__ = ("_bottom_up", "_eoh", "_eol")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        # Stored bottom field first, so that putting a field on top is a list append.
        self._bottom_up: list[HeaderField] = []
        self._eol = b"\r\n"
        self._eoh = b"\r\n"
        if isinstance(fields, (str, bytes, bytearray)):
            raise HeaderError("Header() takes (name, value) pairs; Header.parse reads raw text")
        for field in fields:
            try:
                if isinstance(field, str):  # "ab" would unpack into a field a: b
                    raise TypeError
                name, value = field
            except (TypeError, ValueError):
                raise HeaderError(f"expected (name, value) pairs, got {field!r}") from None
            self._bottom_up.append(HeaderField.build(name, value))
        self._bottom_up.reverse()

    @classmethod
    def parse(cls, block: bytes) -> Header:
        """Read a header block alone, optionally ended by its empty line.

        Raises:
            HeaderError: a line is not a header field, or data follows the empty line.
        """
        header, offset = _parse(block)
        if offset != len(block):
            line = block.count(b"\n", 0, offset) + 1
            raise HeaderError("data follows the end of the header", line=line)
        return header

    @classmethod
    def _make(cls, bottom_up: list[HeaderField], eol: bytes, eoh: bytes) -> Header:
        header = cls.__new__(cls)
        header._bottom_up = bottom_up
        header._eol = eol
        header._eoh = eoh
        return header

    # Reading

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the topmost field named `key`, or `default`."""
        k = key.lower()
        for f in reversed(self._bottom_up):
            if f.key == k:
                return f.value
        return default

    def values(self, key: str) -> list[str]:
        """The values of every field named `key`, top first."""
        k = key.lower()
        return [f.value for f in reversed(self._bottom_up) if f.key == k]

    def fields(self, key: str | None = None) -> list[HeaderField]:
        """The fields named `key` (all fields without a key), top first."""
        if key is None:
            return self._bottom_up[::-1]
        k = key.lower()
        return [f for f in reversed(self._bottom_up) if f.key == k]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        k = key.lower()
        for f in self._bottom_up:  # noqa: SIM110  (no generator for a frequent test)
            if f.key == k:
                return True
        return False

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self._bottom_up[::-1])  # a snapshot: changing the header is safe

    def __len__(self) -> int:
        return len(self._bottom_up)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Header):
            return NotImplemented
        return self._bottom_up == other._bottom_up and self._eoh == other._eoh

    def __repr__(self) -> str:
        return f"Header({[(f.name, f.value) for f in reversed(self._bottom_up)]!r})"

    # Changing

    def add(self, key: str, value: str) -> HeaderField:
        """Put a new field `key: value` on top; returns it.

        Raises:
            HeaderError: `key` is not a valid field name or `value` holds a line break.
        """
        field = HeaderField.build(key, value, eol=self._eol)
        self._bottom_up.append(field)
        return field

    def add_field(self, field: HeaderField) -> None:
        """Put an existing field (raw bytes kept) on top."""
        self._bottom_up.append(field)

    def set(self, key: str, value: str) -> None:
        """Replace every field named `key` with one field `key: value` on top."""
        new = HeaderField.build(key, value, eol=self._eol)
        self.delete(key)
        self._bottom_up.append(new)

    def delete(self, key: str) -> None:
        """Remove every field named `key`; a missing key is not an error."""
        k = key.lower()
        if any(f.key == k for f in self._bottom_up):
            self._bottom_up = [f for f in self._bottom_up if f.key != k]

    def remove_fields(self, predicate: Callable[[HeaderField], bool]) -> int:
        """Remove every field for which `predicate` is true; the others keep order and bytes.

        `predicate` sees each field once, top first. Unlike `delete`, it can pick single
        fields, for example by identity (`field is mine`).

        Returns:
            The number of fields removed.

        Raises:
            Whatever `predicate` raises; the header is then unchanged.
        """
        kept = [f for f in reversed(self._bottom_up) if not predicate(f)]
        removed = len(self._bottom_up) - len(kept)
        if removed:
            kept.reverse()
            self._bottom_up = kept
        return removed

    def copy(self) -> Header:
        """An independent copy: changing one never changes the other."""
        return Header._make(list(self._bottom_up), self._eol, self._eoh)

    # Writing

    def to_bytes(self) -> bytes:
        """The header as bytes, including the empty line that ends it.

        A parsed header comes back byte for byte, also its empty line; a header read from a
        message that had no empty line (a header and no body) is written back without one.
        """
        return b"".join([f.raw for f in reversed(self._bottom_up)]) + self._eoh

    def write_to(self, stream: _Writable) -> None:
        """Write `to_bytes()` to a binary stream."""
        stream.write(self.to_bytes())

    # The standard library

    def to_email_message(self) -> email.message.EmailMessage[str, str]:
        """A stdlib `EmailMessage` with these fields (and no body), in this order."""
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        msg = parser.parsebytes(self.to_bytes())
        assert isinstance(msg, email.message.EmailMessage)
        return msg

    @classmethod
    def from_email_message(cls, msg: email.message.Message) -> Header:
        """The header fields of a stdlib message, in its order, as its policy writes them.

        Raises:
            HeaderError: the stdlib message holds a field that is not valid on the wire.
        """
        policy = msg.policy.clone(linesep="\r\n")
        raw = b"".join(policy.fold_binary(name, value) for name, value in msg.raw_items())
        return cls.parse(raw + b"\r\n")


def read_header(data: bytes) -> tuple[Header, int]:
    """Read the header of a whole message.

    Returns the header and the offset where the body starts, so that
    `header.to_bytes() + data[offset:] == data`. CRLF and LF-only line endings are both read;
    a message with no empty line is all header.

    Raises:
        HeaderError: a line before the empty line is not a header field; names the line.
    """
    return _parse(data)


def _parse(data: bytes) -> tuple[Header, int]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"header data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    fields: list[HeaderField] = []
    append = fields.append
    find = data.find
    n = len(data)
    pos = 0
    lineno = 0
    eol = b""
    name = ""
    start = -1  # start of the field being read
    while pos < n:
        nl = find(b"\n", pos)
        end = n if nl < 0 else nl + 1
        lineno += 1
        first = data[pos]
        if first == 0x0A or (first == 0x0D and end - pos == 2 and nl >= 0):
            # The empty line ends the header.
            if start >= 0:
                append(HeaderField(name, data[start:pos]))
            fields.reverse()
            return Header._make(fields, eol or data[pos:end], data[pos:end]), end
        if first == 0x20 or first == 0x09:
            if start < 0:
                raise HeaderError(
                    "continuation line before any field", line=lineno, text=data[pos:end]
                )
        else:
            if start >= 0:
                append(HeaderField(name, data[start:pos]))
            colon = find(b":", pos, end)
            if colon < 0:
                raise HeaderError("not a header field (no colon)", line=lineno, text=data[pos:end])
            raw_name = data[pos:colon].rstrip(b" \t")
            if not _FIELD_NAME.fullmatch(raw_name):
                raise HeaderError("invalid field name", line=lineno, text=data[pos:end])
            name = raw_name.decode("ascii")
            start = pos
            if not eol and nl >= 0:
                eol = b"\r\n" if nl > 0 and data[nl - 1] == 0x0D else b"\n"
        pos = end
    if start >= 0:
        append(HeaderField(name, data[start:n]))
    fields.reverse()
    return Header._make(fields, eol or b"\r\n", b""), n
