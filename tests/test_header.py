from __future__ import annotations

import email.message
import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import HeaderError
from mailmodule.header import Header, HeaderField, read_header
from mailmodule.testing.strategies import field_names, field_values, raw_headers

MESSAGE = (
    b"Received: from mx.example.org\r\n"
    b"\tby mail.example.com; Tue, 1 Jan 2030 00:00:00 +0000\r\n"
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n"
    b"Subject:   spacing kept  \r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\n  def\r\n"
    b"\r\n"
    b"Body line\r\n"
)


def test_read_header_returns_fields_and_the_body_offset() -> None:
    header, offset = read_header(MESSAGE)
    assert MESSAGE[offset:] == b"Body line\r\n"
    assert [f.name for f in header] == ["Received", "From", "Subject", "DKIM-Signature"]


def test_parsed_message_is_written_back_byte_for_byte() -> None:
    header, offset = read_header(MESSAGE)
    assert header.to_bytes() + MESSAGE[offset:] == MESSAGE


def test_folded_values_are_unfolded_on_read() -> None:
    header, _ = read_header(MESSAGE)
    assert header.get("dkim-signature") == "v=1; a=rsa-sha256; b=abc  def"
    assert header.get("subject") == "spacing kept"


def test_lookups_ignore_case() -> None:
    header, _ = read_header(MESSAGE)
    assert "SUBJECT" in header
    assert header.get("rEcEiVeD", "").startswith("from mx.example.org")


def test_get_of_a_missing_field_gives_the_default() -> None:
    assert Header().get("X-Nope") is None
    assert Header().get("X-Nope", "d") == "d"


def test_add_puts_the_field_on_top() -> None:
    header, _ = read_header(MESSAGE)
    header.add("Received", "from localhost")
    assert header.fields()[0].name == "Received"
    assert header.values("received")[0] == "from localhost"


def test_set_replaces_every_field_of_that_name_with_one() -> None:
    header = Header([("X-A", "1"), ("x-a", "2"), ("Other", "o")])
    header.set("X-A", "3")
    assert header.values("x-a") == ["3"]
    assert len(header) == 2


def test_delete_of_a_missing_field_is_not_an_error() -> None:
    header = Header([("A", "1")])
    header.delete("B")
    assert len(header) == 1


def test_remove_fields_removes_the_fields_picked_and_counts_them() -> None:
    header = Header.parse(b"A: 1\r\nB: 2\r\na: 3\r\nC:  4\r\n\r\n")
    second_a = header.fields("a")[1]
    assert header.remove_fields(lambda f: f is second_a) == 1
    assert header.to_bytes() == b"A: 1\r\nB: 2\r\nC:  4\r\n\r\n"
    assert header.remove_fields(lambda f: False) == 0


def test_remove_fields_leaves_the_header_unchanged_when_the_predicate_raises() -> None:
    header = Header([("A", "1"), ("B", "2")])

    def pick(field: HeaderField) -> bool:
        if field.key == "b":
            raise LookupError(field.name)
        return True

    with pytest.raises(LookupError):
        header.remove_fields(pick)
    assert header == Header([("A", "1"), ("B", "2")])


def test_copy_is_independent() -> None:
    header = Header([("A", "1")])
    twin = header.copy()
    twin.add("B", "2")
    assert "B" not in header
    assert twin == Header([("B", "2"), ("A", "1")])


def test_utf8_values_are_read_and_written() -> None:
    header, _ = read_header("Subject: Grüße 👋\r\n\r\n".encode())
    assert header.get("subject") == "Grüße 👋"
    header.add("X-Value", "naïve")
    assert "X-Value: naïve\r\n".encode() in header.to_bytes()


def test_bytes_that_are_not_utf8_are_kept_raw() -> None:
    data = b"Subject: caf\xe9\r\n\r\n"
    header, _ = read_header(data)
    assert header.get("subject") == "caf\ufffd"
    assert header.to_bytes() == data


def test_lf_only_input_is_read_and_new_fields_follow_its_line_ending() -> None:
    data = b"A: 1\nB: 2\n continued\n\nbody\n"
    header, offset = read_header(data)
    assert data[offset:] == b"body\n"
    assert header.get("b") == "2 continued"
    header.add("C", "3")
    assert header.to_bytes() == b"C: 3\n" + data[:offset]


