"""The pipeline a TOML configuration builds: sender routing, and strict refusals."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import ConfigError, Header, MsgMetadata, SMTPError
from mailmodule.buffer import MemoryBuffer
from mailmodule.server import Server

MODULES = """
hostname = "mx.test"

[modules.trusted]
module = "table.static"
entries = {{ "boss@partner.example" = "yes" }}

[modules.vips]
module = "table.static"
entries = {{ "vip@example.org" = "yes" }}

[modules.refuse]
module = "check.command"
command = [{python}, "-c", "import sys; sys.exit(1)"]

[modules.inbox]
module = "target.maildir"
autocreate = true
root = "{root}/inbox"

[modules.vip_box]
module = "target.maildir"
autocreate = true
root = "{root}/vip_box"

[modules.partner_box]
module = "target.maildir"
autocreate = true
root = "{root}/partner_box"

[modules.alice_box]
module = "target.maildir"
autocreate = true
root = "{root}/alice_box"

[modules.bounce_box]
module = "target.maildir"
autocreate = true
root = "{root}/bounce_box"

[modules.postmaster_box]
module = "target.maildir"
autocreate = true
root = "{root}/postmaster_box"

[modules.trusted_box]
module = "target.maildir"
autocreate = true
root = "{root}/trusted_box"
"""

ROUTING = """
[pipeline]
destinations = { "example.org" = { targets = ["&inbox"] } }
destination_tables = [{ table = "&vips", targets = ["&vip_box"] }]
default = { reject = "550 5.1.2 No relaying" }

[pipeline.sources."partner.example"]
destinations = { "example.org" = { targets = ["&partner_box"] } }
default = { reject = "550 5.7.1 Partners write to example.org only" }

[pipeline.sources."alice@partner.example"]
default = { targets = ["&alice_box"] }

[pipeline.sources.""]
default = { targets = ["&bounce_box"] }

[pipeline.sources.postmaster]
default = { targets = ["&postmaster_box"] }

[pipeline.sources."spammer.example"]
reject = "554 5.7.1 Go away"

[pipeline.sources."checked.example"]
checks = [{ check = "&refuse", fail_action = "reject 550 5.7.26 Refused for checked.example" }]
default = { targets = ["&inbox"] }

