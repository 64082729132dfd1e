from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import AddressError, address
from mailmodule.address import (
    clean_domain,
    domain_for_lookup,
    equal,
    for_lookup,
    is_valid,
    is_valid_domain,
    is_valid_local_part,
    split,
    to_ascii,
    unquote_local_part,
)
from mailmodule.testing.strategies import addresses, domains


@pytest.mark.parametrize(
    ("addr", "parts"),
    [
        ("joe@example.org", ("joe", "example.org")),
        ('"a@b"@example.org', ('"a@b"', "example.org")),
        ("postmaster", ("postmaster", "")),
        ("PostMaster", ("PostMaster", "")),
        ("postmaster@example.org", ("postmaster", "example.org")),
    ],
)
def test_split_cuts_at_the_last_at_sign(addr: str, parts: tuple[str, str]) -> None:
    assert split(addr) == parts


@pytest.mark.parametrize(
    ("addr", "why"),
    [("joe", "missing at-sign"), ("@example.org", "empty local part"), ("joe@", "empty domain")],
)
def test_split_rejects_malformed_addresses_naming_them(addr: str, why: str) -> None:
    with pytest.raises(AddressError, match=why) as info:
        split(addr)
    assert info.value.address == addr


def test_clean_domain_gives_lower_case_u_labels_and_keeps_the_local_part() -> None:
    assert clean_domain("Joe@XN--BCHER-KVA.Example") == "Joe@bücher.example"
    assert clean_domain("Joe@BÜCHER.example") == "Joe@bücher.example"
    assert clean_domain("postmaster") == "postmaster"


def test_clean_domain_normalizes_to_nfc() -> None:
    decomposed = "joe@bu\u0308cher.example"
    assert clean_domain(decomposed) == "joe@b\u00fccher.example"


def test_clean_domain_keeps_address_literals() -> None:
    assert clean_domain("joe@[192.0.2.1]") == "joe@[192.0.2.1]"


def test_clean_domain_rejects_an_invalid_a_label() -> None:
    with pytest.raises(AddressError, match="xn--zz"):
        clean_domain("joe@xn--zz.example")


def test_for_lookup_folds_local_part_and_drops_the_trailing_dot() -> None:
    assert for_lookup("Joe.Doe@Bücher.Example.") == "joe.doe@bücher.example"
    assert for_lookup("JOSE\u0301@example.org") == "jos\u00e9@example.org"
    assert for_lookup("POSTMASTER") == "postmaster"


def test_domain_for_lookup_gives_the_key_form_of_a_domain() -> None:
    assert domain_for_lookup("XN--BCHER-KVA.Example.") == "bücher.example"
    with pytest.raises(AddressError):
        domain_for_lookup("")


def test_equal_treats_case_idn_and_normalization_alike() -> None:
    assert equal("Joe@XN--BCHER-KVA.example", "joe@bücher.EXAMPLE")
    assert not equal("joe@example.org", "jo@example.org")


def test_equal_compares_malformed_addresses_lower_cased() -> None:
    assert equal("NoAtSign", "noatsign")
    assert not equal("NoAtSign", "other")


def test_to_ascii_gives_a_labels() -> None:
    assert to_ascii("joe@bücher.example") == "joe@xn--bcher-kva.example"
    assert to_ascii("joe@example.org") == "joe@example.org"
    assert to_ascii("postmaster") == "postmaster"


def test_to_ascii_refuses_a_non_ascii_local_part() -> None:
    with pytest.raises(AddressError, match="not ASCII"):
        to_ascii("josé@example.org")


@pytest.mark.parametrize(
    ("domain", "valid"),
    [
        ("example.org", True),
        ("bücher.example", True),
        ("xn--bcher-kva.example", True),
        ("_dmarc.example.org", True),
        ("a" * 63 + ".org", True),
        ("a" * 64 + ".org", False),
        (".example.org", False),
        ("example.org.", False),
        ("exa mple.org", False),
        ("a..b", False),
        ("-a.org", False),
        ("", False),
        ("xn--zz.org", False),
        (".".join(["abcdefghi"] * 26), False),
    ],
)
def test_is_valid_domain(domain: str, valid: bool) -> None:
    assert is_valid_domain(domain) is valid


@pytest.mark.parametrize(
    ("addr", "valid"),
    [
        ("joe@example.org", True),
        ("postmaster", True),
        ('"john doe"@example.org', True),
        ("josé@bücher.example", True),
        ("a..b@example.org", False),
        (".a@example.org", False),
        ("a b@example.org", False),
        ("joe@[192.0.2.1]", True),
        ("joe@[IPv6:2001:db8::1]", True),
        ("joe@[300.1.1.1]", False),
        ("x" * 310 + "@example.org", False),
        ('"unterminated@example.org', False),
    ],
)
def test_is_valid(addr: str, valid: bool) -> None:
    assert is_valid(addr) is valid


def test_unquote_local_part_undoes_quoting_and_escapes() -> None:
    assert unquote_local_part('"a\\"b c"') == 'a"b c'
    assert unquote_local_part("plain") == "plain"
    for bad in ('"a"b', "a\\b", "a@b", '""'):
        with pytest.raises(AddressError):
            unquote_local_part(bad)


def test_control_characters_are_not_valid_in_a_quoted_local_part() -> None:
    assert not is_valid_local_part('"a\x01"')


@given(addresses)
def test_for_lookup_is_idempotent(addr: str) -> None:
    once = for_lookup(addr)
    assert for_lookup(once) == once


@given(addresses)
def test_clean_domain_is_idempotent(addr: str) -> None:
    once = clean_domain(addr)
    assert clean_domain(once) == once


@given(addresses)
def test_to_ascii_and_clean_domain_round_trip(addr: str) -> None:
    try:
        ascii_form = to_ascii(addr)
    except AddressError:
        assert not split(addr)[0].isascii()
        return
    assert ascii_form.isascii()
    assert equal(ascii_form, addr)


@given(st.lists(st.one_of(addresses, st.text(max_size=12)), min_size=3, max_size=3))
def test_equal_is_an_equivalence_relation(trio: list[str]) -> None:
    a, b, c = trio
    assert equal(a, a)
    assert equal(a, b) == equal(b, a)
    if equal(a, b) and equal(b, c):
        assert equal(a, c)


@given(addresses)
def test_equal_holds_between_an_address_and_its_normal_forms(addr: str) -> None:
    assert equal(addr, for_lookup(addr))
    assert equal(addr, clean_domain(addr))
    assert equal(addr.upper() if addr.isascii() else addr, addr)


@given(domains)
def test_generated_domains_are_valid(domain: str) -> None:
    assert is_valid_domain(domain)


@given(st.text(max_size=40))
def test_arbitrary_text_raises_only_address_error(text: str) -> None:
    for func in (split, clean_domain, for_lookup, to_ascii):
        with contextlib.suppress(AddressError):
            func(text)
    is_valid(text)
    is_valid_domain(text)


def plain_ascii_address(addr: str) -> bool:
    """When `for_lookup` may just lower-case: ASCII, both sides of the last "@" non-empty,
    no address literal, no A-label anywhere."""
    at = addr.rfind("@")
    return (
        addr.isascii()
        and 0 < at < len(addr) - 1
        and addr[at + 1] != "["
        and "xn--" not in addr.lower()
    )


@given(addresses)
def test_for_lookup_of_a_plain_ascii_address_is_what_the_full_rules_give(addr: str) -> None:
    if plain_ascii_address(addr):
        assert for_lookup(addr) == address._for_lookup(addr)
