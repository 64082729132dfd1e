from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import pickle
import random
import re
import threading
from collections import defaultdict
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import MetadataError, SMTPError, StorageError
from mailmodule.metadata import (
    ConnState,
    MailOptions,
    ModSpecificData,
    MsgMetadata,
    QueueMetadata,
    RcptOptions,
    Resolved,
    Timestamp,
    TLSState,
    generate_msg_id,
)
from mailmodule.testing.strategies import (
    conn_states,
    json_text,
    msg_metadata,
    queue_metadata,
    timestamps,
)

# A document as maddy's queue writes it (Go's encoding/json, json.Encoder).
MADDY_META = (
    b'{"MsgMeta":{"ID":"a7f3c2d1","OriginalFrom":"sender@example.org","DontTraceSender":false,'
    b'"Quarantine":true,"OriginalRcpts":{"alias@example.com":"Alias@example.com",'
    b'"b\xc3\xbccher@example.com":"B\xc3\xbccher@example.com"},"SMTPOpts":{"Body":"8BITMIME",'
    b'"Size":1234,"RequireTLS":false,"UTF8":true,"Return":"HDRS","EnvelopeID":"env\\u003c1\\u003e",'
    b'"Auth":null},"Conn":null,"TLSRequireOverride":false},"From":"sender@example.org",'
    b'"To":["alias@example.com"],"FailedRcpts":null,"TemporaryFailedRcpts":null,'
    b'"RcptErrs":{"alias@example.com":{"Code":451,"EnhancedCode":[4,4,2],'
    b'"Message":"Network I/O error \\u0026 more"}},"TriesCount":{"alias@example.com":2},'
    b'"FirstAttempt":"2026-11-24T10:00:00.123456789+03:00",'
    b'"LastAttempt":"2026-11-24T10:15:00.5+03:00"}\n'
)


class Named:
    def __init__(self, name: str, inst: str) -> None:
        self._name, self._inst = name, inst

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._inst


def test_every_type_builds_from_keywords_alone() -> None:
    meta = MsgMetadata(id=generate_msg_id(), original_from="a@example.org")
    assert meta.smtp_opts == MailOptions()
    assert meta.conn is None
    assert meta.original_rcpts is None
    assert ConnState().rdns_name is None
    assert RcptOptions().notify == ()
    assert TLSState().handshake_complete
    assert QueueMetadata().first_attempt == Timestamp.ZERO


def test_generate_msg_id_gives_8_hex_digits_from_4_random_bytes() -> None:
    ids = {generate_msg_id() for _ in range(200)}
    assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
    assert len(ids) > 190


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"body": "8bit"}, "body"),
        ({"return_": "ALL"}, "return_"),
        ({"size": -1}, "size"),
    ],
)
def test_mail_options_refuse_values_go_smtp_never_gives(
    kwargs: dict[str, object], culprit: str
) -> None:
    with pytest.raises(ValueError, match=f"MailOptions.{culprit}"):
        MailOptions(**kwargs)  # type: ignore[arg-type]  # values are the point


def test_rcpt_options_refuse_never_combined_with_others() -> None:
    with pytest.raises(ValueError, match="NEVER"):
        RcptOptions(notify=("NEVER", "FAILURE"))
    with pytest.raises(ValueError, match="notify"):
        RcptOptions(notify=("SOMETIMES",))


@given(msg_metadata, conn_states, json_text)
def test_changing_a_deep_copy_never_changes_the_original(
    meta: MsgMetadata, conn: ConnState, text: str
) -> None:
    meta.conn = conn
    before = meta.to_json(with_conn=True)
    rcpts_before = None if meta.original_rcpts is None else dict(meta.original_rcpts)
    copy = meta.deep_copy()
    assert copy == meta
    copy.id += "x"
    copy.original_from += text
    copy.dont_trace_sender = not copy.dont_trace_sender
    copy.quarantine = not copy.quarantine
    copy.tls_require_override = not copy.tls_require_override
    if copy.original_rcpts is None:
        copy.original_rcpts = {}
    copy.original_rcpts[text + "@new"] = text
    copy.original_rcpts.clear()
    copy.original_rcpts["k"] = "v"
    copy.rcpt_opts["r@new" + text] = RcptOptions(notify=("NEVER",))
    copy.smtp_opts = MailOptions(size=copy.smtp_opts.size + 1)
    assert meta.to_json(with_conn=True) == before
    assert meta.original_rcpts == rcpts_before
    assert copy.conn is meta.conn  # shared, as the seed says


