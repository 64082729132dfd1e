from __future__ import annotations

import authres
import pytest
from authres import AuthenticationResult, AuthenticationResultProperty
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import HeaderError
from mailmodule.pipeline import format_authentication_results, parse_authentication_results


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
