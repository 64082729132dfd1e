from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mailmodule import (
    ConnState,
    Header,
    MemoryBuffer,
    MsgMetadata,
    SMTPError,
)
from mailmodule.modules import AuthorizeSender, CommandCheck, PassTable, ReplaceAddress
from mailmodule.pipeline import Destination, Pipeline
from tests.modules_kit import build, new_registry
from tests.pipeline_kit import MemoryTarget

# check.command


SCRIPT = """
import os, sys
data = sys.stdin.buffer.read()
print("X-Seen-Bytes:", len(data))
print("X-Sender:", os.environ["MAILMODULE_SENDER"])
if b"SPAM" in data:
    sys.exit(2)
if b"VIRUS" in data:
    sys.exit(1)
if b"CRASH" in data:
    sys.exit(7)
"""


def command_pipeline(tmp_path: Path, target: MemoryTarget, **extra: object) -> Pipeline:
    script = tmp_path / "filter.py"
    script.write_text(SCRIPT)
    check = build(
        new_registry(),
        "check.command",
        "filter",
        {"command": [sys.executable, str(script), "{sender}", "{rcpts}"], **extra},
    )
    assert isinstance(check, CommandCheck)
    return Pipeline(checks=[check], default=Destination(targets=[target]))


async def send(pipeline: Pipeline, body: bytes) -> None:
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("b@example.org")
    try:
        await delivery.body(Header([("Subject", "x")]), MemoryBuffer(body))
    except SMTPError:
        await delivery.abort()
        raise
    await delivery.commit()


async def test_command_check_passes_and_adds_what_it_prints(tmp_path: Path) -> None:
    target = MemoryTarget()
    await send(command_pipeline(tmp_path, target), b"hello\r\n")
    stored = Header.parse(target.messages[0].header)
    assert stored.get("x-sender") == "a@example.org"
    assert stored.get("x-seen-bytes") == str(len(b"Subject: x\r\n\r\nhello\r\n"))


async def test_command_check_exit_codes_reject_or_quarantine(tmp_path: Path) -> None:
    target = MemoryTarget()
    pipeline = command_pipeline(tmp_path, target)
    with pytest.raises(SMTPError) as info:
        await send(pipeline, b"VIRUS\r\n")
    assert info.value.code == 550
    assert info.value.check_name == "filter"
    await send(pipeline, b"SPAM\r\n")
    assert target.messages[-1].meta.quarantine
    with pytest.raises(SMTPError) as temp:
        await send(pipeline, b"CRASH\r\n")
    assert temp.value.is_temporary