def test_auth_password_never_reaches_repr_str_or_json() -> None:
    conn = ConnState(auth_user="joe", auth_password="hunter2-secret")
    meta = MsgMetadata(id="1", conn=conn)
    for text in (repr(conn), str(conn), repr(meta), str(meta)):
        assert "hunter2" not in text
    assert b"hunter2" not in meta.to_json(with_conn=True)
    queue = QueueMetadata(msg_meta=meta)
    assert b"hunter2" not in queue.to_json(with_conn=True)
    assert QueueMetadata.from_json(queue.to_json(with_conn=True)).msg_meta is not None


@given(st.text(min_size=4))
def test_no_password_ever_reaches_json(password: str) -> None:
    meta = MsgMetadata(conn=ConnState(auth_user="u", auth_password=password))
    data = meta.to_json(with_conn=True)
    back = MsgMetadata.from_json(data)
    assert back.conn is not None
    assert back.conn.auth_password == ""
    assert "AuthPassword" not in data.decode()


def test_mod_data_keys_by_name_or_instance() -> None:
    data = ModSpecificData()
    mod = Named("check.spf", "spf1")
    data.set(mod, {"result": "pass"})
    data.set(mod, [1, 2], per_instance=True)
    assert data.get(mod) == {"result": "pass"}
    assert data.get(mod, per_instance=True) == [1, 2]
    assert data.to_dict() == {"check.spf": {"result": "pass"}, "check.spf/spf1": [1, 2]}
    assert data.get(Named("other", "")) is None


def test_mod_data_keys_an_unnamed_instance_by_its_module_name_alone() -> None:
    data = ModSpecificData()
    data.set(Named("check.x", ""), 1, per_instance=True)
    assert data.to_dict() == {"check.x/": 1}


def test_mod_data_set_before_a_restart_is_found_after_it() -> None:
    """Data read back from a queue file is found by fresh module objects of the same names,
    named instances and inline (unnamed) ones alike."""
    conn = ConnState()
    conn.mod_data.set(Named("check.spf", "spf1"), {"result": "pass"}, per_instance=True)
    conn.mod_data.set(Named("check.x", ""), [1], per_instance=True)
    conn.mod_data.set(Named("check.dkim", "d"), "shared")
    doc = QueueMetadata(msg_meta=MsgMetadata(id="1", conn=conn)).to_json(with_conn=True)
    del conn  # the process that wrote the file is gone

    queued = QueueMetadata.from_json(doc).msg_meta
    assert queued is not None
    assert queued.conn is not None
    after = queued.conn.mod_data
    assert after.get(Named("check.spf", "spf1"), per_instance=True) == {"result": "pass"}
    assert after.get(Named("check.x", ""), per_instance=True) == [1]
    assert after.get(Named("check.dkim", "other"), per_instance=False) == "shared"


def test_mod_data_refuses_values_that_are_not_json() -> None:
    data = ModSpecificData()
    for bad in (object(), {1: "x"}, [float("nan")], b"bytes"):
        with pytest.raises(MetadataError, match="ModData"):
            data.set(Named("m", ""), bad)  # type: ignore[arg-type]  # bad on purpose


def test_mod_data_copies_and_pickles_without_its_lock() -> None:
    data = ModSpecificData({"m": [1, {"a": 2}]})
    twin = copy.deepcopy(data)
    assert twin == data
    twin.set(Named("m", ""), 3)
    assert data.get(Named("m", "")) == [1, {"a": 2}]
    assert pickle.loads(pickle.dumps(data)) == data


def test_mod_data_is_safe_from_many_threads() -> None:
    data = ModSpecificData()
    start = threading.Barrier(16)

    def work(n: int) -> None:
        start.wait()
        for i in range(200):
            data.set(Named(f"m{n}", ""), i)
            data.to_dict()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert data.to_dict() == {f"m{n}": 199 for n in range(16)}


