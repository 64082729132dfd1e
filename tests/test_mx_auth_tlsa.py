"""DANE's certificate matching (RFC 7672): DANE-EE and DANE-TA records against real chains."""

from __future__ import annotations

import datetime

import pytest
import trustme

from mailmodule.dns import TLSA
from mailmodule.modules.mx_auth import authenticates
from mailmodule.modules.mx_auth._tlsa import usable_records
from tests.mx_auth_kit import ca_der, chain, tlsa

HOST = "mx.example.net"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def intermediate(ca: trustme.CA) -> trustme.CA:
    return ca.create_child_ca()


@pytest.fixture(scope="module")
def leaf(intermediate: trustme.CA) -> tuple[bytes, ...]:
    return chain(intermediate.issue_cert(HOST))


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_a_dane_ee_record_of_the_leaf_authenticates(
    leaf: tuple[bytes, ...], selector: int, mtype: int
) -> None:
    assert authenticates([tlsa(3, selector, mtype, leaf[0])], leaf, HOST)


def test_dane_ee_checks_neither_the_name_nor_the_dates(leaf: tuple[bytes, ...]) -> None:
    before = datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC)
    assert authenticates([tlsa(3, 1, 1, leaf[0])], leaf, "other.example", now=before)


def test_a_dane_ee_record_of_another_certificate_does_not(
    ca: trustme.CA, leaf: tuple[bytes, ...]
) -> None:
    other = chain(ca.issue_cert(HOST))
    assert not authenticates([tlsa(3, 1, 1, other[0])], leaf, HOST)
    assert not authenticates([tlsa(3, 0, 2, other[0])], leaf, HOST)


@pytest.mark.parametrize("selector", [0, 1])
def test_a_dane_ta_record_of_the_intermediate_authenticates_its_leaf(
    leaf: tuple[bytes, ...], selector: int
) -> None:
    assert authenticates([tlsa(2, selector, 1, leaf[1])], leaf, HOST)


def test_dane_ta_checks_the_mx_name(leaf: tuple[bytes, ...]) -> None:
    assert not authenticates([tlsa(2, 0, 1, leaf[1])], leaf, "mx.other.example")


def test_dane_ta_checks_the_dates(leaf: tuple[bytes, ...]) -> None:
    before = datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC)  # trustme's are newer
    assert not authenticates([tlsa(2, 0, 1, leaf[1])], leaf, HOST, now=before)


def test_dane_ta_needs_the_anchor_in_the_chain_the_server_sent(
    ca: trustme.CA, leaf: tuple[bytes, ...]
) -> None:
    """The root was not sent: a record naming it has nothing to match (RFC 7672 3.1.2)."""
    assert not authenticates([tlsa(2, 0, 1, ca_der(ca))], leaf, HOST)


def test_a_dane_ta_record_of_the_leaf_itself_does_not_authenticate(
    leaf: tuple[bytes, ...],
) -> None:
    assert not authenticates([tlsa(2, 0, 1, leaf[0])], leaf, HOST)


def test_pkix_usages_and_unknown_parameters_are_unusable(leaf: tuple[bytes, ...]) -> None:
    good = tlsa(3, 0, 1, leaf[0])
    unusable = [
        tlsa(0, 0, 1, leaf[1]),
        tlsa(1, 0, 1, leaf[0]),
        TLSA(usage=3, selector=2, mtype=1, data=good.data),
        TLSA(usage=3, selector=0, mtype=3, data=good.data),
    ]
    assert usable_records(unusable) == ()
    assert not authenticates(unusable, leaf, HOST)
    assert usable_records([*unusable, good]) == (good,)


def test_a_chain_that_does_not_parse_authenticates_nothing(leaf: tuple[bytes, ...]) -> None:
    garbage = (b"\x30\x03\x02\x01\x00", b"not DER")
    assert not authenticates([tlsa(3, 1, 1, leaf[0]), tlsa(2, 0, 1, leaf[1])], garbage, HOST)
    assert not authenticates([tlsa(3, 1, 1, leaf[0])], (), HOST)
