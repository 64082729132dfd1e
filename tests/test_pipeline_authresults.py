from __future__ import annotations

import doctest

import authres
import pytest
from authres import AuthenticationResult, AuthenticationResultProperty
from hypothesis import assume, given
from hypothesis import strategies as st

from mailmodule import HeaderError
from mailmodule.header import Header, HeaderField
from mailmodule.pipeline import (
    _authresults,
    authserv_id_of,
    format_authentication_results,
    parse_authentication_results,
    remove_forged_authentication_results,
)


def result(method: str, value: str, outcome: str = "pass") -> AuthenticationResult:
    return AuthenticationResult(
        method, result=outcome, properties=[AuthenticationResultProperty("smtp", "mailfrom", value)]
    )


def test_an_empty_list_formats_as_none() -> None:
    assert format_authentication_results("mx.example.org", []) == "mx.example.org; none"
    assert parse_authentication_results("mx.example.org; none") == ("mx.example.org", [])


def test_values_are_quoted_only_where_needed() -> None:
    text = format_authentication_results(
        "mx", [result("spf", "a@example.org"), result("auth", "John Doe@x"), result("x", 'q"t')]
    )
    assert (
        text == "mx; spf=pass smtp.mailfrom=a@example.org; "
        'auth=pass smtp.mailfrom="John Doe@x"; x=pass smtp.mailfrom="q\\"t"'
    )


def test_authres_alone_cannot_read_or_quote_non_ascii_values() -> None:
    """Why this module exists: authres 1.2 writes UTF-8 unquoted and cannot parse it."""
    spf = result("spf", "josé@bücher.example")
    written = str(authres.AuthenticationResultsHeader(authserv_id="mx", results=[spf]))
    assert "smtp.mailfrom=josé@bücher.example" in written
    with pytest.raises(authres.AuthResError):
        authres.AuthenticationResultsHeader.parse_value(format_authentication_results("mx", [spf]))


def test_non_ascii_values_round_trip() -> None:
    spf = result("spf", "josé@bücher.example")
    authserv, back = parse_authentication_results(format_authentication_results("mx", [spf]))
    assert authserv == "mx"
    assert back[0].properties[0].value == "josé@bücher.example"


def test_reasons_and_comments_are_written() -> None:
    dkim = AuthenticationResult(
        "dkim", result="fail", result_comment="bad (really)", reason="body hash mismatch"
    )
    assert format_authentication_results("mx", [dkim]) == (
        'mx; dkim=fail (bad \\(really\\)) reason="body hash mismatch"'
    )


def test_malformed_values_raise_header_error() -> None:
    with pytest.raises(HeaderError, match="Authentication-Results"):
        parse_authentication_results("mx; spf")


values = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=30)


@given(st.lists(st.tuples(st.sampled_from(["spf", "dkim", "dmarc", "auth"]), values), max_size=4))
def test_format_then_parse_gives_the_same_results(pairs: list[tuple[str, str]]) -> None:
    results = [result(method, value) for method, value in pairs]
    text = format_authentication_results("mx.example.org", results)
    authserv, back = parse_authentication_results(text)
    assert authserv == "mx.example.org"
    assert [(r.method, r.result, r.properties[0].value) for r in back] == [
        (m, "pass", v) for m, v in pairs
    ]


# Removing forged fields (RFC 8601 section 5)

OURS = "mx.example.org"


def header_with(*fields: bytes) -> Header:
    return Header.parse(b"Received: from a by b\r\n" + b"".join(fields) + b"\r\n")


def ar(value: bytes, name: bytes = b"Authentication-Results: ") -> bytes:
    return name + value + b"\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mx.example.org; spf=pass", "mx.example.org"),
        ("MX.Example.ORG; spf=pass", "MX.Example.ORG"),
        (" (a (nested) \\) comment)\r\n mx.example.org (c)\n\t; none", "mx.example.org"),
        ('"mx.exa\\mple.org" 1 (v); spf=pass', "mx.example.org"),
        ('"mx example\r\n org"; spf=pass', "mx example org"),
        ("mx.example.org 1", "mx.example.org"),
        ("bücher.example;", "bücher.example"),
        ("mx.example.org", "mx.example.org"),
    ],
)
def test_authserv_id_of_reads_the_id_through_comments_quotes_folds_and_versions(
    value: str, expected: str
) -> None:
    assert authserv_id_of(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  (only a comment)  ",
        "; spf=pass",
        '""; spf=pass',
        "(unclosed mx.example.org; spf=pass",
        "mx.example.org (unclosed; spf=pass",
        '"mx.example.org; spf=pass',
        "mx.example.org junk; spf=pass",
        "mx.example.org 1 2; spf=pass",
        "mx.example.org/1; spf=pass",
    ],
)
def test_authserv_id_of_gives_none_when_no_id_can_be_read(value: str) -> None:
    assert authserv_id_of(value) is None


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(_authresults)
    assert result.attempted > 0
    assert result.failed == 0