def test_a_document_maddy_wrote_reads_and_writes_back_byte_for_byte() -> None:
    queue = QueueMetadata.from_json(MADDY_META)
    assert queue.msg_meta is not None
    assert queue.msg_meta.quarantine
    assert queue.msg_meta.smtp_opts.return_ == "HDRS"
    assert queue.msg_meta.smtp_opts.envelope_id == "env<1>"
    assert queue.rcpt_errs == {
        "alias@example.com": SMTPError(451, (4, 4, 2), "Network I/O error & more")
    }
    assert queue.first_attempt.format() == "2026-11-24T10:00:00.123456789+03:00"
    assert queue.to_json() == MADDY_META


def test_writing_escapes_as_go_does() -> None:
    meta = MsgMetadata(original_from='<a>&\u2028\u2029\x01\x7f\n\t"\\é')
    text = meta.to_json().decode()
    assert '"OriginalFrom":"\\u003ca\\u003e\\u0026\\u2028\\u2029\\u0001\x7f\\n\\t\\"\\\\é"' in text


def test_writing_replaces_lone_surrogates_as_go_replaces_invalid_utf8() -> None:
    meta = MsgMetadata(original_from="a\udcffb")
    assert '"OriginalFrom":"a\ufffdb"' in meta.to_json().decode()


def test_reading_is_tolerant_where_maddy_is() -> None:
    doc = b'{"msgmeta":{"id":"x","smtpopts":null,"Unknown":[1]},"from":null,"Extra":{}}'
    queue = QueueMetadata.from_json(doc)
    assert queue.msg_meta is not None
    assert queue.msg_meta.id == "x"
    assert queue.msg_meta.smtp_opts == MailOptions()
    assert queue.from_ == ""
    assert queue.to is None


def test_reading_replaces_invalid_utf8_as_go_does() -> None:
    queue = QueueMetadata.from_json(b'{"From":"a\xffb"}')
    assert queue.from_ == "a\ufffdb"


def test_conn_is_written_as_null_unless_asked() -> None:
    conn = ConnState(proto="ESMTPS", remote_addr="192.0.2.1:4000", rdns_name=Resolved("mx.x"))
    meta = MsgMetadata(id="1", conn=conn)
    assert b'"Conn":null' in meta.to_json()
    back = MsgMetadata.from_json(meta.to_json(with_conn=True))
    assert back.conn is not None
    assert back.conn.remote_addr == "192.0.2.1:4000"
    assert back.conn.remote_ip is not None
    assert back.conn.rdns_name == Resolved("mx.x")


def test_conn_reverse_dns_keeps_not_applicable_apart_from_failed() -> None:
    for rdns in (None, Resolved(None), Resolved("mx.example.org")):
        meta = MsgMetadata(conn=ConnState(rdns_name=rdns))
        back = MsgMetadata.from_json(meta.to_json(with_conn=True))
        assert back.conn is not None
        assert back.conn.rdns_name == rdns


async def test_conn_reverse_dns_is_written_only_once_resolved() -> None:
    pending: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    meta = MsgMetadata(conn=ConnState(rdns_name=pending))
    assert b'"RDNSName":""' in meta.to_json(with_conn=True)
    pending.set_result("mail.example.org")
    assert b'"RDNSName":"mail.example.org"' in meta.to_json(with_conn=True)


