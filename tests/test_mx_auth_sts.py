"""The MTA-STS grammar (RFC 8461): TXT records, policy files, MX patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule.modules.mx_auth import (
    STSMode,
    STSPolicy,
    STSPolicyError,
    parse_policy,
    parse_record,
)
from mailmodule.modules.mx_auth._sts import MAX_AGE_LIMIT, record_id

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
labels = st.builds(
    lambda head, middle, tail: head + middle + tail if middle else head,
    st.text(_ALNUM, min_size=1, max_size=6),
    st.text(_ALNUM + "-", max_size=6),
    st.text(_ALNUM, min_size=1, max_size=1),
)
hosts = st.lists(labels, min_size=2, max_size=4).map(".".join)
patterns = st.one_of(hosts, hosts.map(lambda host: "*." + host))


def policy_text(mode: str, mx: list[str], max_age: int, newline: str = "\n") -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return newline.join(lines) + newline


@given(
    mode=st.sampled_from(["enforce", "testing", "none"]),
    mx=st.lists(patterns, min_size=1, max_size=4),
    max_age=st.integers(0, 10**9),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_a_policy_file_reads_back_what_it_says(
    mode: str, mx: list[str], max_age: int, newline: str
) -> None:
    policy = parse_policy(policy_text(mode, mx, max_age, newline))
    assert policy == STSPolicy(
        mode=STSMode(mode), mx=tuple(mx), max_age=min(max_age, MAX_AGE_LIMIT)
    )


@given(hosts, labels)
def test_a_wildcard_matches_exactly_one_more_label(host: str, label: str) -> None:
    policy = STSPolicy(mode=STSMode.ENFORCE, mx=("*." + host,), max_age=60)
    assert policy.matches(f"{label}.{host}")
    assert policy.matches(f"{label.upper()}.{host}.")
    assert not policy.matches(host)
    assert not policy.matches(f"{label}.{label}.{host}")


@given(hosts, hosts)
def test_a_plain_pattern_matches_only_its_host(pattern: str, other: str) -> None:
    policy = STSPolicy(mode=STSMode.ENFORCE, mx=(pattern,), max_age=60)
    assert policy.matches(pattern.upper())
    assert policy.matches(other) is (other == pattern)


def test_an_mx_under_a_wildcard_is_not_matched_by_a_suffix_trick() -> None:
    policy = parse_policy(policy_text("enforce", ["*.example.net"], 60))
    assert not policy.matches("mx.evil-example.net")
    assert not policy.matches("mxexample.net")


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "names no mx"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: \u0661\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "malformed mx"),
        ("version: STSv1\nmode: enforce\nmx: a/../b\nmax_age: 1\n", "malformed mx"),
        ("version: STSv1\nversion: STSv1\nmode: none\nmax_age: 1\n", "twice"),
        ("version: STSv1\nno colon here\n", "line 2"),
    ],
)
def test_a_broken_policy_file_is_refused_naming_the_fault(text: str, culprit: str) -> None:
    with pytest.raises(STSPolicyError, match=culprit):
        parse_policy(text)


def test_a_policy_in_mode_none_needs_no_mx_and_unknown_keys_are_ignored() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 5\nfuture_key: x\n")
    assert policy == STSPolicy(mode=STSMode.NONE, mx=(), max_age=5)


def test_a_policy_file_longer_than_64_kib_is_refused() -> None:
    with pytest.raises(STSPolicyError, match="longer"):
        parse_policy(policy_text("enforce", ["a.example"] * 10000, 60))


@given(st.text())
def test_any_text_parses_or_raises_a_policy_error(text: str) -> None:
    try:
        parse_policy(text)
    except STSPolicyError:
        pass


@pytest.mark.parametrize(
    ("record", "found"),
    [
        ("v=STSv1; id=20260101;", "20260101"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1; ext=1; id=Z9 ;", "Z9"),
    ],
)
def test_a_record_gives_its_id(record: str, found: str) -> None:
    assert parse_record(record) == found


@pytest.mark.parametrize(
    "record", ["v=STSv2; id=1;", "id=1; v=STSv1;", "v=STSv1;", "v=STSv1; id=a-b;", "v=STSv1; id="]
)
def test_a_record_without_a_valid_id_or_version_is_refused(record: str) -> None:
    with pytest.raises(STSPolicyError):
        parse_record(record)


def test_two_sts_records_or_none_mean_no_policy() -> None:
    assert record_id([b"v=spf1 -all", b"v=STSv1; id=1;"]) == "1"
    assert record_id([b"v=STSv1; id=1;", b"v=STSv1; id=2;"]) is None
    assert record_id([b"v=spf1 -all"]) is None
    assert record_id([b"v=STSv1; id=\xff;"]) is None
