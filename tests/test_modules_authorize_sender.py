"""`check.authorize_sender`: every From address, one From field, strict parsing."""

from __future__ import annotations

import asyncio
import email.policy
from email import errors

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailmodule import ConnState, Header, HeaderError, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.modules import AuthorizeSender
from tests.modules_kit import build, new_registry

OWN = ("joe@example.org", "j@example.org")


def authorize() -> AuthorizeSender:
    registry = new_registry()
    build(registry, "table.static", "emails", {"entries": {"joe": list(OWN)}})
    check = build(registry, "check.authorize_sender", "auth_sender", {"user_to_email": "&emails"})
    assert isinstance(check, AuthorizeSender)
    return check


CHECK = authorize()


async def verdict(raw: bytes, user: str = "joe") -> SMTPError | None:
    """The check's reason for a message with header `raw` from `user`; None when it passes."""
    state = await CHECK.check_state_for_msg(MsgMetadata(id="m", conn=ConnState(auth_user=user)))
    result = await state.check_body(Header.parse(raw + b"\r\n"), MemoryBuffer(b""))
    assert result.reject == (result.reason is not None)
    return result.reason


def from_field(value: str) -> bytes:
    return b"From: " + value.encode() + b"\r\n"


async def test_the_users_own_from_addresses_pass() -> None:
    for value in (
        "joe@example.org",
        "Joe <joe@example.org>",
        '"Joe, the \\"J\\"" <J@Example.ORG>',
        "=?utf-8?q?J=C3=B6e?= <joe@example.org>, j@example.org",
        "joe@example.org (Joe)",
    ):
        assert await verdict(from_field(value)) is None, value
    assert await verdict(b"From: Joe\r\n <joe@example.org>,\r\n\tj@example.org\r\n") is None


async def test_every_from_address_must_belong_to_the_user() -> None:
    """The measured case: only the first address was looked at."""
    reason = await verdict(from_field("joe@example.org, ceo@example.org"))
    assert reason is not None
    assert (reason.code, reason.enhanced_code) == (553, (5, 7, 1))


async def test_a_second_from_field_is_refused_even_below_the_users() -> None:
    reason = await verdict(from_field("joe@example.org") + from_field("ceo@example.org"))
    assert reason is not None
    assert (reason.code, reason.enhanced_code) == (550, (5, 7, 0))
    assert "one From field" in reason.message


async def test_a_message_without_a_from_field_is_refused() -> None:
    reason = await verdict(b"Subject: hi\r\n")
    assert reason is not None
    assert reason.code == 550


@pytest.mark.parametrize(
    "value",
    [
        b"joe@example.org\rceo@example.org",  # a bare CR: some readers see two lines
        b"joe@example.org\r",  # at the end, where the field's value strips it
        b"Joe\r<joe@example.org>",
        b"joe@example.org\x00",
        b"undisclosed: joe@example.org;",  # group syntax
        b"ceo@example.org: joe@example.org;",
        b"joe@example.org (ceo@example.org)",  # a comment holding an address
        b"joe(ceo@example.org)@example.org",
        b"=?utf-8?q?ceo=40example.org?= <joe@example.org>",  # encoded word hiding one
        b"=?utf-8?b?Y2VvQGV4YW1wbGUub3Jn?= <joe@example.org>",
        b'"ceo@example.org" <joe@example.org>',  # an address in the display name
        b'"<ceo@example.org>" <joe@example.org>',
        b"Joe <joe@example.org> <ceo@example.org>",
        b"joe@example.org <ceo@example.org>",
        b"<joe@example.org",
        b"joe@example.org>",
        b"joe@[192.0.2.1]",
        b'"joe"@example.org',
        b"joe @example.org",
        b"joe@example.org,",
        b", joe@example.org",
        b"joe@example.org,,j@example.org",
        b"joe@example.org\xff",
        "Jo\u202ee <joe@example.org>".encode(),  # a bidi override
        b"=?utf-8?q?joe?=@example.org",
        b"",
    ],
)
async def test_a_from_field_that_does_not_parse_strictly_is_refused(value: bytes) -> None:
    reason = await verdict(b"From: " + value + b"\r\n")
    assert reason is not None
    assert reason.code in (550, 553)


async def test_a_foreign_or_malformed_sender_field_is_refused() -> None:
    own_from = from_field("joe@example.org")
    assert await verdict(own_from + b"Sender: j@example.org\r\n") is None
    foreign = await verdict(own_from + b"Sender: ceo@example.org\r\n")
    assert foreign is not None
    assert foreign.code == 553
    twice = await verdict(own_from + b"Sender: joe@example.org\r\nSender: joe@example.org\r\n")
    assert twice is not None
    assert twice.code == 550