def test_very_long_lines_are_read_whole() -> None:
    value = "x" * 100_000
    header, _ = read_header(f"X-Long: {value}\r\n\r\n".encode())
    assert header.get("x-long") == value


def test_long_added_values_are_folded_to_78_columns() -> None:
    header = Header()
    header.add("X-Words", " ".join(["word"] * 50))
    lines = header.to_bytes().split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert header.get("x-words") == " ".join(["word"] * 50)


def test_a_message_without_the_empty_line_is_all_header() -> None:
    data = b"Subject: only\r\nFrom: a@example.org"
    header, offset = read_header(data)
    assert offset == len(data)
    assert header.get("from") == "a@example.org"
    assert header.to_bytes() + data[offset:] == data


def test_an_empty_header_is_just_the_empty_line() -> None:
    header, offset = read_header(b"\r\nbody")
    assert len(header) == 0
    assert offset == 2
    assert Header().to_bytes() == b"\r\n"


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"A: 1\r\nno colon here\r\n\r\n", 2),
        (b" starts folded\r\n\r\n", 1),
        (b"A: 1\r\nBad Name: x\r\n\r\n", 2),
        (b": empty name\r\n\r\n", 1),
    ],
)
def test_malformed_lines_raise_header_error_naming_the_line(data: bytes, line: int) -> None:
    with pytest.raises(HeaderError) as info:
        read_header(data)
    assert info.value.line == line
    assert f"line {line}" in str(info.value)


def test_parse_reads_a_block_alone_and_rejects_trailing_data() -> None:
    assert Header.parse(b"A: 1\r\n\r\n").get("a") == "1"
    assert Header.parse(b"A: 1\r\n").get("a") == "1"
    with pytest.raises(HeaderError, match="follows the end"):
        Header.parse(b"A: 1\r\n\r\nbody")


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nb", "nul\0"])
def test_adding_a_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(HeaderError, match="line break"):
        Header().add("X-A", value)


@pytest.mark.parametrize("name", ["", "Bad Name", "Colon:", "Ünï"])
def test_adding_an_invalid_field_name_is_refused(name: str) -> None:
    with pytest.raises(HeaderError, match="invalid field name"):
        Header().add(name, "v")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ([("Subject",)], "expected (name, value) pairs"),
        (["ab"], "expected (name, value) pairs"),
        ([("Subject", "a", "b")], "expected (name, value) pairs"),
        ([(5, "x")], "invalid field name 5"),
        ([("Subject", 5)], "must be a str, got int"),
        (b"Subject: x\r\n", "Header.parse reads raw text"),
    ],
)
def test_building_a_header_from_anything_but_name_value_pairs_is_refused(
    fields: object, says: str
) -> None:
    with pytest.raises(HeaderError, match=re.escape(says)):
        Header(fields)  # type: ignore[arg-type]  # wrong on purpose


def test_write_to_writes_the_bytes_to_a_stream() -> None:
    header, _ = read_header(MESSAGE)
    out = io.BytesIO()
    header.write_to(out)
    assert out.getvalue() == header.to_bytes()


def test_converts_to_and_from_the_stdlib_email_message() -> None:
    header, _ = read_header(MESSAGE)
    msg = header.to_email_message()
    assert isinstance(msg, email.message.EmailMessage)
    assert msg["From"] == "Jörg <jorg@example.org>"
    assert list(msg.keys()) == ["Received", "From", "Subject", "DKIM-Signature"]
    back = Header.from_email_message(msg)
    assert [f.name for f in back] == [f.name for f in header]
    assert back.get("subject") == "spacing kept"


def test_from_email_message_keeps_order_of_a_built_message() -> None:
    msg = email.message.EmailMessage()
    msg["To"] = "b@example.org"
    msg["Subject"] = "Grüße"
    header = Header.from_email_message(msg)
    assert [f.name for f in header] == ["To", "Subject"]
    assert header.to_email_message()["Subject"] == "Grüße"


def test_header_field_exposes_name_value_and_raw() -> None:
    field = HeaderField.build("X-A", "b")
    assert (field.name, field.value, field.raw, field.key) == ("X-A", "b", b"X-A: b\r\n", "x-a")


@given(raw_headers(), st.binary(max_size=50))
def test_parse_then_serialize_is_the_identity(block: bytes, body: bytes) -> None:
    header, offset = read_header(block + body)
    assert offset == len(block)
    assert header.to_bytes() == block


