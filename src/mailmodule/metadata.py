"""Message metadata: what travels with every message, and maddy's queue files on disk.

`MsgMetadata` is the twin of the seed's `MsgMetadata`; `ConnState` of its `ConnState` (with
go-smtp's `ConnectionState` folded in); `MailOptions` and `RcptOptions` of go-smtp's MAIL FROM
and RCPT TO parameters; `TLSState` of `tls.ConnectionState`.

`QueueMetadata` reads and writes the `<ID>.meta` files of maddy's queue, byte for byte as Go's
`encoding/json` writes them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import ipaddress
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from typing import ClassVar, Generic, Protocol, TypeVar, cast, final

import attrs

from mailmodule import _gojson as gj
from mailmodule._fsutil import fsync_dir
from mailmodule._gojson import JSONObject, JSONValue
from mailmodule.errors import MetadataError, SMTPError, StorageError

__all__ = [
    "BODY_TYPES",
    "DSN_NOTIFY",
    "DSN_RETURN",
    "ConnState",
    "MailOptions",
    "ModSpecificData",
    "MsgMetadata",
    "QueueMetadata",
    "RcptOptions",
    "Resolved",
    "TLSState",
    "Timestamp",
    "generate_msg_id",
]

_T = TypeVar("_T")

#: Values of the BODY= parameter ("" when absent).
BODY_TYPES = frozenset({"", "7BIT", "8BITMIME", "BINARYMIME"})
#: Values of the RET= parameter ("" when absent).
DSN_RETURN = frozenset({"", "FULL", "HDRS"})
#: Values of the NOTIFY= parameter.
DSN_NOTIFY = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})


def generate_msg_id() -> str:
    """A new message id: 8 lower-case hex digits from 4 random bytes, as maddy makes them."""
    return secrets.token_hex(4)


def _one_of(allowed: frozenset[str]) -> Callable[[object, attrs.Attribute[str], str], None]:
    def check(inst: object, attr: attrs.Attribute[str], value: str) -> None:
        if value not in allowed:
            raise ValueError(
                f"{type(inst).__name__}.{attr.name} must be one of {sorted(allowed)}, got {value!r}"
            )

    return check


def _non_negative(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{type(inst).__name__}.{attr.name} must be >= 0, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class MailOptions:
    """The MAIL FROM parameters (go-smtp's `MailOptions`).

    `size` is what the client announced (SIZE=), header included; never use it as the body
    size. `auth` is the AUTH= identity: None when absent, "" for `AUTH=<>`.
    """

    body: str = attrs.field(default="", validator=_one_of(BODY_TYPES))
    size: int = attrs.field(default=0, validator=_non_negative)
    require_tls: bool = False
    utf8: bool = False
    return_: str = attrs.field(default="", validator=_one_of(DSN_RETURN))
    envelope_id: str = ""
    auth: str | None = None


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _bytes_tuple(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


def _notify(inst: object, attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    bad = [v for v in value if v not in DSN_NOTIFY]
    if bad:
        raise ValueError(f"RcptOptions.notify values must be in {sorted(DSN_NOTIFY)}, got {bad}")
    if "NEVER" in value and len(value) > 1:
        raise ValueError("RcptOptions.notify: NEVER cannot be combined with other values")


@final
@attrs.frozen(kw_only=True)
class RcptOptions:
    """The RCPT TO parameters of one recipient (go-smtp's `RcptOptions`, RFC 3461 DSN).

    `notify` is empty when NOTIFY= is absent; `original_recipient_type` and
    `original_recipient` come from ORCPT= (type such as "rfc822", address decoded).
    """

    notify: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_notify)
    original_recipient_type: str = ""
    original_recipient: str = ""


@final
@attrs.frozen(kw_only=True)
class TLSState:
    """A TLS connection's state (Go's `tls.ConnectionState`, the parts mail code needs).

    `peer_certificates` holds the client's certificate chain as DER, leaf first.
    """

    version: str = ""
    cipher: str = ""
    server_name: str = ""
    peer_certificates: tuple[bytes, ...] = attrs.field(
        default=(), converter=_bytes_tuple, repr=False
    )
    handshake_complete: bool = True


@final
@attrs.frozen
class Resolved(Generic[_T]):
    """An awaitable that is already done: `await Resolved(x)` is x, as often as you like.

    For `ConnState.rdns_name` when the name is known up front (tests, metadata read back).
    """

    value: _T

    def __await__(self) -> Generator[None, None, _T]:
        return self.value
        yield  # unreachable: makes this a generator


class _Named(Protocol):
    def name(self) -> str: ...
    def instance_name(self) -> str: ...


@final
class ModSpecificData:
    """Per-module data attached to a connection, each module in its own namespace.

    The twin of maddy's `ModSpecificData`: keyed by the module's `name()`, or by
    `name() + "/" + instance_name()` with `per_instance=True`. Values must be JSON values, as
    they are written to the queue. Safe to use from several threads.
    """

    __slots__ = ("_data", "_lock")

    def __init__(self, data: Mapping[str, JSONValue] | None = None) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, JSONValue] = {}
        for key, value in (data or {}).items():
            _check_json(value, f"ModData[{key!r}]")
            self._data[key] = value

    @staticmethod
    def _key(module: _Named, per_instance: bool) -> str:
        if not per_instance:
            return module.name()
        inst = module.instance_name() or f"{id(module):x}"
        return f"{module.name()}/{inst}"

    def set(self, module: _Named, value: JSONValue, *, per_instance: bool = False) -> None:
        """Store `value` for `module`, replacing what was there.

        Raises:
            MetadataError: `value` is not a JSON value.
        """
        key = self._key(module, per_instance)
        _check_json(value, f"ModData[{key!r}]")
        with self._lock:
            self._data[key] = value

    def get(self, module: _Named, *, per_instance: bool = False) -> JSONValue:
        """What `module` stored, or None."""
        key = self._key(module, per_instance)
        with self._lock:
            return self._data.get(key)

    def to_dict(self) -> dict[str, JSONValue]:
        """A snapshot of every module's data."""
        with self._lock:
            return dict(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModSpecificData):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ModSpecificData({self.to_dict()!r})"

    def __reduce__(self) -> tuple[type[ModSpecificData], tuple[dict[str, JSONValue]]]:
        # The lock is not copied or pickled; a copy gets its own.
        return (ModSpecificData, (self.to_dict(),))


def _check_json(value: object, path: str, depth: int = 0) -> None:
    if depth > 64:
        raise MetadataError("value nests too deeply", path=path)
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise MetadataError("NaN and infinities are not JSON", path=path)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MetadataError(f"object keys must be strings, got {k!r}", path=path)
            _check_json(v, f"{path}[{k!r}]", depth + 1)
        return
    raise MetadataError(f"{type(value).__name__} is not a JSON value", path=path)


@attrs.define(kw_only=True, eq=True)
class ConnState:
    """How a message arrived: protocol, peer, TLS, authentication.

    `proto` is the RFC 3848 name (ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, ...), "" for a message
    made locally. `hostname` is the HELO/EHLO name; `local_addr` and `remote_addr` are
    "host:port" ("[v6]:port" for IPv6). `rdns_name` is None when reverse DNS does not apply,
    otherwise an awaitable that can be awaited many times (an `asyncio.Future` or `Resolved`)
    giving the PTR name, or None when the lookup failed. `auth_password` never appears in
    `repr`, `str`, logs or JSON. One ConnState may be shared by all messages of a connection.
    """

    proto: str = ""
    hostname: str = ""
    local_addr: str = ""
    remote_addr: str = ""
    tls: TLSState | None = None
    rdns_name: Awaitable[str | None] | None = None
    auth_user: str = ""
    auth_password: str = attrs.field(default="", repr=False)
    mod_data: ModSpecificData = attrs.field(factory=ModSpecificData)

    @property
    def remote_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address of `remote_addr`, or None when it is not an IP address."""
        return _ip_of(self.remote_addr)


def _ip_of(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = addr
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@attrs.define(kw_only=True, eq=True)
class MsgMetadata:
    """What is known about one message besides its content.

    Mutable, as in Go: the pipeline sets `quarantine` and `original_rcpts`; everything else
    should be treated as read-only by modules, which copy it with `deep_copy()` when they
    keep it.

    `original_rcpts` maps each final recipient to the one the client gave; None until the
    pipeline fills it (Go's nil map). `rcpt_opts` holds the RCPT TO parameters per recipient
    (a mailmodule addition; maddy ignores it in queue files). `conn` is None for a message
    made locally.
    """

    id: str = ""
    original_from: str = ""
    dont_trace_sender: bool = False
    quarantine: bool = False
    original_rcpts: dict[str, str] | None = None
    smtp_opts: MailOptions = attrs.field(factory=MailOptions)
    conn: ConnState | None = None
    tls_require_override: bool = False
    rcpt_opts: dict[str, RcptOptions] = attrs.field(factory=dict)

    def deep_copy(self) -> MsgMetadata:
        """A copy whose maps and options are its own: changing it never changes this one.

        `conn` is shared, as the seed allows: a connection's state belongs to all of its
        messages. (maddy's own DeepCopy is in fact shallow; this one is not.)
        """
        new = _new_meta(MsgMetadata)
        new.id = self.id
        new.original_from = self.original_from
        new.dont_trace_sender = self.dont_trace_sender
        new.quarantine = self.quarantine
        rcpts = self.original_rcpts
        new.original_rcpts = None if rcpts is None else rcpts.copy()
        new.smtp_opts = self.smtp_opts  # frozen: sharing is copying
        new.conn = self.conn
        new.tls_require_override = self.tls_require_override
        new.rcpt_opts = self.rcpt_opts.copy()  # values are frozen
        return new

    def to_json(self, *, with_conn: bool = False) -> bytes:
        """This metadata as Go's `json.Marshal` writes maddy's MsgMetadata.

        `conn` is written as null unless `with_conn`: maddy cannot read a connection state
        back. With it, addresses are strings, the password is never written and the
        reverse-DNS name only when already resolved.

        Raises:
            MetadataError: a field holds what the document cannot (a number for a string,
                a non-string key); names its path, such as `OriginalRcpts["a@x"]`.
        """
        return gj.dumps(_meta_to_json(self, with_conn))

    @classmethod
    def from_json(cls, data: bytes | str) -> MsgMetadata:
        """Read what `to_json` (or maddy) wrote.

        Raises:
            MetadataError: the document is malformed; names the JSON path of the culprit.
        """
        return _meta_from_json(gj.loads(data), "")


_new_meta = object.__new__


_TIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))"
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_MAX_ORDINAL = _dt.date.max.toordinal()
_NS = 1_000_000_000


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
        m = _TIME_RE.fullmatch(text)
        if m is None:
            raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
        try:  # the pattern has fixed the form of the first 19 characters
            base = _dt.datetime.fromisoformat(text[:19])
        except ValueError:
            raise ValueError(f"no such date or time: {text!r}") from None
        frac_digits, zulu, sign, oh, om = m.groups()
        if zulu:
            offset = 0
        else:
            if int(oh) > 23 or int(om) > 59:
                raise ValueError(f"UTC offset out of range: {text!r}")
            offset = (int(oh) * 3600 + int(om) * 60) * (-1 if sign == "-" else 1)
        frac = int(frac_digits.ljust(9, "0")) if frac_digits else 0
        secs = (
            (base.toordinal() - _EPOCH_ORDINAL) * 86400
            + base.hour * 3600
            + base.minute * 60
            + base.second
            - offset
        )
        stamp = cls(secs * _NS + frac, offset)
        if (zulu or offset) and not (frac_digits and frac_digits[-1] == "0"):
            object.__setattr__(stamp, "_text", text)  # already in Go's form
        return stamp

    def format(self) -> str:
        """RFC 3339 with nanoseconds, trailing zeros dropped, as Go's RFC3339Nano writes.

        Raises:
            ValueError: the local date is outside the years 0001-9999.
        """
        if self._text is None:
            object.__setattr__(self, "_text", self._format())
        assert self._text is not None
        return self._text

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
        return gj.dumps(_queue_to_json(self, with_conn)) + b"\n"

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
        return _queue_from_json(gj.loads(data))

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


# JSON: writing.


# The fields of the mutable types are checked as they are written: a document we write
# must read back, here and in maddy, or the queue loses the message.


def _bad_strs(value: object, path: str) -> None:
    """Name the culprit in a list of strings that failed its quick check."""
    if not isinstance(value, list):
        raise gj.fail(path, "a list of strings or None", value)
    for i, item in enumerate(value):
        if type(item) is not str:
            raise gj.fail(f"{path}[{i}]", "a string", item)


def _bad_map(value: object, path: str, ok: Callable[[object], bool], expected: str) -> None:
    """Name the culprit in a map that failed its quick check."""
    if not isinstance(value, dict):
        raise gj.fail(path, "a map (a dict)", value)
    for k, v in value.items():
        if type(k) is not str:
            raise MetadataError(f"expected string keys, got {k!r}", path=path)
        if not ok(v):
            raise gj.fail(f'{path}["{k}"]', expected, v)


def _check_meta(m: MsgMetadata, path: str, with_conn: bool) -> None:
    if type(m.id) is not str:
        raise gj.fail(gj.join(path, "ID"), "a str", m.id)
    if type(m.original_from) is not str:
        raise gj.fail(gj.join(path, "OriginalFrom"), "a str", m.original_from)
    if type(m.dont_trace_sender) is not bool:
        raise gj.fail(gj.join(path, "DontTraceSender"), "a bool", m.dont_trace_sender)
    if type(m.quarantine) is not bool:
        raise gj.fail(gj.join(path, "Quarantine"), "a bool", m.quarantine)
    if type(m.tls_require_override) is not bool:
        raise gj.fail(gj.join(path, "TLSRequireOverride"), "a bool", m.tls_require_override)
    if not isinstance(m.smtp_opts, MailOptions):
        raise gj.fail(gj.join(path, "SMTPOpts"), "MailOptions", m.smtp_opts)
    rcpts = m.original_rcpts
    if rcpts is not None and not (
        type(rcpts) is dict and _all_str(rcpts) and _all_str(rcpts.values())
    ):
        _bad_map(rcpts, gj.join(path, "OriginalRcpts"), _is_str, "a string")
    opts = m.rcpt_opts
    if not (type(opts) is dict and _all_str(opts) and all(map(_is_rcpt_opts, opts.values()))):
        _bad_map(opts, gj.join(path, "RcptOpts"), _is_rcpt_opts, "RcptOptions")
    if with_conn and m.conn is not None:
        _check_conn(m.conn, gj.join(path, "Conn"))


def _check_conn(c: ConnState, path: str) -> None:
    if not isinstance(c, ConnState):
        raise gj.fail(path, "a ConnState or None", c)
    for key, value in (
        ("Proto", c.proto),
        ("Hostname", c.hostname),
        ("LocalAddr", c.local_addr),
        ("RemoteAddr", c.remote_addr),
        ("AuthUser", c.auth_user),
    ):
        if type(value) is not str:
            raise gj.fail(f"{path}.{key}", "a str", value)
    if c.tls is not None and not isinstance(c.tls, TLSState):
        raise gj.fail(f"{path}.TLS", "a TLSState", c.tls)


def _check_queue(q: QueueMetadata) -> None:
    if q.msg_meta is not None and not isinstance(q.msg_meta, MsgMetadata):
        raise gj.fail("MsgMeta", "a MsgMetadata or None", q.msg_meta)
    if type(q.from_) is not str:
        raise gj.fail("From", "a str", q.from_)
    for key, strs in (
        ("To", q.to),
        ("FailedRcpts", q.failed_rcpts),
        ("TemporaryFailedRcpts", q.temporary_failed_rcpts),
    ):
        if strs is not None and not (type(strs) is list and _all_str(strs)):
            _bad_strs(strs, key)
    errs = q.rcpt_errs
    if errs is not None and not (
        type(errs) is dict and _all_str(errs) and all(map(_is_error, errs.values()))
    ):
        _bad_map(errs, "RcptErrs", _is_error, "an SMTPError or None")
    tries = q.tries_count
    if tries is not None and not (
        type(tries) is dict and _all_str(tries) and all(map(_is_int64, tries.values()))
    ):
        _bad_map(tries, "TriesCount", _is_int64, "a 64-bit integer")
    if not isinstance(q.first_attempt, Timestamp):
        raise gj.fail("FirstAttempt", "a Timestamp", q.first_attempt)
    if not isinstance(q.last_attempt, Timestamp):
        raise gj.fail("LastAttempt", "a Timestamp", q.last_attempt)


def _all_str(values: Iterable[str]) -> bool:
    """Whether every value really is a string, as typed: joining them checks at C speed."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _is_str(value: object) -> bool:
    return type(value) is str


def _is_int64(value: object) -> bool:
    return type(value) is int and gj.INT64_MIN <= value <= gj.INT64_MAX


def _is_rcpt_opts(value: object) -> bool:
    return isinstance(value, RcptOptions)


def _is_error(value: object) -> bool:
    return value is None or isinstance(value, SMTPError)


def _rdns_to_json(value: Awaitable[str | None] | None) -> str | None:
    # null: reverse DNS does not apply; "": attempted, no name (failed, or still pending
    # when written); otherwise the name.
    if value is None:
        return None
    name: object = None
    if isinstance(value, Resolved):
        name = value.value
    elif (
        isinstance(value, asyncio.Future)
        and value.done()
        and not value.cancelled()
        and value.exception() is None
    ):
        name = value.result()
    return name if isinstance(name, str) else ""


def _conn_to_json(conn: ConnState) -> JSONObject:
    tls: JSONValue = None
    if conn.tls is not None:
        tls = {
            "Version": conn.tls.version,
            "CipherSuite": conn.tls.cipher,
            "ServerName": conn.tls.server_name,
            "HandshakeComplete": conn.tls.handshake_complete,
            "PeerCertificates": [
                base64.b64encode(c).decode("ascii") for c in conn.tls.peer_certificates
            ],
        }
    mod_data = conn.mod_data.to_dict()
    return {
        "Proto": conn.proto,
        "Hostname": conn.hostname,
        "LocalAddr": conn.local_addr,
        "RemoteAddr": conn.remote_addr,
        "TLS": tls,
        "RDNSName": _rdns_to_json(conn.rdns_name),
        "AuthUser": conn.auth_user,
        "ModData": {k: mod_data[k] for k in sorted(mod_data)},
    }


def _meta_to_json(meta: MsgMetadata, with_conn: bool, path: str = "") -> JSONObject:
    _check_meta(meta, path, with_conn)
    opts = meta.smtp_opts
    rcpts = meta.original_rcpts
    out: JSONObject = {
        "ID": meta.id,
        "OriginalFrom": meta.original_from,
        "DontTraceSender": meta.dont_trace_sender,
        "Quarantine": meta.quarantine,
        "OriginalRcpts": None if rcpts is None else {k: rcpts[k] for k in sorted(rcpts)},
        "SMTPOpts": {
            "Body": opts.body,
            "Size": opts.size,
            "RequireTLS": opts.require_tls,
            "UTF8": opts.utf8,
            "Return": opts.return_,
            "EnvelopeID": opts.envelope_id,
            "Auth": opts.auth,
        },
        "Conn": _conn_to_json(meta.conn) if with_conn and meta.conn is not None else None,
        "TLSRequireOverride": meta.tls_require_override,
    }
    if meta.rcpt_opts:
        out["RcptOpts"] = {
            k: {
                "Notify": list(v.notify),
                "OriginalRecipientType": v.original_recipient_type,
                "OriginalRecipient": v.original_recipient,
            }
            for k, v in sorted(meta.rcpt_opts.items())
        }
    return out


def _queue_to_json(q: QueueMetadata, with_conn: bool) -> JSONObject:
    _check_queue(q)
    errs = q.rcpt_errs
    tries = q.tries_count
    return {
        "MsgMeta": None if q.msg_meta is None else _meta_to_json(q.msg_meta, with_conn, "MsgMeta"),
        "From": q.from_,
        "To": _strs(q.to),
        "FailedRcpts": _strs(q.failed_rcpts),
        "TemporaryFailedRcpts": _strs(q.temporary_failed_rcpts),
        "RcptErrs": None if errs is None else {k: _err_to_json(errs[k]) for k in sorted(errs)},
        "TriesCount": None if tries is None else {k: tries[k] for k in sorted(tries)},
        "FirstAttempt": _time_to_json(q.first_attempt, "FirstAttempt"),
        "LastAttempt": _time_to_json(q.last_attempt, "LastAttempt"),
    }


def _strs(value: list[str] | None) -> JSONValue:
    return None if value is None else list(value)


def _err_to_json(err: SMTPError | None) -> JSONValue:
    if err is None:
        return None
    return {"Code": err.code, "EnhancedCode": list(err.enhanced_code), "Message": err.message}


def _time_to_json(value: Timestamp, path: str) -> str:
    try:
        return value.format()
    except ValueError as exc:
        raise MetadataError(str(exc), path=path) from exc


# JSON: reading.

_META = gj.Struct(
    "ID",
    "OriginalFrom",
    "DontTraceSender",
    "Quarantine",
    "OriginalRcpts",
    "SMTPOpts",
    "Conn",
    "TLSRequireOverride",
    "RcptOpts",
)
_OPTS = gj.Struct("Body", "Size", "RequireTLS", "UTF8", "Return", "EnvelopeID", "Auth")
_RCPT_OPTS = gj.Struct("Notify", "OriginalRecipientType", "OriginalRecipient")
_CONN = gj.Struct(
    "Proto", "Hostname", "LocalAddr", "RemoteAddr", "TLS", "RDNSName", "AuthUser", "ModData"
)
_TLS = gj.Struct("Version", "CipherSuite", "ServerName", "HandshakeComplete", "PeerCertificates")
_QUEUE = gj.Struct(
    "MsgMeta",
    "From",
    "To",
    "FailedRcpts",
    "TemporaryFailedRcpts",
    "RcptErrs",
    "TriesCount",
    "FirstAttempt",
    "LastAttempt",
)
_ERR = gj.Struct("Code", "EnhancedCode", "Message")


@final
class _checked:  # used like a function: `with _checked(path):`
    """A value type's own validation error, as a MetadataError at `path`.

    A class, not a generator-based context manager: this runs for every option set read,
    and a generator costs three times as much.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, ValueError) and not isinstance(exc, MetadataError):
            raise MetadataError(str(exc), path=self.path) from exc


def _opts_from_json(value: JSONValue, path: str) -> MailOptions:
    if value is None:
        return MailOptions()
    o = _OPTS.match(value, path)
    with _checked(path):
        return MailOptions(
            body=gj.str_field(o, "Body", path),
            size=gj.int_field(o, "Size", path),
            require_tls=gj.bool_field(o, "RequireTLS", path),
            utf8=gj.bool_field(o, "UTF8", path),
            return_=gj.str_field(o, "Return", path),
            envelope_id=gj.str_field(o, "EnvelopeID", path),
            auth=gj.opt_str_field(o, "Auth", path),
        )


def _rcpt_opts_from_json(value: JSONValue, path: str) -> RcptOptions:
    o = _RCPT_OPTS.match(value, path)
    with _checked(path):
        return RcptOptions(
            notify=tuple(gj.str_list_field(o, "Notify", path) or ()),
            original_recipient_type=gj.str_field(o, "OriginalRecipientType", path),
            original_recipient=gj.str_field(o, "OriginalRecipient", path),
        )


def _cert_from_json(value: JSONValue, path: str) -> bytes:
    text = gj.read_str(value, path)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MetadataError(f"not base64: {exc}", path=path) from exc


def _tls_from_json(value: JSONValue, path: str) -> TLSState | None:
    if value is None:
        return None
    o = _TLS.match(value, path)
    certs = gj.read_list(o.get("PeerCertificates"), f"{path}.PeerCertificates", _cert_from_json)
    return TLSState(
        version=gj.str_field(o, "Version", path),
        cipher=gj.str_field(o, "CipherSuite", path),
        server_name=gj.str_field(o, "ServerName", path),
        handshake_complete=gj.bool_field(o, "HandshakeComplete", path),
        peer_certificates=tuple(certs) if certs else (),
    )


def _json_value(value: JSONValue, path: str) -> JSONValue:
    return value


def _conn_from_json(value: JSONValue, path: str) -> ConnState | None:
    if value is None:
        return None
    o = _CONN.match(value, path)
    rdns = gj.opt_str_field(o, "RDNSName", path)
    mod_data = gj.read_map(o.get("ModData"), f"{path}.ModData", _json_value) or {}
    return ConnState(
        proto=gj.str_field(o, "Proto", path),
        hostname=gj.str_field(o, "Hostname", path),
        local_addr=gj.str_field(o, "LocalAddr", path),
        remote_addr=gj.str_field(o, "RemoteAddr", path),
        tls=_tls_from_json(o.get("TLS"), f"{path}.TLS"),
        rdns_name=None if rdns is None else Resolved(rdns or None),
        auth_user=gj.str_field(o, "AuthUser", path),
        mod_data=ModSpecificData(mod_data),
    )


def _meta_from_json(value: JSONValue, path: str) -> MsgMetadata:
    o = _META.match(value, path)
    j = gj.join
    meta = MsgMetadata(
        id=gj.str_field(o, "ID", path),
        original_from=gj.str_field(o, "OriginalFrom", path),
        dont_trace_sender=gj.bool_field(o, "DontTraceSender", path),
        quarantine=gj.bool_field(o, "Quarantine", path),
        original_rcpts=gj.str_map_field(o, "OriginalRcpts", path),
        smtp_opts=_opts_from_json(o.get("SMTPOpts"), j(path, "SMTPOpts")),
        conn=_conn_from_json(o.get("Conn"), j(path, "Conn")),
        tls_require_override=gj.bool_field(o, "TLSRequireOverride", path),
    )
    rcpt_opts = o.get("RcptOpts")
    if rcpt_opts is not None:
        meta.rcpt_opts = gj.read_map(rcpt_opts, j(path, "RcptOpts"), _rcpt_opts_from_json) or {}
    return meta


def _err_from_json(value: JSONValue, path: str) -> SMTPError | None:
    if value is None:
        return None
    o = _ERR.match(value, path)
    enh = o.get("EnhancedCode")
    if not (type(enh) is list and len(enh) == 3 and all(type(p) is int for p in enh)):
        if not isinstance(enh, list) or len(enh) != 3:
            raise MetadataError("expected an array of three integers", path=f"{path}.EnhancedCode")
        for i, part in enumerate(enh):
            gj.read_int(part, f"{path}.EnhancedCode[{i}]")
    e0, e1, e2 = cast("list[int]", enh)
    with _checked(path):
        return SMTPError(
            gj.int_field(o, "Code", path), (e0, e1, e2), gj.str_field(o, "Message", path)
        )


def _time_from_json(value: JSONValue, path: str) -> Timestamp:
    if value is None:
        return Timestamp.ZERO
    if type(value) is not str:
        raise gj.fail(path, "an RFC 3339 timestamp string", value)
    try:
        return Timestamp.parse(value)
    except ValueError as exc:
        raise MetadataError(str(exc), path=path) from exc


def _queue_from_json(value: JSONValue) -> QueueMetadata:
    o = _QUEUE.match(value, "")
    msg_meta = o.get("MsgMeta")
    errs = o.get("RcptErrs")
    return QueueMetadata(
        msg_meta=None if msg_meta is None else _meta_from_json(msg_meta, "MsgMeta"),
        from_=gj.str_field(o, "From", ""),
        to=gj.str_list_field(o, "To", ""),
        failed_rcpts=gj.str_list_field(o, "FailedRcpts", ""),
        temporary_failed_rcpts=gj.str_list_field(o, "TemporaryFailedRcpts", ""),
        rcpt_errs=None if errs is None else gj.read_map(errs, "RcptErrs", _err_from_json),
        tries_count=gj.int_map_field(o, "TriesCount", ""),
        first_attempt=_time_from_json(o.get("FirstAttempt"), "FirstAttempt"),
        last_attempt=_time_from_json(o.get("LastAttempt"), "LastAttempt"),
    )