FORGED = {
    "exact": ar(b"mx.example.org; spf=pass smtp.mailfrom=a@example.org"),
    "upper-cased id": ar(b"MX.EXAMPLE.ORG; spf=pass"),
    "comment before": ar(b"(comment) mx.example.org; spf=pass"),
    "comment after": ar(b"mx.example.org (comment); spf=pass"),
    "nested comments": ar(b"(a (nested (deeply)) \\( comment) mx.example.org; spf=pass"),
    "quoted": ar(b'"mx.example.org"; spf=pass'),
    "quoted with a quoted-pair": ar(b'"mx.exa\\mple.org"; spf=pass'),
    "folded with CRLF": ar(b"\r\n mx.example.org\r\n\t;\r\n spf=pass"),
    "folded with bare LF": ar(b"(c)\n\tmx.example.org;\n spf=pass"),
    "version": ar(b"mx.example.org 1; spf=pass"),
    "version between comments": ar(b"mx.example.org (c) 1 (c); spf=pass"),
    "trailing dot": ar(b"mx.example.org.; spf=pass"),
    "no results part": ar(b"mx.example.org"),
    "no result": ar(b"mx.example.org; none"),
    "name upper-cased": ar(b"mx.example.org; spf=pass", b"AUTHENTICATION-RESULTS: "),
    "name lower-cased, no space": ar(b"mx.example.org; spf=pass", b"authentication-results:"),
    "white space before the colon": ar(b"mx.example.org; spf=pass", b"Authentication-Results :"),
    "tab before the colon": ar(b"mx.example.org; spf=pass", b"Authentication-results\t: "),
    # Unparsable, but our id comes first: a careless reader downstream would trust it.
    "junk after the id": ar(b"mx.example.org junk; spf=pass"),
    "slash after the id": ar(b"mx.example.org/1; spf=pass"),
    "unclosed quote": ar(b'"mx.example.org; spf=pass'),
    "unclosed comment after": ar(b"mx.example.org (unclosed; spf=pass"),
    "bytes not UTF-8 after the id": ar(b"mx.example.org\xff; spf=pass"),
    "unicode space after the id": ar("mx.example.org\u00a0x; spf=pass".encode()),
    "unicode space before the id": ar("\u00a0mx.example.org; spf=pass".encode()),
    # Read right, the id is other.example; a reader that does not nest comments, or does not
    # undo quoted-pairs in them, finds ours.
    "comment misread without nesting": ar(b"((a) mx.example.org; spf=pass) other.example"),
    "comment misread without quoted-pairs": ar(
        b"(a\\) mx.example.org; spf=pass (x)) other.example; dkim=pass"
    ),
}


@pytest.mark.parametrize("field", FORGED.values(), ids=FORGED.keys())
def test_fields_with_our_authserv_id_are_removed_however_it_is_written(field: bytes) -> None:
    header = header_with(field)
    assert remove_forged_authentication_results(header, OURS) == 1
    assert header.to_bytes() == b"Received: from a by b\r\n\r\n"


def test_the_misread_comments_really_hold_another_id() -> None:
    assert authserv_id_of("((a) mx.example.org; spf=pass) other.example") == "other.example"
    value = "(a\\) mx.example.org; spf=pass (x)) other.example; dkim=pass"
    assert authserv_id_of(value) == "other.example"


@pytest.mark.parametrize(
    ("ours", "field"),
    [
        ("bücher.example", ar(b"xn--bcher-kva.example; spf=pass")),
        ("bücher.example", ar(b"XN--BCHER-KVA.Example.; spf=pass")),
        ("xn--bcher-kva.example", ar("bücher.example; spf=pass".encode())),
        ("xn--bcher-kva.example", ar('"BÜCHER.example"; spf=pass'.encode())),
        ("bücher.example", ar("b\xfccher.example; spf=pass".encode("latin-1"))),
        ("MX.Example.Org.", ar(b"mx.example.org; spf=pass")),
    ],
)
def test_ids_compare_as_domains_a_labels_equal_to_u_labels(ours: str, field: bytes) -> None:
    header = header_with(field)
    assert remove_forged_authentication_results(header, ours) == 1


KEPT = {
    "another server": ar(b"other.example; spf=pass"),
    "our id as a prefix": ar(b"mx.example.org.evil.example; spf=pass"),
    "our id as a suffix": ar(b"evil-mx.example.org; spf=pass"),
    "our id in a comment": ar(b"other.example (mx.example.org); spf=pass"),
    "our id in a result": ar(b"other.example; spf=pass smtp.mailfrom=a@mx.example.org"),
    "our id quoted with more": ar(b'"mx.example.org\\.evil"; spf=pass'),
    "no id at all": ar(b"; spf=pass mx.example.org"),
    "only an unclosed comment": ar(b"(mx.example.org; spf=pass"),
    "other bytes not UTF-8": ar(b"other.example; spf=pass smtp.mailfrom=\xff@mx.example.org"),
    "ARC-Authentication-Results": ar(
        b"i=1; mx.example.org; spf=pass", b"ARC-Authentication-Results: "
    ),
    "another field": ar(b"mx.example.org; spf=pass", b"X-Authentication-Results: "),
}


