"""maddy's queue files: `QueueMetadata`, the `<ID>.meta` document, and its `Timestamp`s."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import time
from typing import TYPE_CHECKING, ClassVar, final

import attrs

from mailmodule._fsutil import fsync_dir
from mailmodule.errors import MetadataError, SMTPError, StorageError
from mailmodule.metadata import _codec
from mailmodule.metadata._build import slot_setters

if TYPE_CHECKING:
    from mailmodule.metadata._message import MsgMetadata

__all__ = ["QueueMetadata", "Timestamp"]

_TIME_RE = re.compile(  # \d\d, not \d{2}: a fifth faster to match
    r"\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)",
    re.ASCII,  # Go reads ASCII digits only
)
# Seconds east of UTC of every zone Go accepts: a lookup, not two int() calls per parse.
_OFFSETS = {"Z": 0} | {
    f"{sign}{h:02d}:{m:02d}": (h * 3600 + m * 60) * (-1 if sign == "-" else 1)
    for sign in "+-"
    for h in range(24)
    for m in range(60)
}
# Bound once: parse runs twice per queue file read.
_match_time = _TIME_RE.fullmatch
_offset_of = _OFFSETS.get
_from_iso = _dt.datetime.fromisoformat
_FRAC_SCALE = (0, *(10 ** (9 - n) for n in range(1, 10)))  # digits -> nanoseconds factor
_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_MAX_ORDINAL = _dt.date.max.toordinal()
_NS = 1_000_000_000
_new = object.__new__


@final
@attrs.frozen(order=False)
class Timestamp:
    """An instant with nanoseconds and the UTC offset it was written with (Go's time.Time).

    Python's datetime keeps microseconds only; queue files keep nanoseconds, so this type
    does too. `unix_ns` is nanoseconds since 1970-01-01 UTC; `offset` is seconds east of UTC.
    """

    unix_ns: int
    offset: int = 0
    _text: str | None = attrs.field(init=False, default=None, eq=False, repr=False)

    #: Go's zero time.Time, 0001-01-01T00:00:00Z: "never".
    ZERO: ClassVar[Timestamp]

    @classmethod
    def now(cls) -> Timestamp:
        """The current instant, in UTC."""
        return cls(time.time_ns())

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """An aware datetime as a Timestamp (a naive one is refused)."""
        off = value.utcoffset()
        if off is None:
            raise ValueError("Timestamp.from_datetime needs an aware datetime")
        delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        ns = (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000
        return cls(ns, int(off.total_seconds()))

    def to_datetime(self) -> _dt.datetime:
        """As an aware datetime in its own offset (nanoseconds below a microsecond dropped)."""
        tz = _dt.timezone(_dt.timedelta(seconds=self.offset))
        secs, ns = divmod(self.unix_ns, _NS)
        base = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        return (base + _dt.timedelta(seconds=secs, microseconds=ns // 1000)).astimezone(tz)

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Read RFC 3339 as Go writes it, fractions of up to nine digits.

        Raises:
            ValueError: not such a timestamp, or a date or time that does not exist.
        """
        m = _match_time(text)
        if m is None:
            raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
        frac_digits, zone = m.groups()
        offset = _offset_of(zone)
        if offset is None:
            raise ValueError(f"UTC offset out of range: {text!r}")
        try:  # the pattern has fixed the form of the first 19 characters
            local = _from_iso(text[:19]) - _EPOCH
        except ValueError:
            raise ValueError(f"no such date or time: {text!r}") from None
        ns = (local.days * 86400 + local.seconds - offset) * _NS
        if frac_digits:
            ns += int(frac_digits) * _FRAC_SCALE[len(frac_digits)]
        # Built without __init__ (its work is done above): this runs twice per queue file.
        stamp = _new(cls)
        _set_unix_ns(stamp, ns)
        _set_offset(stamp, offset)
        in_go_form = (offset or zone == "Z") and not (frac_digits and frac_digits[-1] == "0")
        _set_text(stamp, text if in_go_form else None)
        return stamp

    def format(self) -> str:
        """RFC 3339 with nanoseconds, trailing zeros dropped, as Go's RFC3339Nano writes.

        Raises:
            ValueError: the local date is outside the years 0001-9999.
        """
        text = self._text
        if text is None:
            text = self._format()
            _set_text(self, text)
        return text

    def _format(self) -> str:
        local, frac = divmod(self.unix_ns + self.offset * _NS, _NS)
        days, rest = divmod(local, 86400)
        if not 1 <= days + _EPOCH_ORDINAL <= _MAX_ORDINAL:
            raise ValueError(f"{self!r} is outside the years 0001-9999")
        day = _dt.date.fromordinal(days + _EPOCH_ORDINAL)
        hour, rest = divmod(rest, 3600)
        minute, second = divmod(rest, 60)
        text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        if frac:
            text += "." + f"{frac:09d}".rstrip("0")
        if self.offset == 0:
            return text + "Z"
        sign = "-" if self.offset < 0 else "+"
        oh, om = divmod(abs(self.offset) // 60, 60)
        return f"{text}{sign}{oh:02d}:{om:02d}"

    def __str__(self) -> str:
        return self.format()


_set_unix_ns, _set_offset, _set_text = slot_setters(Timestamp, "unix_ns", "offset", "_text")
Timestamp.ZERO = Timestamp.parse("0001-01-01T00:00:00Z")


@attrs.define(kw_only=True, eq=True)
class QueueMetadata:
    """The `<ID>.meta` file of maddy's queue: a message's envelope and delivery history.

    Attribute names are Go's field names in snake_case. Fields that Go may leave nil (written
    as null) are None here, so every document maddy writes reads and writes back byte for
    byte. `rcpt_errs` holds the last error of each recipient; `tries_count` how often each
    was tried.
    """

    msg_meta: MsgMetadata | None = None
    from_: str = ""
    to: list[str] | None = None
    failed_rcpts: list[str] | None = None
    temporary_failed_rcpts: list[str] | None = None
    rcpt_errs: dict[str, SMTPError | None] | None = None
    tries_count: dict[str, int] | None = None
    first_attempt: Timestamp = Timestamp.ZERO
    last_attempt: Timestamp = Timestamp.ZERO

    def to_json(self, *, with_conn: bool = False) -> bytes:
        """The document as maddy's queue writes it (`json.Encoder`: a trailing newline).

        Raises:
            MetadataError: a timestamp is outside the years 0001-9999, which Go refuses, or
                a field holds what the document cannot (a number for a string, a
                non-string key); names its path, such as `MsgMeta.ID`. Nothing is written
                that would not read back.
        """
        return _codec.write_queue(self, with_conn)

    @classmethod
    def from_json(cls, data: bytes | str) -> QueueMetadata:
        """Read a `.meta` document.

        Tolerant where maddy is (unknown keys ignored, missing keys and nulls take defaults,
        keys matched case-insensitively), strict where it must be.

        Raises:
            MetadataError: the document is malformed: not JSON, a value of the wrong type, a
                bad timestamp, an enhanced code that is not three integers. Names the path,
                such as `MsgMeta.SMTPOpts.Size`.
        """
        return _codec.read_queue(data)

    def write(self, path: str | os.PathLike[str], *, with_conn: bool = False) -> None:
        """Write the file atomically as maddy does: `<path>.new`, fsync, rename (then fsync
        the directory, which maddy does not).

        Raises:
            StorageError: the file cannot be written.
        """
        data = self.to_json(with_conn=with_conn)
        target = os.fspath(path)
        tmp = target + ".new"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            fsync_dir(os.path.dirname(os.path.abspath(target)))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"cannot write queue metadata {target!r}: {exc}") from exc

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> QueueMetadata:
        """Read a `.meta` file.

        Raises:
            StorageError: the file cannot be read.
            MetadataError: its content is malformed.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise StorageError(f"cannot read queue metadata {os.fspath(path)!r}: {exc}") from exc
        try:
            return cls.from_json(data)
        except MetadataError as exc:
            exc.add_note(f"in file {os.fspath(path)!r}")
            raise