async def test_unauthenticated_mail_is_not_looked_at() -> None:
    assert await verdict(from_field("a@x.org, b@y.org") * 2, user="") is None


async def test_the_envelope_sender_must_be_the_users() -> None:
    meta = MsgMetadata(id="m", conn=ConnState(auth_user="joe"))
    state = await CHECK.check_state_for_msg(meta)
    assert not (await state.check_sender("J@example.org")).reject
    for foreign in ("ceo@example.org", "", "joe@example.org.evil.example"):
        assert (await state.check_sender(foreign)).reject, foreign


# Against a reference parser

PIECES = st.sampled_from(
    [
        "joe@example.org",
        "ceo@example.org",
        "j@example.org",
        "joe",
        "ceo",
        "example.org",
        "Joe",
        "Ceo Example",
        "ö",
        '"',
        "\\",
        "<",
        ">",
        ",",
        ":",
        ";",
        "(",
        ")",
        "@",
        ".",
        " ",
        "\t",
        "\r",
        "\x00",
        "[192.0.2.1]",
        "=?utf-8?q?ceo=40example.org?=",
        "=?utf-8?b?Y2VvQGV4YW1wbGUub3Jn?=",
        "=?utf-8?q?Jo=C3=AB?=",
        "=?",
        "?=",
        "\u202e",
        "\u00a0",
    ]
)


def reference_addresses(value: str) -> list[str] | None:
    """What the stdlib's RFC 5322 parser sees: addresses, or None if it found defects.

    A UTF-8 local part is a defect to RFC 5322 only: RFC 6532 allows it.
    """
    parsed = email.policy.default.header_factory("From", value)
    if any(not isinstance(d, errors.NonASCIILocalPartDefect) for d in parsed.defects):
        return None
    return [f"{a.username}@{a.domain}" for a in parsed.addresses]


def raw_header(value: str) -> bytes | None:
    raw = from_field(value)
    try:
        Header.parse(raw + b"\r\n")
    except HeaderError:
        return None
    return raw


@given(st.lists(PIECES, min_size=1, max_size=10).map("".join))
@example("joe@example.org, ceo@example.org")
@example('"ceo@example.org" <joe@example.org>')
@example("Joe <joe@example.org> (x)")
def test_a_from_value_passes_only_if_a_reference_parser_sees_only_the_users_addresses(
    value: str,
) -> None:
    raw = raw_header(value)
    if raw is None:
        return  # not a header at all: the endpoint refuses it before any check
    if asyncio.run(verdict(raw)) is not None:
        return  # refused
    seen = reference_addresses(value)
    assert seen, f"passed, but the reference parser finds defects or nothing in {value!r}"
    assert all(addr.lower() in OWN for addr in seen), seen


@given(st.lists(PIECES, min_size=1, max_size=10).map("".join))
def test_a_parsed_from_value_gives_exactly_the_reference_addresses(value: str) -> None:
    from mailmodule.modules.checks import _mailboxes

    found = _mailboxes(value)
    if found is not None:
        assert found == reference_addresses(value)


# "=?" would start an encoded word, which an address may not hold: refused by design.
local_parts = st.from_regex(r"\A[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}(\.[a-z0-9_-]{1,5}){0,2}\Z").filter(
    lambda s: "=?" not in s
)
domains = st.from_regex(r"\A[a-z0-9]{1,8}(\.[a-z0-9]{1,6}){1,2}\Z")
display_names = st.one_of(
    st.just(""),
    st.from_regex(r"\A[A-Za-z]{1,8}( [A-Za-z]{1,8}){0,2}\Z"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="@<>"))
    .filter(lambda s: "=?" not in s)
    .map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)


@given(st.lists(st.tuples(display_names, local_parts, domains), min_size=1, max_size=4))
def test_well_formed_from_values_give_their_addresses(
    mailboxes: list[tuple[str, str, str]],
) -> None:
    from mailmodule.modules.checks import _mailboxes

    addrs = [f"{local}@{domain}" for _, local, domain in mailboxes]
    value = ", ".join(
        f"{name} <{addr}>" if name else addr
        for (name, _, _), addr in zip(mailboxes, addrs, strict=True)
    )
    assert _mailboxes(value) == addrs == reference_addresses(value)