@pytest.mark.parametrize("field", KEPT.values(), ids=KEPT.keys())
def test_fields_of_other_authserv_ids_and_other_fields_are_kept(field: bytes) -> None:
    header = header_with(field)
    assert remove_forged_authentication_results(header, OURS) == 0
    assert header == header_with(field)


def test_fields_in_keep_are_kept_by_identity_and_their_forged_copies_removed() -> None:
    header = header_with(ar(b"mx.example.org; spf=fail"))
    own = HeaderField.build("Authentication-Results", "mx.example.org; spf=pass")
    copy = HeaderField(own.name, own.raw)
    assert copy == own
    header.add_field(copy)
    header.add_field(own)
    assert remove_forged_authentication_results(header, OURS, keep=[own]) == 2
    assert header.fields("authentication-results") == [own]
    assert header.fields("authentication-results")[0] is own


def test_the_count_of_removed_fields_is_returned_and_the_rest_kept_byte_for_byte() -> None:
    header = header_with(
        ar(b"mx.example.org; spf=pass"),
        b"Subject:  hi \r\n",
        ar(b"other.example;\r\n\tdkim=pass"),
        ar(b"MX.example.org; dkim=pass"),
        ar(b"mx.example.org.; dmarc=pass"),
    )
    assert remove_forged_authentication_results(header, OURS) == 3
    assert header.to_bytes() == (
        b"Received: from a by b\r\nSubject:  hi \r\n"
        b"Authentication-Results: other.example;\r\n\tdkim=pass\r\n\r\n"
    )
    assert remove_forged_authentication_results(header, OURS) == 0


@pytest.mark.parametrize("ours", ["", "  ", "."])
def test_an_empty_authserv_id_of_our_own_is_refused(ours: str) -> None:
    with pytest.raises(ValueError, match="authserv_id"):
        remove_forged_authentication_results(Header(), ours)


_LABEL = st.from_regex(r"[a-z0-9]{1,8}(?:-[a-z0-9]{1,8})?", fullmatch=True)
_DOMAINS = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_GAPS = st.sampled_from(["", " ", "\t", "\r\n ", "\n\t", " \r\n\t "])
_CTEXT_PLAIN = st.text(' ;,!?%"@=', max_size=4)


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "()\\" else c for c in text)


def _comments(words: st.SearchStrategy[str], *, nested: bool) -> st.SearchStrategy[str]:
    flat = st.lists(words, max_size=3).map(lambda ws: "(" + " ".join(ws) + ")")
    if not nested:
        return flat
    leaf = st.one_of(words, st.text("()\\ ab", max_size=4).map(_escape))
    return st.recursive(
        flat,
        lambda inner: st.lists(st.one_of(leaf, inner), max_size=3).map(
            lambda parts: "(" + "".join(parts) + ")"
        ),
        max_leaves=6,
    )


@st.composite
def _fields(
    draw: st.DrawFn, authserv_id: str, comments: st.SearchStrategy[str], tail: str
) -> bytes:
    def gap(needed: bool = False) -> str:
        text = draw(_GAPS)
        return text or " " if needed else text

    written = "".join(c.upper() if draw(st.booleans()) else c for c in authserv_id)
    if draw(st.booleans()):
        written += "."
    if draw(st.booleans()):
        written = '"' + "".join("\\" + c if draw(st.booleans()) else c for c in written) + '"'
    before = "".join(draw(comments) + gap() for _ in range(draw(st.integers(0, 2))))
    after = "".join(gap() + draw(comments) for _ in range(draw(st.integers(0, 2))))
    version = gap(needed=True) + "1" + gap() if draw(st.booleans()) else ""
    results = draw(st.sampled_from(["", "; none", f"; spf=pass smtp.mailfrom=a@{tail}"]))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in "authentication-results")
    name += draw(st.sampled_from(["", " "]))
    value = gap() + before + written + after + version + gap() + results
    return f"{name}:{value}\r\n".encode()


@given(st.data(), _DOMAINS)
def test_a_field_with_our_id_decorated_any_way_is_removed(data: st.DataObject, ours: str) -> None:
    words = st.sampled_from([ours, "x", ours + ";", '"' + ours])
    comments = _comments(words, nested=True)
    field = data.draw(_fields(ours, comments, tail=ours))
    header = header_with(field)
    assert authserv_id_of(header.fields()[1].value or "") is not None
    assert remove_forged_authentication_results(header, ours) == 1
    assert len(header) == 1


@given(st.data(), _DOMAINS, _DOMAINS)
def test_a_field_with_another_id_decorated_any_way_is_kept(
    data: st.DataObject, ours: str, other: str
) -> None:
    assume(other != ours)
    # Nested or escaped comments that mention our id fool careless readers (and are removed
    # for it), so comments that mention it are flat here.
    comments = st.one_of(
        _comments(_CTEXT_PLAIN, nested=True), _comments(st.just(ours), nested=False)
    )
    field = data.draw(_fields(other, comments, tail=ours))
    header = header_with(field)
    assert remove_forged_authentication_results(header, ours) == 0
    assert len(header) == 2
