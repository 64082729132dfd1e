"""Routing rules and replies are checked when a pipeline is built; senders when it starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    ENHANCED_CODE_NOT_SET,
    NO_ENHANCED_CODE,
    ConfigError,
    Header,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
)
from mailmodule.pipeline import NO_ROUTE, Destination, Pipeline, Source
from tests.pipeline_kit import MemoryTarget, RecordingCheck

_T = TypeVar("_T")

BODY = MemoryBuffer(b"Hello\r\n")


def header() -> Header:
    return Header([("Subject", "Hi"), ("From", "a@example.org")])


def target_dest() -> Destination:
    return Destination(targets=[MemoryTarget()])


# Rejection replies


NOT_REFUSALS = [
    pytest.param(SMTPError(250, (2, 0, 0), "OK"), id="250-2.0.0"),
    pytest.param(SMTPError(250, NO_ENHANCED_CODE, "OK"), id="250-none"),
    pytest.param(SMTPError(354, ENHANCED_CODE_NOT_SET, "Go ahead"), id="354-unset"),
    pytest.param(SMTPError(354, NO_ENHANCED_CODE, "Go ahead"), id="354-none"),
    pytest.param(SMTPError(550, (4, 0, 0), "Mixed"), id="550-4.0.0"),
    pytest.param(SMTPError(451, (5, 0, 0), "Mixed"), id="451-5.0.0"),
    pytest.param(SMTPError(550, (2, 0, 0), "Mixed"), id="550-2.0.0"),
]

REFUSALS = [
    pytest.param(SMTPError(451, (4, 3, 0), "Try later"), id="451-4.3.0"),
    pytest.param(SMTPError(550, (5, 1, 1), "No mailbox"), id="550-5.1.1"),
    pytest.param(SMTPError(421, NO_ENHANCED_CODE, "Closing"), id="421-none"),
    pytest.param(SMTPError(554, ENHANCED_CODE_NOT_SET, "No"), id="554-unset"),
]


@pytest.mark.parametrize("reply", NOT_REFUSALS)
def test_a_destination_rejecting_with_a_reply_that_is_no_refusal_is_refused(
    reply: SMTPError,
) -> None:
    with pytest.raises(ConfigError) as caught:
        Destination(reject=reply)
    assert caught.value.key == "reject"


@pytest.mark.parametrize("reply", NOT_REFUSALS)
def test_a_source_rejecting_with_a_reply_that_is_no_refusal_is_refused(reply: SMTPError) -> None:
    with pytest.raises(ConfigError) as caught:
        Source(reject=reply)
    assert caught.value.key == "reject"


@pytest.mark.parametrize("reply", REFUSALS)
def test_a_destination_rejecting_with_a_4xx_or_5xx_reply_is_accepted(reply: SMTPError) -> None:
    assert Destination(reject=reply).reject == reply


@pytest.mark.parametrize("reply", REFUSALS)
def test_a_source_rejecting_with_a_4xx_or_5xx_reply_is_accepted(reply: SMTPError) -> None:
    assert Source(reject=reply).reject == reply


enhanced_codes = st.one_of(
    st.sampled_from([NO_ENHANCED_CODE, ENHANCED_CODE_NOT_SET]),
    st.tuples(st.sampled_from([2, 4, 5]), st.integers(0, 9), st.integers(0, 9)),
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([Destination, Source]),
    code=st.integers(200, 599),
    enhanced=enhanced_codes,
)
def test_a_rejection_reply_is_accepted_exactly_when_it_refuses_with_a_matching_class(
    kind: type[Destination] | type[Source], code: int, enhanced: tuple[int, int, int]
) -> None:
    reply = SMTPError(code, enhanced, "reply")
    refusal = 400 <= code <= 599 and enhanced[0] in (code // 100, 0, -1)
    built = built_or_refused(lambda: kind(reject=reply))
    if isinstance(built, ConfigError):
        assert built.key == "reject"
        assert not refusal
    else:
        assert refusal
        assert built.reject == reply


def built_or_refused(build: Callable[[], _T]) -> _T | ConfigError:
    try:
        return build()
    except ConfigError as err:
        return err


# Routing keys


@pytest.mark.parametrize("key", ["..", "@example.", "a@", "@", "exa mple.org", ""])
def test_a_destination_key_that_is_no_address_domain_or_postmaster_is_refused_naming_it(
    key: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        Pipeline(destinations={key: target_dest()})
    assert caught.value.key is not None
    assert caught.value.key.startswith("destinations")
    assert repr(key) in caught.value.key


@pytest.mark.parametrize(
    ("key", "rcpt"),
    [
        ("postmaster", "postmaster"),
        ("postmaster", "PostMaster"),
        ("example.org", "someone@example.org"),
        ("Example.ORG", "someone@example.org"),
        ("bücher.example", "someone@BÜCHER.example"),
        ("bücher.example", "someone@xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "someone@bücher.example"),
        ("user@example.org", "User@Example.org"),
        ("josé@bücher.example", "JOSÉ@xn--bcher-kva.example"),
    ],
)
async def test_an_address_domain_or_postmaster_key_routes_its_recipients(
    key: str, rcpt: str
) -> None:
    dest = target_dest()
    pipeline = Pipeline(destinations={key: dest})
    assert await pipeline.route(rcpt) is dest


LABEL_CHARS = st.sampled_from("abcxyz09-_.üßéЖ ")
domain_likes = st.lists(st.text(alphabet=LABEL_CHARS, max_size=6), min_size=1, max_size=3).map(
    ".".join
)
hostnames = st.from_regex(r"[a-zA-Z0-9üßÉ_-]{1,6}(\.[a-zA-Z0-9üßÉ_-]{1,6}){0,2}\.?", fullmatch=True)
local_likes = st.text(alphabet=st.sampled_from('abcXYZ09.+"\\ éü'), max_size=6)
route_keys = st.one_of(
    st.text(max_size=12),
    domain_likes,
    hostnames,
    st.builds(lambda local, domain: f"{local}@{domain}", local_likes, domain_likes | hostnames),
    st.sampled_from(["postmaster", "PostMaster", "POSTMASTER", "postmaster@example.org"]),
)


def recipient_for(key: str) -> str:
    """A recipient the rule `key` should route: the address itself, or one in the domain."""
    if "@" in key or key.lower() == "postmaster":
        return key
    return f"someone@{key}"


@settings(max_examples=300, deadline=None)
@given(key=route_keys)
def test_any_text_key_is_refused_naming_it_or_routes_recipients_of_its_address_or_domain(
    key: str,
) -> None:
    dest = target_dest()
    pipeline = built_or_refused(lambda: Pipeline(destinations={key: dest}, default=target_dest()))
    if isinstance(pipeline, ConfigError):
        assert pipeline.key is not None
        assert repr(key) in pipeline.key
        return
    assert asyncio.run(pipeline.route(recipient_for(key))) is dest


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("example.org", "EXAMPLE.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("User@example.org", "user@EXAMPLE.ORG"),
        ("postmaster", "PostMaster"),
    ],
)
def test_two_keys_of_one_rule_with_different_destinations_are_refused(
    first: str, second: str
) -> None:
    Pipeline(destinations={first: target_dest()})  # each alone is a rule
    Pipeline(destinations={second: target_dest()})
    with pytest.raises(ConfigError) as caught:
        Pipeline(destinations={first: target_dest(), second: target_dest()})
    assert caught.value.key is not None
    assert repr(second) in caught.value.key


# Senders


@pytest.mark.parametrize("sender", ["no_domain@", "@no_mailbox", "nodomain"])
async def test_start_refuses_a_sender_that_is_no_address_with_501_5_1_7(sender: str) -> None:
    pipeline = Pipeline(default=target_dest())
    with pytest.raises(SMTPError) as caught:
        await pipeline.start(MsgMetadata(id="m"), sender)
    assert (caught.value.code, caught.value.enhanced_code) == (501, (5, 1, 7))


@pytest.mark.parametrize("sender", ["no_domain@", "@no_mailbox", "nodomain"])
async def test_start_refusing_a_malformed_sender_leaves_no_state_or_delivery_open(
    sender: str,
) -> None:
    check, source_check = RecordingCheck("check.pipeline"), RecordingCheck("check.source")
    target = MemoryTarget()
    pipeline = Pipeline(
        checks=[check],
        default_source=Source(
            checks=[source_check], default=Destination(targets=[target], checks=[check])
        ),
    )
    with pytest.raises(SMTPError):
        await pipeline.start(MsgMetadata(id="m"), sender)
    assert all(s.closes == 1 for s in check.states + source_check.states)
    assert target.calls == []


@pytest.mark.parametrize("sender", ["", "postmaster", "PostMaster"])
async def test_start_accepts_the_null_sender_and_postmaster(sender: str) -> None:
    target = MemoryTarget()
    pipeline = Pipeline(default=Destination(targets=[target]))
    delivery = await pipeline.start(MsgMetadata(id="m"), sender)
    await delivery.add_rcpt("b@example.org")
    await delivery.body(header(), BODY)
    await delivery.commit()
    assert [m.mail_from for m in target.messages] == [sender]


async def test_a_source_without_rules_routes_every_recipient_to_its_default_or_nowhere() -> None:
    dest = Destination(targets=[MemoryTarget()])
    assert Source(default=dest).static_route is dest
    assert Source().static_route is NO_ROUTE
    ruled = Source(destinations={"example.org": dest}, default=dest)
    assert ruled.static_route is None
    assert await Source(default=dest).route("Any@Where.example") is dest