@given(st.lists(st.tuples(st.sampled_from(["add", "set", "delete"]), field_names, field_values)))
def test_add_get_delete_agree_with_a_list_model(ops: list[tuple[str, str, str]]) -> None:
    header = Header()
    model: list[tuple[str, str]] = []
    for op, name, value in ops:
        if op == "add":
            header.add(name, value)
            model.insert(0, (name, value.strip(" \t")))
        elif op == "set":
            header.set(name, value)
            model = [(name, value.strip(" \t"))] + [
                m for m in model if m[0].lower() != name.lower()
            ]
        else:
            header.delete(name)
            model = [m for m in model if m[0].lower() != name.lower()]
        assert [(f.name, f.value) for f in header] == model
        for key in {n.lower() for n, _ in model} | {name.lower()}:
            expected = [v for n, v in model if n.lower() == key]
            assert header.values(key) == expected
            assert header.get(key) == (expected[0] if expected else None)
            assert (key in header) == bool(expected)


@given(st.lists(st.tuples(field_names, field_values), max_size=8))
def test_built_headers_parse_back_to_the_same_fields(pairs: list[tuple[str, str]]) -> None:
    header = Header(pairs)
    again = Header.parse(header.to_bytes())
    assert again == header
    assert [(f.name, f.value) for f in again] == [(n, v.strip(" \t")) for n, v in pairs]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_header_error(data: bytes) -> None:
    try:
        header, offset = read_header(data)
    except HeaderError:
        return
    assert header.to_bytes() + data[offset:] == data


def test_adding_a_field_on_top_is_an_append_to_the_bottom_up_store() -> None:
    """`add` is O(1) amortized: nothing already stored moves when a field goes on top."""
    header = Header.parse(b"A: 1\r\nB: 2\r\n\r\n")
    store = header._bottom_up
    bottom = list(store)
    added = [header.add("X-N", str(i)) for i in range(100_000)]
    assert header._bottom_up is store  # grown in place, never rebuilt
    assert store[:2] == bottom
    assert store[2:] == added  # the newest field is last in storage, first in order
    assert header.fields()[0] is added[-1]
    assert header.to_bytes().endswith(b"A: 1\r\nB: 2\r\n\r\n")


def _remove_every_other(header: Header, model: list[HeaderField]) -> list[HeaderField]:
    picked = {id(f) for f in model[1::2]}
    seen: list[HeaderField] = []

    def pick(field: HeaderField) -> bool:
        seen.append(field)
        return id(field) in picked

    removed = header.remove_fields(pick)
    assert seen == model  # the predicate sees each field once, top first
    kept = [f for f in model if id(f) not in picked]
    assert removed == len(model) - len(kept)
    return kept


_OPS = st.sampled_from(["add", "add_field", "set", "delete", "remove", "copy"])


@given(raw_headers(), st.lists(st.tuples(_OPS, field_names, field_values), max_size=12))
def test_every_change_on_a_parsed_header_agrees_with_a_top_first_list(
    block: bytes, ops: list[tuple[str, str, str]]
) -> None:
    header = Header.parse(block)
    model = header.fields()
    for op, name, value in ops:
        if op == "add":
            model.insert(0, header.add(name, value))
        elif op == "add_field":
            field = HeaderField.build(name, value)
            header.add_field(field)
            model.insert(0, field)
        elif op == "set":
            header.set(name, value)
            model = [header.fields()[0], *(f for f in model if f.key != name.lower())]
        elif op == "delete":
            header.delete(name)
            model = [f for f in model if f.key != name.lower()]
        elif op == "remove":
            model = _remove_every_other(header, model)
        else:
            header = header.copy()
        assert list(header) == header.fields() == model
        assert len(header) == len(model)
        assert header.values(name) == [f.value for f in model if f.key == name.lower()]
        assert header.to_bytes() == b"".join(f.raw for f in model) + Header.parse(block)._eoh


@given(st.text(min_size=1).map(lambda s: s.replace("\r", "").replace("\n", "").replace("\0", "")))
def test_a_value_with_a_lone_surrogate_is_a_header_error_not_a_unicode_error(text: str) -> None:
    value = text + "\udc80"
    with pytest.raises(HeaderError, match="not valid Unicode"):
        HeaderField.build("X-Test", value)
    with pytest.raises(HeaderError):
        Header().add("X-Test", value)