[[pipeline.source_tables]]
table = "&trusted"
default = { targets = ["&trusted_box"] }
"""


def config(tmp_path: Path, pipeline: str = ROUTING) -> dict[str, object]:
    text = MODULES.format(root=tmp_path.as_posix(), python=f'"{Path(sys.executable).as_posix()}"')
    return tomllib.loads(text + pipeline)


def built(tmp_path: Path, pipeline: str = ROUTING) -> Server:
    server = Server(config(tmp_path, pipeline), source="t.toml")
    server.initialize()
    return server


async def send(server: Server, sender: str, *rcpts: str) -> dict[str, SMTPError]:
    """Deliver one message; the recipients refused, with their replies."""
    refused: dict[str, SMTPError] = {}
    async with await server.pipeline.start(MsgMetadata(id="m1"), sender) as delivery:
        for rcpt in rcpts:
            try:
                await delivery.add_rcpt(rcpt)
            except SMTPError as err:
                refused[rcpt] = err
        if len(refused) < len(rcpts):
            await delivery.body(Header([("Subject", "Hi")]), MemoryBuffer(b"Hello\r\n"))
            await delivery.commit()
    return refused


def delivered(tmp_path: Path) -> list[str]:
    """Where messages landed, as "target/mailbox", one entry per message."""
    return sorted(
        f"{path.parent.parent.parent.name}/{path.parent.parent.name}"
        for path in tmp_path.glob("*/*/new/*")
    )


# Sender routing, end to end


async def test_a_sender_domain_picks_its_source(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "bob@partner.example", "joe@example.org") == {}
    assert delivered(tmp_path) == ["partner_box/joe"]


async def test_a_sender_rule_matches_the_sender_in_lookup_form(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "Bob@PARTNER.Example", "joe@example.org") == {}
    assert delivered(tmp_path) == ["partner_box/joe"]


async def test_a_sender_address_is_preferred_to_its_domain(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "alice@partner.example", "joe@example.org") == {}
    assert delivered(tmp_path) == ["alice_box/joe"]


async def test_the_null_sender_picks_the_empty_rule(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "", "joe@example.org") == {}
    assert delivered(tmp_path) == ["bounce_box/joe"]


async def test_postmaster_picks_the_postmaster_rule(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "Postmaster", "joe@example.org") == {}
    assert delivered(tmp_path) == ["postmaster_box/joe"]


async def test_a_source_table_is_asked_before_the_sender_rules(tmp_path: Path) -> None:
    server = built(tmp_path)
    assert await send(server, "boss@partner.example", "joe@example.org") == {}
    assert delivered(tmp_path) == ["trusted_box/joe"]


async def test_other_senders_take_the_default_source_of_the_shorthand(tmp_path: Path) -> None:
    server = built(tmp_path)
    refused = await send(
        server, "a@elsewhere.example", "joe@example.org", "vip@example.org", "x@far.example"
    )
    assert refused == {"x@far.example": SMTPError(550, (5, 1, 2), "No relaying")}
    assert delivered(tmp_path) == ["inbox/joe", "vip_box/vip"]


async def test_a_source_routes_recipients_by_its_own_rules(tmp_path: Path) -> None:
    server = built(tmp_path)
    refused = await send(
        server, "bob@partner.example", "joe@example.org", "vip@example.org", "x@far.example"
    )
    assert refused == {
        "x@far.example": SMTPError(550, (5, 7, 1), "Partners write to example.org only")
    }
    assert delivered(tmp_path) == ["partner_box/joe", "partner_box/vip"]


async def test_a_rejecting_source_refuses_the_sender_at_start(tmp_path: Path) -> None:
    server = built(tmp_path)
    with pytest.raises(SMTPError) as info:
        await server.pipeline.start(MsgMetadata(id="m1"), "eve@spammer.example")
    assert (info.value.code, info.value.enhanced_code, info.value.message) == (
        554,
        (5, 7, 1),
        "Go away",
    )


async def test_a_source_check_applies_its_fail_action_to_its_senders_only(
    tmp_path: Path,
) -> None:
    server = built(tmp_path)
    with pytest.raises(SMTPError) as info:
        await send(server, "a@checked.example", "joe@example.org")
    assert (info.value.code, info.value.enhanced_code, info.value.message) == (
        550,
        (5, 7, 26),
        "Refused for checked.example",
    )
    assert await send(server, "a@elsewhere.example", "joe@example.org") == {}
    assert delivered(tmp_path) == ["inbox/joe"]


async def test_a_default_source_table_routes_the_remaining_senders(tmp_path: Path) -> None:
    server = built(
        tmp_path,
        """
        [pipeline.sources."partner.example"]
        default = { targets = ["&partner_box"] }

        [pipeline.default_source]
        destinations = { "example.org" = { targets = ["&inbox"] } }
        destination_tables = [{ table = "&vips", targets = ["&vip_box"] }]
        default = { reject = "451 4.3.0 Try again later" }
        """,
    )
    refused = await send(
        server, "a@elsewhere.example", "joe@example.org", "vip@example.org", "x@far.example"
    )
    assert refused == {"x@far.example": SMTPError(451, (4, 3, 0), "Try again later")}
    assert await send(server, "bob@partner.example", "ann@far.example") == {}
    assert delivered(tmp_path) == ["inbox/joe", "partner_box/ann", "vip_box/vip"]


# Strict refusals: each names the file, the section and the key

CHECK = '{ check = "&refuse", fail_action = "quarantine" }'
TO_INBOX = '{ targets = ["&inbox"] }'
SOURCE = '[pipeline.sources."partner.example"]\n'
TRUSTED = '[[pipeline.source_tables]]\ntable = "&trusted"\n'
TYPO = '{ check = "&refuse", fail_actoin = "x" }'

BROKEN = [
    # check specs
    (
        'checks = [{ check = "&refuse", fail_actoin = "quarantine" }]',
        "pipeline.checks[0]",
        "fail_actoin",
    ),
    ('checks = [{ fail_action = "quarantine" }]', "pipeline.checks[0]", "check"),
    (
        'checks = [{ check = "&refuse", fail_action = "reject 250 2.0.0 fine" }]',
        "pipeline.checks[0]",
        "fail_action",
    ),
    (
        'checks = [{ check = "&refuse", fail_action = "reject 550 2.0.0 mixed" }]',
        "pipeline.checks[0]",
        "fail_action",
    ),
    (
        'checks = [{ check = "&refuse", fail_action = "reject 550" }]',
        "pipeline.checks[0]",
        "fail_action",
    ),
    (
        'checks = [{ check = "&refuse", fail_action = "bounce" }]',
        "pipeline.checks[0]",
        "fail_action",
    ),
    ('checks = [{ check = "&refuse", fail_action = 5 }]', "pipeline.checks[0]", "fail_action"),
    ('checks = [{ check = "&inbox" }]', "pipeline.checks[0]", "check"),
    ('checks = ["&inbox"]', "pipeline", "checks"),
    ('checks = ["&nothing"]', "pipeline", "checks"),
    ("checks = [5]", "pipeline", "checks"),
    ('checks = "&refuse"', "pipeline", "checks"),
    ('modifiers = ["&refuse"]', "pipeline", "modifiers"),
    # [pipeline] itself
    ("destinatons = {}", "pipeline", "destinatons"),
    ('reject = "550 5.7.1 No"', "pipeline", "reject"),
    ("sources = []", "pipeline", "sources"),
    ('source_tables = ["&trusted"]', "pipeline", "source_tables"),
    ("default_source = 5", "pipeline", "default_source"),
    (
        f"default = {TO_INBOX}\n[pipeline.default_source]\ndefault = {TO_INBOX}",
        "pipeline",
        "default_source",
    ),
    # destinations and replies
    ('default = { reject = "250 2.0.0 fine" }', "pipeline.default", "reject"),
    ('default = { reject = "550 4.1.2 Mixed classes" }', "pipeline.default", "reject"),
    ('default = { reject = "550" }', "pipeline.default", "reject"),
    ("default = { reject = 550 }", "pipeline.default", "reject"),
    ('default = { targets = ["&inbox"], rejct = "550 5.1.2 x" }', "pipeline.default", "rejct"),
    ('default = { targets = ["&inbox"], reject = "550 5.1.2 x" }', "pipeline.default", "reject"),
    ("default = {}", "pipeline.default", "targets"),
    ('default = { targets = ["&vips"] }', "pipeline.default", "targets"),
    ('default = { targets = "&inbox" }', "pipeline.default", "targets"),
    ('default = "&inbox"', "pipeline", "default"),
    (
        f'default = {{ targets = ["&inbox"], checks = [{CHECK}, {{ check = "&refuse", x = 1 }}] }}',
        "pipeline.default.checks[1]",
        "x",
    ),
    (
        'destinations = { "example.org" = { targets = ["&inbox"], target = [] } }',
        'pipeline.destinations."example.org"',
        "target",
    ),
    ('destinations = { "example.org" = ["&inbox"] }', "pipeline.destinations", "example.org"),
    (
        f'destinations = {{ "not a domain!" = {TO_INBOX} }}',
        "pipeline.destinations",
        "not a domain!",
    ),
    (f'destinations = {{ "" = {TO_INBOX} }}', "pipeline.destinations", ""),
    (
        f'destinations = {{ "example.org" = {TO_INBOX}, "EXAMPLE.org." = {TO_INBOX} }}',
        "pipeline.destinations",
        "EXAMPLE.org.",
    ),
    ("destinations = 5", "pipeline", "destinations"),
    (f"destination_tables = [{TO_INBOX}]", "pipeline.destination_tables[0]", "table"),
    (
        'destination_tables = [{ table = "&inbox", targets = ["&inbox"] }]',
        "pipeline.destination_tables[0]",
        "table",
    ),
    (
        'destination_tables = [{ table = "&vips", targets = ["&inbox"], tabel = 1 }]',
        "pipeline.destination_tables[0]",
        "tabel",
    ),
    ('destination_tables = ["&vips"]', "pipeline", "destination_tables"),
    # sources
    (f'{SOURCE}rejet = "550 5.7.1 x"', 'pipeline.sources."partner.example"', "rejet"),
    (f'{SOURCE}reject = "250 2.0.0 fine"', 'pipeline.sources."partner.example"', "reject"),
    (
        f'{SOURCE}reject = "550 5.7.1 x"\ndefault = {TO_INBOX}',
        'pipeline.sources."partner.example"',
        "reject",
    ),
    (
        f'{SOURCE}default = {{ targets = ["&inbox"], checks = [{TYPO}] }}',
        'pipeline.sources."partner.example".default.checks[0]',
        "fail_actoin",
    ),
    (
        f'{SOURCE}destinations = {{ "example.org" = {TO_INBOX}, "Example.ORG" = {TO_INBOX} }}',
        'pipeline.sources."partner.example".destinations',
        "Example.ORG",
    ),
    (
        f'{SOURCE}destinations = {{ "example.org" = {{ reject = "220 2.0.0 hello" }} }}',
        'pipeline.sources."partner.example".destinations."example.org"',
        "reject",
    ),
    (f'[pipeline.sources."not valid!"]\ndefault = {TO_INBOX}', "pipeline.sources", "not valid!"),
    (
        f'[pipeline.sources."@partner.example"]\ndefault = {TO_INBOX}',
        "pipeline.sources",
        "@partner.example",
    ),
    (
        f'{SOURCE}default = {TO_INBOX}\n[pipeline.sources."Partner.Example"]\ndefault = {TO_INBOX}',
        "pipeline.sources",
        "Partner.Example",
    ),
    ('[pipeline.sources]\n"partner.example" = "&inbox"', "pipeline.sources", "partner.example"),
    (f"[[pipeline.source_tables]]\ndefault = {TO_INBOX}", "pipeline.source_tables[0]", "table"),
    (
        f"{TRUSTED}defualt = {TO_INBOX}",
        "pipeline.source_tables[0]",
        "defualt",
    ),
    (
        f'{TRUSTED}default = {TO_INBOX}\n[[pipeline.source_tables]]\ntable = "&refuse"',
        "pipeline.source_tables[1]",
        "table",
    ),
    (
        '[pipeline.default_source]\nreject = "550 5.7.1 x"\nchecks = ["&refuse"]',
        "pipeline.default_source",
        "reject",
    ),
    ("[pipeline.default_source]\ndestinations = 5", "pipeline.default_source", "destinations"),
    ("[pipeline.default_source]\nmodifers = []", "pipeline.default_source", "modifers"),
]


@pytest.mark.parametrize(("pipeline", "section", "key"), BROKEN)
def test_a_broken_pipeline_is_refused_naming_file_section_and_key(
    tmp_path: Path, pipeline: str, section: str, key: str
) -> None:
    text = pipeline if pipeline.startswith("[") else f"[pipeline]\n{pipeline}"
    with pytest.raises(ConfigError) as info:
        built(tmp_path, text)
    assert (info.value.file, info.value.section, info.value.key) == ("t.toml", section, key)
    assert "t.toml" in str(info.value)


def test_an_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'fail_action'"):
        built(tmp_path, '[pipeline]\nchecks = [{ check = "&refuse", fail_actoin = "x" }]')


def test_a_temporary_rejection_is_a_valid_reply(tmp_path: Path) -> None:
    server = built(tmp_path, '[pipeline]\ndefault = { reject = "451 4.3.0 Try again later" }')
    assert server.pipeline.default_source.default is not None


# Anything under [pipeline], or under an endpoint's pipeline

_REFS = st.sampled_from(["&inbox", "&vips", "&refuse", "&nothing", "inbox", "&"])
_REPLIES = st.sampled_from(
    ["550 5.7.1 No", "250 2.0.0 Fine", "451 4.3.0 Later", "550 4.3.0 Mixed", "550", "no"]
)
_ACTIONS = st.sampled_from(["quarantine", "ignore", "reject", "bounce"]) | _REPLIES.map(
    "reject {}".format
)
_RULES = st.sampled_from(
    ["example.org", "a@example.org", "Example.ORG", "postmaster", "", "x y", "@x", "a@"]
)
_LEAVES = (
    st.none() | st.booleans() | st.integers() | _REFS | _REPLIES | _ACTIONS | st.text(max_size=4)
)
_KEYS = (
    st.sampled_from(
        [
            "checks",
            "modifiers",
            "destinations",
            "destination_tables",
            "default",
            "sources",
            "source_tables",
            "default_source",
            "reject",
            "targets",
            "table",
            "check",
            "fail_action",
            "fail_actoin",
        ]
    )
    | _RULES
)
_JUNK = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _or_junk(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly `strategy`, sometimes junk, so that errors are found at every depth."""
    return st.one_of(strategy, strategy, strategy, _JUNK)