def test_rcpt_options_are_kept_per_recipient_through_json() -> None:
    meta = MsgMetadata(
        rcpt_opts={
            "a@x": RcptOptions(notify=("FAILURE", "DELAY")),
            "b@x": RcptOptions(original_recipient_type="rfc822", original_recipient="B@x"),
        }
    )
    assert MsgMetadata.from_json(meta.to_json()).rcpt_opts == meta.rcpt_opts


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (b'{"MsgMeta":{"SMTPOpts":{"Size":"12"}}}', "MsgMeta.SMTPOpts.Size"),
        (b'{"MsgMeta":{"SMTPOpts":{"Size":1.5}}}', "MsgMeta.SMTPOpts.Size"),
        (b'{"MsgMeta":{"SMTPOpts":{"Size":1e3}}}', "MsgMeta.SMTPOpts.Size"),
        (b'{"MsgMeta":{"SMTPOpts":{"Body":"8bit"}}}', "MsgMeta.SMTPOpts"),
        (b'{"MsgMeta":{"Quarantine":"yes"}}', "MsgMeta.Quarantine"),
        (b'{"MsgMeta":{"OriginalRcpts":{"a":1}}}', 'MsgMeta.OriginalRcpts["a"]'),
        (b'{"To":["a",2]}', "To[1]"),
        (b'{"To":"a"}', "To"),
        (b'{"FirstAttempt":"yesterday"}', "FirstAttempt"),
        (b'{"LastAttempt":"2026-02-30T00:00:00Z"}', "LastAttempt"),
        (b'{"LastAttempt":"2026-01-01T25:00:00Z"}', "LastAttempt"),
        (b'{"FirstAttempt":12}', "FirstAttempt"),
        (b'{"RcptErrs":{"a":{"Code":451,"EnhancedCode":[4,4]}}}', 'RcptErrs["a"].EnhancedCode'),
        (
            b'{"RcptErrs":{"a":{"Code":451,"EnhancedCode":[4,"4",2]}}}',
            'RcptErrs["a"].EnhancedCode[1]',
        ),
        (b'{"RcptErrs":{"a":{"Code":451,"EnhancedCode":[3,0,0]}}}', 'RcptErrs["a"]'),
        (b'{"RcptErrs":{"a":{"Code":99,"EnhancedCode":[4,0,0]}}}', 'RcptErrs["a"]'),
        (b'{"TriesCount":{"a":99999999999999999999}}', 'TriesCount["a"]'),
        (b'{"MsgMeta":{"Conn":{"TLS":{"PeerCertificates":["!!"]}}}}', "MsgMeta.Conn.TLS"),
    ],
)
def test_malformed_values_raise_metadata_error_naming_the_path(doc: bytes, path: str) -> None:
    with pytest.raises(MetadataError) as info:
        QueueMetadata.from_json(doc)
    assert info.value.path is not None
    assert info.value.path.startswith(path)
    assert str(info.value).startswith(path)


@pytest.mark.parametrize(
    "doc",
    [b"", b"{", b"[]", b"null", b'"x"', b"{}x", b'{"To":NaN}', b"[" * 100_000, b"1" * 5000],
)
def test_malformed_documents_raise_metadata_error(doc: bytes) -> None:
    with pytest.raises(MetadataError):
        QueueMetadata.from_json(doc)


def _mutations(doc: object, rng: random.Random) -> object:
    """Replace one value somewhere in a JSON document with one of a wrong kind."""
    junk = [None, True, 0, -1, 2**70, 1.5, "", "x", [], {}, [1, "a"], {"a": None}]
    if isinstance(doc, dict) and doc and rng.random() < 0.7:
        key = rng.choice(list(doc))
        return {**doc, key: _mutations(doc[key], rng)}
    if isinstance(doc, list) and doc and rng.random() < 0.7:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutations(doc[i], rng), *doc[i + 1 :]]
    return rng.choice(junk)


def test_ten_thousand_malformed_documents_give_only_metadata_error() -> None:
    rng = random.Random(20261125)
    good = QueueMetadata.from_json(MADDY_META)
    good.msg_meta = MsgMetadata(
        id="1", conn=ConnState(tls=TLSState(peer_certificates=(b"c",)), rdns_name=Resolved("r"))
    )
    base = json.loads(good.to_json(with_conn=True))
    raw = good.to_json(with_conn=True)
    outcomes = {"ok": 0, "error": 0}
    for n in range(10_000):
        kind = n % 5
        if kind == 0:
            doc = json.dumps(_mutations(base, rng)).encode()
        elif kind == 1:
            doc = raw[: rng.randrange(len(raw))]
        elif kind == 2:
            depth = rng.randrange(1, 5000)
            doc = b'{"MsgMeta":' + b"[" * depth + b"]" * depth + b"}"
        elif kind == 3:
            doc = raw.replace(b"451", str(rng.randrange(10**30)).encode(), 1)
        else:
            at = rng.randrange(len(raw))
            doc = raw[:at] + bytes([rng.randrange(0x80, 0x100)]) + raw[at:]
        try:
            QueueMetadata.from_json(doc)
            outcomes["ok"] += 1
        except MetadataError:
            outcomes["error"] += 1
    assert outcomes["error"] > 5000
    assert outcomes["ok"] > 100


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_only_metadata_error(data: bytes) -> None:
    try:
        QueueMetadata.from_json(data)
    except MetadataError:
        pass


