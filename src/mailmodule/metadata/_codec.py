"""The JSON codec of message and queue metadata: maddy's documents, byte for byte.

Writing checks each field's type as it is written: a document we write must read back,
here and in maddy, or the queue loses the message.

Reading has two paths. The fast one takes a document as Go writes it (every field present,
spelled as Go spells it, each value of its type) and builds the objects after a few inline
checks. Anything else, and any value a type refuses, goes to the careful one, which is
tolerant where maddy is (keys matched case-insensitively, unknown keys ignored, null for
a default) and names the JSON path of what it refuses. Where both take a document they
give equal objects; the careful one is the reference.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeGuard, TypeVar, cast, final

from mailmodule import _gojson as gj
from mailmodule._gojson import JSONObject, JSONValue
from mailmodule.errors import MetadataError, SMTPError

# Modules, not names: _message and _queue import this module back for their to_json and
# from_json, so their classes are looked up when a document is read or written.
from mailmodule.metadata import _message, _queue
from mailmodule.metadata._build import slot_setters
from mailmodule.metadata._conn import ConnState, ModSpecificData, Resolved, TLSState
from mailmodule.metadata._options import (
    BODY_TYPES,
    DSN_NOTIFY,
    DSN_RETURN,
    MailOptions,
    RcptOptions,
)

__all__ = ["read_meta", "read_queue", "write_meta", "write_queue"]

_V = TypeVar("_V")


def write_meta(meta: _message.MsgMetadata, with_conn: bool) -> bytes:
    """`MsgMetadata.to_json`."""
    try:
        return gj.dumps(_meta_to_json(meta, with_conn, ""))
    except (_Irregular, MetadataError, TypeError):
        try:
            _check_meta(meta, "", with_conn)
        except MetadataError as culprit:
            raise culprit from None
        raise


def write_queue(queue: _queue.QueueMetadata, with_conn: bool) -> bytes:
    """`QueueMetadata.to_json`: with the trailing newline of Go's `json.Encoder`."""
    try:
        return gj.dumps(_queue_to_json(queue, with_conn), newline=True)
    except (_Irregular, MetadataError, TypeError):
        try:
            _check_queue(queue, with_conn)
        except MetadataError as culprit:
            raise culprit from None
        raise


def read_meta(data: bytes | str) -> _message.MsgMetadata:
    """`MsgMetadata.from_json`."""
    value = gj.loads(data)
    try:
        return _meta_fast(value)
    except (_Irregular, KeyError, ValueError):
        return _meta_from_json(value, "")


def read_queue(data: bytes | str) -> _queue.QueueMetadata:
    """`QueueMetadata.from_json`."""
    value = gj.loads(data)
    try:
        return _queue_fast(value)
    except (_Irregular, KeyError, ValueError):
        return _queue_from_json(value)


@final
class _Irregular(Exception):
    """Raised by a fast path at what it does not take: the careful path decides."""


# Writing.
#
# A document we write must read back, here and in maddy, or the queue loses the message.
# The writers check each value in one quick expression (_Irregular where it fails) and
# leave map keys to orjson, which refuses any key that is not exactly a str (sorted() may
# refuse keys of mixed types first). When anything is refused, the _check_* functions go
# over the fields one by one for the MetadataError that names the culprit. Each quick
# check accepts exactly what its _check_* accepts.