def _entry(
    strategy: st.SearchStrategy[dict[str, object]],
) -> st.SearchStrategy[dict[str, object]]:
    """A table entry: `strategy`'s table with a `table` key, mostly."""
    return st.builds(
        lambda entry, table: entry if table is None else {**entry, "table": table},
        strategy,
        st.one_of(_REFS, _REFS, st.none()),
    )


_CHECK = _REFS | st.fixed_dictionaries(
    {"check": _or_junk(_REFS)},
    optional={"fail_action": _or_junk(_ACTIONS), "fail_actoin": _ACTIONS},
)
_COMMON: dict[str, st.SearchStrategy[object]] = {
    "checks": _or_junk(st.lists(_CHECK, max_size=2)),
    "modifiers": _or_junk(st.lists(_REFS, max_size=2)),
}
_DESTINATION = st.fixed_dictionaries(
    {},
    optional={
        **_COMMON,
        "targets": _or_junk(st.lists(_REFS, max_size=2)),
        "reject": _or_junk(_REPLIES),
    },
)
_ROUTES: dict[str, st.SearchStrategy[object]] = {
    "destinations": _or_junk(st.dictionaries(_RULES, _or_junk(_DESTINATION), max_size=3)),
    "destination_tables": _or_junk(st.lists(_or_junk(_entry(_DESTINATION)), max_size=2)),
    "default": _or_junk(_DESTINATION),
}
_SOURCE = st.fixed_dictionaries({}, optional={**_COMMON, **_ROUTES, "reject": _or_junk(_REPLIES)})
_SENDERS: dict[str, st.SearchStrategy[object]] = {
    **_COMMON,
    "sources": _or_junk(st.dictionaries(_RULES, _or_junk(_SOURCE), max_size=4)),
    "source_tables": _or_junk(st.lists(_or_junk(_entry(_SOURCE)), max_size=2)),
}
_PIPELINE = st.fixed_dictionaries({}, optional={**_SENDERS, **_ROUTES}) | st.fixed_dictionaries(
    {}, optional={**_SENDERS, "default_source": _or_junk(_SOURCE)}
)


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return config(tmp_path_factory.mktemp("junk"), "")


@pytest.mark.parametrize("at", ["pipeline", "endpoints[1].pipeline"])
@settings(max_examples=400, deadline=None)
@given(junk=_PIPELINE | st.dictionaries(_KEYS, _JUNK, max_size=5))
def test_any_junk_under_pipeline_is_refused_naming_where_or_builds(
    modules: dict[str, object], at: str, junk: dict[str, object]
) -> None:
    data = {**modules, "pipeline": junk}
    if at != "pipeline":  # the same junk as the second endpoint's own pipeline
        endpoint = {"type": "smtp", "listen": ["127.0.0.1:0"]}
        data = {**modules, "endpoints": [endpoint, {**endpoint, "pipeline": junk}]}
    refused: ConfigError | None = None
    try:
        Server(data, source="junk.toml").initialize()
    except ConfigError as err:
        refused = err
    if refused is not None:
        assert refused.file == "junk.toml"
        assert (refused.section or "").startswith(at)
        assert refused.key is not None