@settings(max_examples=200)
@given(queue_metadata, st.booleans())
def test_object_to_json_to_object_is_equal(queue: QueueMetadata, with_conn: bool) -> None:
    assert QueueMetadata.from_json(queue.to_json(with_conn=with_conn)) == queue


@settings(max_examples=200)
@given(queue_metadata, st.none() | conn_states)
def test_json_to_object_to_json_is_byte_identical(
    queue: QueueMetadata, conn: ConnState | None
) -> None:
    if queue.msg_meta is not None:
        queue.msg_meta.conn = conn
    for with_conn in (False, True):
        doc = queue.to_json(with_conn=with_conn)
        assert QueueMetadata.from_json(doc).to_json(with_conn=with_conn) == doc


GO_NAMES = {
    "msg_meta": "MsgMeta",
    "from_": "From",
    "to": "To",
    "failed_rcpts": "FailedRcpts",
    "temporary_failed_rcpts": "TemporaryFailedRcpts",
    "rcpt_errs": "RcptErrs",
    "tries_count": "TriesCount",
    "first_attempt": "FirstAttempt",
    "last_attempt": "LastAttempt",
    "msg_meta.id": "MsgMeta.ID",
    "msg_meta.original_from": "MsgMeta.OriginalFrom",
    "msg_meta.dont_trace_sender": "MsgMeta.DontTraceSender",
    "msg_meta.quarantine": "MsgMeta.Quarantine",
    "msg_meta.original_rcpts": "MsgMeta.OriginalRcpts",
    "msg_meta.smtp_opts": "MsgMeta.SMTPOpts",
    "msg_meta.tls_require_override": "MsgMeta.TLSRequireOverride",
    "msg_meta.rcpt_opts": "MsgMeta.RcptOpts",
}
junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.dictionaries(st.one_of(st.integers(), st.text(max_size=3)), st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


def written(queue: QueueMetadata) -> bytes | MetadataError:
    try:
        return queue.to_json()
    except MetadataError as err:
        return err


def test_every_field_of_queue_metadata_is_corrupted_by_the_next_test() -> None:
    fields = {a.name for a in attrs.fields(QueueMetadata)}
    fields |= {f"msg_meta.{a.name}" for a in attrs.fields(MsgMetadata) if a.name != "conn"}
    assert fields == set(GO_NAMES)


@settings(max_examples=300)
@given(queue_metadata, st.sampled_from(sorted(GO_NAMES)), junk)
def test_a_queue_document_is_written_only_when_it_reads_back(
    queue: QueueMetadata, field: str, value: object
) -> None:
    """Whatever a field was set to, writing either refuses it with a MetadataError naming
    the field, or gives a document that reads back equal: the queue never loses a message."""
    owner: object = queue
    if field.startswith("msg_meta."):
        if queue.msg_meta is None:
            queue.msg_meta = MsgMetadata()
        owner = queue.msg_meta
    setattr(owner, field.removeprefix("msg_meta."), value)
    doc = written(queue)
    if isinstance(doc, MetadataError):
        assert doc.path is not None
        assert doc.path.startswith(GO_NAMES[field])
    else:
        assert QueueMetadata.from_json(doc) == queue


class _Rcpts(list[str]):
    pass


def test_subclasses_of_dict_and_list_are_written_as_maps_and_lists() -> None:
    tries = defaultdict(int, {"b@x": 2})
    tries["a@x"] += 1
    queue = QueueMetadata(to=_Rcpts(["b@x", "a@x"]), tries_count=tries)
    doc = queue.to_json()
    assert b'"To":["b@x","a@x"]' in doc
    assert b'"TriesCount":{"a@x":1,"b@x":2}' in doc
    assert QueueMetadata.from_json(doc) == queue


def test_a_key_that_is_not_a_string_is_named_when_writing() -> None:
    queue = QueueMetadata(tries_count={"a@x": 1, 5: 2})  # type: ignore[dict-item]
    with pytest.raises(MetadataError, match="expected string keys, got 5") as info:
        queue.to_json()
    assert info.value.path == "TriesCount"
    assert info.value.__suppress_context__


def test_a_connection_is_checked_only_when_it_is_written() -> None:
    meta = MsgMetadata(id="m1", conn=ConnState(proto=5))  # type: ignore[arg-type]
    assert MsgMetadata.from_json(meta.to_json()).conn is None
    with pytest.raises(MetadataError, match="expected a str, got number") as info:
        meta.to_json(with_conn=True)
    assert info.value.path == "Conn.Proto"


@given(msg_metadata, conn_states)
def test_msg_metadata_round_trips_with_its_connection(meta: MsgMetadata, conn: ConnState) -> None:
    meta.conn = conn
    assert MsgMetadata.from_json(meta.to_json(with_conn=True)) == meta


@given(timestamps)
def test_timestamps_keep_nanoseconds_and_offset(stamp: Timestamp) -> None:
    assert Timestamp.parse(stamp.format()) == stamp


def test_timestamp_formats_as_gos_rfc3339nano() -> None:
    assert Timestamp.parse("2026-11-24T10:00:00.120Z").format() == "2026-11-24T10:00:00.12Z"
    assert Timestamp.parse("2026-11-24T10:00:00-05:30").format() == "2026-11-24T10:00:00-05:30"
    assert Timestamp.ZERO.format() == "0001-01-01T00:00:00Z"


def test_timestamp_converts_to_and_from_datetime() -> None:
    moment = dt.datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    stamp = Timestamp.from_datetime(moment)
    assert stamp.format() == "2026-11-24T10:00:00.123456+03:00"
    assert stamp.to_datetime() == moment
    with pytest.raises(ValueError, match="aware"):
        Timestamp.from_datetime(dt.datetime(2026, 1, 1))  # naive on purpose


def test_write_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "a7f3c2d1.meta"
    queue = QueueMetadata.from_json(MADDY_META)
    queue.write(path)
    assert path.read_bytes() == MADDY_META
    queue.tries_count = {"alias@example.com": 3}
    queue.write(path)
    assert QueueMetadata.read(path).tries_count == {"alias@example.com": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a7f3c2d1.meta"]


def test_read_of_a_missing_file_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"missing\.meta"):
        QueueMetadata.read(tmp_path / "missing.meta")


def test_read_of_a_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.meta"
    path.write_bytes(b'{"To":5}')
    with pytest.raises(MetadataError) as info:
        QueueMetadata.read(path)
    assert any("bad.meta" in note for note in info.value.__notes__)


def test_write_into_a_missing_directory_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot write"):
        QueueMetadata().write(tmp_path / "nope" / "x.meta")


def test_a_year_go_cannot_write_raises_metadata_error() -> None:
    queue = QueueMetadata(last_attempt=Timestamp(Timestamp.ZERO.unix_ns, -3600))
    with pytest.raises(MetadataError, match="LastAttempt"):
        queue.to_json()


@settings(max_examples=200)
@given(queue_metadata, st.none() | conn_states, st.booleans())
def test_the_fast_reader_and_the_careful_one_give_equal_objects(
    queue: QueueMetadata, conn: ConnState | None, with_conn: bool
) -> None:
    """Documents as Go writes them take the fast path; the careful one is the reference."""
    from mailmodule.metadata import _codec

    if queue.msg_meta is not None:
        queue.msg_meta.conn = conn
    document = json.loads(queue.to_json(with_conn=with_conn))
    assert _codec._queue_fast(document) == _codec._queue_from_json(document)


@pytest.mark.parametrize(
    "doc",
    [
        # maddy's spelling of a field in another case, and a duplicate in another case
        MADDY_META.replace(b'"From":', b'"from":'),
        MADDY_META.replace(b'"ID":"a7f3c2d1"', b'"ID":"a7f3c2d1","id":"other"'),
        MADDY_META.replace(b'"Quarantine":true', b'"Quarantine":true,"Extra":1'),
        MADDY_META.replace(b'"Auth":null', b'"auth":null'),
        MADDY_META.replace(b'"Message":', b'"message":'),
    ],
)
def test_documents_off_the_fast_path_read_as_the_careful_reader_reads_them(doc: bytes) -> None:
    from mailmodule.metadata import _codec

    assert QueueMetadata.from_json(doc) == _codec._queue_from_json(json.loads(doc))


def test_a_size_beyond_go_int64_is_refused_where_it_would_not_read_back() -> None:
    with pytest.raises(ValueError, match=r"size must be from 0 to 2\*\*63 - 1"):
        MailOptions(size=1 << 63)
    assert MailOptions(size=(1 << 63) - 1).size == (1 << 63) - 1