async def test_command_check_time_limit_is_a_temporary_failure(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time; time.sleep(30)")
    check = build(
        new_registry(),
        "check.command",
        "slow",
        {"command": f"{sys.executable} {script}", "timeout": "200ms"},
    )
    assert isinstance(check, CommandCheck)
    pipeline = Pipeline(checks=[check], default=Destination(targets=[MemoryTarget()]))
    with pytest.raises(SMTPError) as info:
        await send(pipeline, b"x")
    assert info.value.is_temporary


# check.authorize_sender


def authorize(tmp_path: Path) -> AuthorizeSender:
    registry = new_registry()
    build(
        registry,
        "table.static",
        "emails",
        {"entries": {"joe": ["joe@example.org", "j@example.org"]}},
    )
    check = build(registry, "check.authorize_sender", "auth_sender", {"user_to_email": "&emails"})
    assert isinstance(check, AuthorizeSender)
    return check


async def test_authorize_sender_allows_the_users_own_addresses(tmp_path: Path) -> None:
    target = MemoryTarget()
    pipeline = Pipeline(checks=[authorize(tmp_path)], default=Destination(targets=[target]))
    meta = MsgMetadata(id="m", conn=ConnState(auth_user="joe"))
    delivery = await pipeline.start(meta, "J@Example.ORG")
    await delivery.add_rcpt("x@elsewhere.example")
    await delivery.body(Header([("From", "Joe <joe@example.org>")]), MemoryBuffer(b"hi"))
    await delivery.commit()
    assert len(target.messages) == 1


async def test_authorize_sender_refuses_foreign_sender_and_from(tmp_path: Path) -> None:
    pipeline = Pipeline(checks=[authorize(tmp_path)], default=Destination(targets=[MemoryTarget()]))
    meta = MsgMetadata(id="m", conn=ConnState(auth_user="joe"))
    with pytest.raises(SMTPError, match="sender address") as info:
        await pipeline.start(meta, "ceo@example.org")
    assert info.value.code == 553
    delivery = await pipeline.start(meta, "joe@example.org")
    await delivery.add_rcpt("x@elsewhere.example")
    with pytest.raises(SMTPError, match="From address"):
        await delivery.body(Header([("From", "ceo@example.org")]), MemoryBuffer(b"hi"))
    await delivery.abort()


async def test_authorize_sender_lets_unauthenticated_mail_pass(tmp_path: Path) -> None:
    pipeline = Pipeline(checks=[authorize(tmp_path)], default=Destination(targets=[MemoryTarget()]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "anyone@example.net")
    await delivery.abort()


# modify.replace_rcpt / modify.replace_sender


def replacer(module: str) -> ReplaceAddress:
    registry = new_registry()
    build(
        registry,
        "table.static",
        "aliases",
        {
            "entries": {
                "team@example.org": ["joe@example.org", "ann@example.org"],
                "old.example": "new.example",
                "bounce@example.org": "srs@example.org",
            }
        },
    )
    mod = build(registry, module, "rewrite", {"table": "&aliases"})
    assert isinstance(mod, ReplaceAddress)
    return mod


async def test_replace_rcpt_expands_aliases_and_rewrites_domains() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(
        modifiers=[replacer("modify.replace_rcpt")], default=Destination(targets=[target])
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "bounce@example.org")
    for rcpt in ("Team@Example.org", "Bob@old.example", "carl@other.example"):
        await delivery.add_rcpt(rcpt)
    await delivery.body(Header(), MemoryBuffer(b"x"))
    await delivery.commit()
    stored = target.messages[0]
    assert stored.rcpts == [
        "joe@example.org",
        "ann@example.org",
        "Bob@new.example",
        "carl@other.example",
    ]
    assert stored.mail_from == "bounce@example.org"  # replace_rcpt leaves the sender alone
    assert stored.meta.original_rcpts is not None
    assert stored.meta.original_rcpts["ann@example.org"] == "Team@Example.org"


async def test_replace_sender_rewrites_only_the_sender() -> None:
    target = MemoryTarget()
    pipeline = Pipeline(
        modifiers=[replacer("modify.replace_sender")], default=Destination(targets=[target])
    )
    delivery = await pipeline.start(MsgMetadata(id="m"), "bounce@example.org")
    await delivery.add_rcpt("team@example.org")
    await delivery.body(Header(), MemoryBuffer(b"x"))
    await delivery.commit()
    assert target.messages[0].mail_from == "srs@example.org"
    assert target.messages[0].rcpts == ["team@example.org"]


def test_an_inline_table_reference_keeps_unknown_keys_reported(tmp_path: Path) -> None:
    from mailmodule import ModuleInitError

    registry = new_registry()
    (tmp_path / "users").write_text("")
    build(registry, "table.file", "users", {"file": str(tmp_path / "users")})
    auth = PassTable("auth.pass_table", "inline_auth", [], ["&users"])
    registry.register_instance(auth, {"typo": 1})
    with pytest.raises(ModuleInitError, match="typo"):
        registry.get_instance("inline_auth")
    ok = PassTable("auth.pass_table", "inline_ok", [], ["&users"])
    registry.register_instance(ok, {})
    assert registry.get_instance("inline_ok") is ok