def _check_strs(value: object, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise gj.fail(path, "a list of strings or None", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise gj.fail(f"{path}[{i}]", "a string", item)


def _check_map(
    value: object, path: str, ok: Callable[[object], bool], expected: str, *, opt: bool = True
) -> None:
    if value is None and opt:
        return
    if not isinstance(value, dict):
        raise gj.fail(path, "a map (a dict)", value)
    for k, v in value.items():
        if type(k) is not str:
            raise MetadataError(f"expected string keys, got {k!r}", path=path)
        if not ok(v):
            raise gj.fail(f'{path}["{k}"]', expected, v)


def _check_meta(m: _message.MsgMetadata, path: str, with_conn: bool) -> None:
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
    _check_map(m.original_rcpts, gj.join(path, "OriginalRcpts"), _is_str, "a string")
    _check_map(m.rcpt_opts, gj.join(path, "RcptOpts"), _is_rcpt_opts, "RcptOptions", opt=False)
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


def _check_queue(q: _queue.QueueMetadata, with_conn: bool) -> None:
    if q.msg_meta is not None:
        if not isinstance(q.msg_meta, _message.MsgMetadata):
            raise gj.fail("MsgMeta", "a MsgMetadata or None", q.msg_meta)
        _check_meta(q.msg_meta, "MsgMeta", with_conn)
    if type(q.from_) is not str:
        raise gj.fail("From", "a str", q.from_)
    _check_strs(q.to, "To")
    _check_strs(q.failed_rcpts, "FailedRcpts")
    _check_strs(q.temporary_failed_rcpts, "TemporaryFailedRcpts")
    _check_map(q.rcpt_errs, "RcptErrs", _is_error, "an SMTPError or None")
    _check_map(q.tries_count, "TriesCount", _is_int64, "a 64-bit integer")
    if not isinstance(q.first_attempt, _queue.Timestamp):
        raise gj.fail("FirstAttempt", "a Timestamp", q.first_attempt)
    if not isinstance(q.last_attempt, _queue.Timestamp):
        raise gj.fail("LastAttempt", "a Timestamp", q.last_attempt)


def _all_str(values: Iterable[str]) -> bool:
    """Whether every value is a string, whatever the declared type says: joining them
    checks at C speed."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int64(value: object) -> bool:
    return type(value) is int and gj.INT64_MIN <= value <= gj.INT64_MAX


def _is_rcpt_opts(value: object) -> bool:
    return isinstance(value, RcptOptions)


def _is_error(value: object) -> bool:
    return value is None or isinstance(value, SMTPError)


def _opt_strs(value: object) -> TypeGuard[list[str] | None]:
    return value is None or (isinstance(value, list) and _all_str(value))


def _opt_str_map(value: object) -> TypeGuard[dict[str, str] | None]:
    """Keys unchecked: the JSON decoder or encoder checks them."""
    return value is None or (isinstance(value, dict) and _all_str(value.values()))


def _opt_int64_map(value: object) -> TypeGuard[dict[str, int] | None]:
    """Keys unchecked: the JSON decoder or encoder checks them."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    for v in value.values():  # a loop, not all(map(...)): no call per value
        if type(v) is not int or not gj.INT64_MIN <= v <= gj.INT64_MAX:
            return False
    return True


def _sorted(value: Mapping[str, JSONValue]) -> JSONObject:
    """A map as Go writes it, keys in order: one in order already (as read) is not copied."""
    return cast("JSONObject", value) if _keys_in_order(value) else dict(sorted(value.items()))


def _in_order(value: Mapping[str, _V]) -> Iterable[tuple[str, _V]]:
    """The items of a map in the order of its keys, not sorted again when they are."""
    return value.items() if _keys_in_order(value) else sorted(value.items())


def _keys_in_order(value: Mapping[str, object]) -> bool:
    if len(value) < 2:  # most messages have a single recipient
        return True
    keys = list(value)
    return keys == sorted(keys)  # keys sort and compare in half the time of items


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
        "ModData": dict(sorted(mod_data.items())),
    }


def _meta_to_json(meta: _message.MsgMetadata, with_conn: bool, path: str) -> JSONObject:
    id_, original_from, rcpts, opts = (
        meta.id,
        meta.original_from,
        meta.original_rcpts,
        meta.smtp_opts,
    )
    dont_trace, quarantine, tls_override = (
        meta.dont_trace_sender,
        meta.quarantine,
        meta.tls_require_override,
    )
    rcpt_opts, conn = meta.rcpt_opts, meta.conn if with_conn else None
    if not (
        type(id_) is str
        and type(original_from) is str
        and type(dont_trace) is bool
        and type(quarantine) is bool
        and type(tls_override) is bool
        and isinstance(opts, MailOptions)
        and _opt_str_map(rcpts)
        and isinstance(rcpt_opts, dict)
        and all(map(_is_rcpt_opts, rcpt_opts.values()))
    ):
        raise _Irregular
    if conn is not None:
        _check_conn(conn, gj.join(path, "Conn"))
    out: JSONObject = {
        "ID": id_,
        "OriginalFrom": original_from,
        "DontTraceSender": dont_trace,
        "Quarantine": quarantine,
        "OriginalRcpts": None if rcpts is None else _sorted(rcpts),
        "SMTPOpts": {
            "Body": opts.body,
            "Size": opts.size,
            "RequireTLS": opts.require_tls,
            "UTF8": opts.utf8,
            "Return": opts.return_,
            "EnvelopeID": opts.envelope_id,
            "Auth": opts.auth,
        },
        "Conn": None if conn is None else _conn_to_json(conn),
        "TLSRequireOverride": tls_override,
    }
    if rcpt_opts:
        out["RcptOpts"] = {
            k: {
                "Notify": list(v.notify),
                "OriginalRecipientType": v.original_recipient_type,
                "OriginalRecipient": v.original_recipient,
            }
            for k, v in _in_order(rcpt_opts)
        }
    return out


def _queue_to_json(q: _queue.QueueMetadata, with_conn: bool) -> JSONObject:
    meta, from_, errs, tries = q.msg_meta, q.from_, q.rcpt_errs, q.tries_count
    to, failed, temp = q.to, q.failed_rcpts, q.temporary_failed_rcpts
    first, last = q.first_attempt, q.last_attempt
    if not (
        (meta is None or isinstance(meta, _message.MsgMetadata))
        and type(from_) is str
        and _opt_strs(to)
        and _opt_strs(failed)
        and _opt_strs(temp)
        and (errs is None or (isinstance(errs, dict) and all(map(_is_error, errs.values()))))
        and _opt_int64_map(tries)
        and isinstance(first, _queue.Timestamp)
        and isinstance(last, _queue.Timestamp)
    ):
        raise _Irregular
    return {
        "MsgMeta": None if meta is None else _meta_to_json(meta, with_conn, "MsgMeta"),
        "From": from_,
        # Checked above: written as they are, not copied (the casts: a list is invariant).
        "To": cast("JSONValue", to),
        "FailedRcpts": cast("JSONValue", failed),
        "TemporaryFailedRcpts": cast("JSONValue", temp),
        "RcptErrs": None if errs is None else _errs_to_json(errs),
        "TriesCount": None if tries is None else _sorted(tries),
        "FirstAttempt": _time_to_json(first, "FirstAttempt"),
        "LastAttempt": _time_to_json(last, "LastAttempt"),
    }


def _errs_to_json(errs: dict[str, SMTPError | None]) -> JSONObject:
    out: JSONObject = {}
    for k, e in _in_order(errs):
        out[k] = (
            None
            if e is None
            else {"Code": e.code, "EnhancedCode": list(e.enhanced_code), "Message": e.message}
        )
    return out


def _time_to_json(value: _queue.Timestamp, path: str) -> str:
    try:
        return value.format()
    except ValueError as exc:
        raise MetadataError(str(exc), path=path) from exc


# Reading, carefully.

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


def _meta_from_json(value: JSONValue, path: str) -> _message.MsgMetadata:
    o = _META.match(value, path)
    j = gj.join
    meta = _message.MsgMetadata(
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


def _time_from_json(value: JSONValue, path: str) -> _queue.Timestamp:
    if value is None:
        return _queue.Timestamp.ZERO
    if type(value) is not str:
        raise gj.fail(path, "an RFC 3339 timestamp string", value)
    try:
        return _queue.Timestamp.parse(value)
    except ValueError as exc:
        raise MetadataError(str(exc), path=path) from exc


def _queue_from_json(value: JSONValue) -> _queue.QueueMetadata:
    o = _QUEUE.match(value, "")
    msg_meta = o.get("MsgMeta")
    errs = o.get("RcptErrs")
    return _queue.QueueMetadata(
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


# Reading, fast: documents as Go writes them.


# An object of as many keys as its struct has fields, each found by its Go name, has no
# other key: a length and the lookups (KeyError) check it faster than comparing key sets.
_QUEUE_LEN = len(_QUEUE.names)
_META_LEN = len(_META.names)  # maddy does not write RcptOpts: one fewer
_OPTS_LEN = len(_OPTS.names)
_RCPT_OPTS_LEN = len(_RCPT_OPTS.names)
_ERR_LEN = len(_ERR.names)
_new = object.__new__
_OPTS_SETTERS = slot_setters(
    MailOptions, "body", "size", "require_tls", "utf8", "return_", "envelope_id", "auth"
)
_RCPT_OPTS_SETTERS = slot_setters(
    RcptOptions, "notify", "original_recipient_type", "original_recipient"
)


def _queue_fast(o: JSONValue) -> _queue.QueueMetadata:
    if type(o) is not dict or len(o) != _QUEUE_LEN:
        raise _Irregular
    meta, from_, errs = o["MsgMeta"], o["From"], o["RcptErrs"]
    to, failed, temp = o["To"], o["FailedRcpts"], o["TemporaryFailedRcpts"]
    tries, first, last = o["TriesCount"], o["FirstAttempt"], o["LastAttempt"]
    if not (
        type(from_) is str
        and type(first) is str
        and type(last) is str
        and _opt_strs(to)
        and _opt_strs(failed)
        and _opt_strs(temp)
        and _opt_int64_map(tries)
    ):
        raise _Irregular
    parse = _queue.Timestamp.parse
    # Every field is set here: built without __init__, as MsgMetadata.deep_copy builds.
    q: _queue.QueueMetadata = _new(_queue.QueueMetadata)
    q.msg_meta = None if meta is None else _meta_fast(meta)
    q.from_ = from_
    q.to = to
    q.failed_rcpts = failed
    q.temporary_failed_rcpts = temp
    q.rcpt_errs = None if errs is None else _errs_fast(errs)
    q.tries_count = tries
    q.first_attempt = parse(first)
    q.last_attempt = parse(last)
    return q


def _meta_fast(o: JSONValue) -> _message.MsgMetadata:
    if type(o) is not dict or not _META_LEN - 1 <= len(o) <= _META_LEN:
        raise _Irregular
    id_, original_from, rcpts = o["ID"], o["OriginalFrom"], o["OriginalRcpts"]
    dont_trace, quarantine, tls_override = (
        o["DontTraceSender"],
        o["Quarantine"],
        o["TLSRequireOverride"],
    )
    if not (
        type(id_) is str
        and type(original_from) is str
        and type(dont_trace) is bool
        and type(quarantine) is bool
        and type(tls_override) is bool
        and _opt_str_map(rcpts)
    ):
        raise _Irregular
    conn = o["Conn"]
    rcpt_opts = o["RcptOpts"] if len(o) == _META_LEN else None
    meta: _message.MsgMetadata = _new(_message.MsgMetadata)  # every field set below
    meta.id = id_
    meta.original_from = original_from
    meta.dont_trace_sender = dont_trace
    meta.quarantine = quarantine
    meta.original_rcpts = rcpts
    meta.smtp_opts = _opts_fast(o["SMTPOpts"])
    meta.conn = None if conn is None else _conn_from_json(conn, "Conn")
    meta.tls_require_override = tls_override
    meta.rcpt_opts = {} if rcpt_opts is None else _rcpt_opts_fast(rcpt_opts)
    return meta


def _opts_fast(o: JSONValue) -> MailOptions:
    if type(o) is not dict or len(o) != _OPTS_LEN:
        raise _Irregular
    body, size, require_tls, utf8 = o["Body"], o["Size"], o["RequireTLS"], o["UTF8"]
    return_, envelope_id, auth = o["Return"], o["EnvelopeID"], o["Auth"]
    if not (
        type(body) is str
        and body in BODY_TYPES
        and type(size) is int
        and 0 <= size <= gj.INT64_MAX
        and type(require_tls) is bool
        and type(utf8) is bool
        and type(return_) is str
        and return_ in DSN_RETURN
        and type(envelope_id) is str
        and (auth is None or type(auth) is str)
    ):
        raise _Irregular
    # Checked above as its validators check: built without running them again.
    opts = _new(MailOptions)
    set_body, set_size, set_require_tls, set_utf8, set_return, set_envelope_id, set_auth = (
        _OPTS_SETTERS
    )
    set_body(opts, body)
    set_size(opts, size)
    set_require_tls(opts, require_tls)
    set_utf8(opts, utf8)
    set_return(opts, return_)
    set_envelope_id(opts, envelope_id)
    set_auth(opts, auth)
    return opts


def _rcpt_opts_fast(o: JSONValue) -> dict[str, RcptOptions]:
    if type(o) is not dict:
        raise _Irregular
    out: dict[str, RcptOptions] = {}
    set_notify, set_kind, set_original = _RCPT_OPTS_SETTERS
    for rcpt, v in o.items():
        if type(v) is not dict or len(v) != _RCPT_OPTS_LEN:
            raise _Irregular
        notify, kind, original = v["Notify"], v["OriginalRecipientType"], v["OriginalRecipient"]
        if not (_opt_strs(notify) and type(kind) is str and type(original) is str):
            raise _Irregular
        if notify and not DSN_NOTIFY.issuperset(notify):
            raise _Irregular
        if notify and "NEVER" in notify and len(notify) > 1:
            raise _Irregular
        # Checked above as its validator checks: built without running it again.
        opts = _new(RcptOptions)
        set_notify(opts, tuple(notify) if notify else ())
        set_kind(opts, kind)
        set_original(opts, original)
        out[rcpt] = opts
    return out


def _errs_fast(o: JSONValue) -> dict[str, SMTPError | None]:
    if type(o) is not dict:
        raise _Irregular
    out: dict[str, SMTPError | None] = {}
    for rcpt, v in o.items():
        if v is None:
            out[rcpt] = None
            continue
        if type(v) is not dict or len(v) != _ERR_LEN:
            raise _Irregular
        code, enh, message = v["Code"], v["EnhancedCode"], v["Message"]
        if not (type(enh) is list and len(enh) == 3):
            raise _Irregular
        e0, e1, e2 = enh
        if not (
            type(code) is int
            and type(e0) is int
            and type(e1) is int
            and type(e2) is int
            and type(message) is str
        ):
            raise _Irregular
        out[rcpt] = SMTPError(code, (e0, e1, e2), message)  # its ranges: ValueError
    return out
