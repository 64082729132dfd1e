from __future__ import annotations

import asyncio
import errno
import mailbox
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmodule import (
    DeliveryTarget,
    Header,
    MemoryBuffer,
    Modifier,
    MsgMetadata,
    PartialDelivery,
    SMTPError,
)
from mailmodule.modules import MaildirTarget
from mailmodule.pipeline import Destination, Pipeline
from tests.modules_kit import build, new_registry

BODY = b"Hello there.\r\n"


def target(tmp_path: Path, **settings: object) -> MaildirTarget:
    registry = new_registry()
    build(
        registry,
        "table.static",
        "mailboxes",
        {"entries": {"joe": "joe", "ann": "ann", "jürgen": "juergen", "evil": "../escape"}},
    )
    built = build(
        registry,
        "target.maildir",
        "local",
        {"root": str(tmp_path / "mail"), "mailboxes": "&mailboxes", **settings},
    )
    assert isinstance(built, MaildirTarget)
    assert isinstance(built, DeliveryTarget)
    return built


def header() -> Header:
    return Header([("Subject", "Grüße"), ("From", "a@example.org")])


def messages(tmp_path: Path, box: str, folder: str | None = None) -> list[mailbox.MaildirMessage]:
    md = mailbox.Maildir(str(tmp_path / "mail" / box), create=False)
    if folder is not None:
        md = md.get_folder(folder)
    return list(md)


def bare_target(tmp_path: Path, **settings: object) -> MaildirTarget:
    """A maildir without a mailboxes table."""
    built = build(
        new_registry(), "target.maildir", "m", {"root": str(tmp_path / "mail"), **settings}
    )
    assert isinstance(built, MaildirTarget)
    return built


async def deliver(maildir: MaildirTarget, *rcpts: str, quarantine: bool = False) -> None:
    delivery = await maildir.start(MsgMetadata(id="m", quarantine=quarantine), "a@x")
    try:
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.body(header(), MemoryBuffer(BODY))
        await delivery.commit()
    except BaseException:
        await delivery.abort()
        raise


async def test_a_delivery_is_read_back_by_the_stdlib(tmp_path: Path) -> None:
    maildir = target(tmp_path)
    delivery = await maildir.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("Joe@example.org")
    await delivery.add_rcpt("ann@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    assert messages(tmp_path, "joe") == []  # nothing visible before commit
    await delivery.commit()
    for box in ("joe", "ann"):
        (msg,) = messages(tmp_path, box)
        assert msg.get_payload(decode=True) == BODY.replace(b"\r\n", b"\n")
        assert msg["From"] == "a@example.org"
        (path,) = (tmp_path / "mail" / box / "new").iterdir()
        assert path.read_bytes() == header().to_bytes() + BODY  # byte for byte on disk


async def test_the_message_is_written_once_and_linked(tmp_path: Path) -> None:
    maildir = target(tmp_path)
    delivery = await maildir.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("joe@example.org")
    await delivery.add_rcpt("ann@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.commit()
    (joe,) = (tmp_path / "mail" / "joe" / "new").iterdir()
    (ann,) = (tmp_path / "mail" / "ann" / "new").iterdir()
    assert joe.stat().st_ino == ann.stat().st_ino
    assert joe.stat().st_nlink == 2


async def test_unknown_recipients_are_refused_with_550_511(tmp_path: Path) -> None:
    delivery = await target(tmp_path).start(MsgMetadata(id="m"), "a@x")
    for rcpt in ("nobody@example.org", "evil@example.org", "not an address"):
        with pytest.raises(SMTPError) as info:
            await delivery.add_rcpt(rcpt)
        assert (info.value.code, info.value.enhanced_code) == (550, (5, 1, 1))
    await delivery.abort()
    assert not (tmp_path / "escape").exists()


async def test_recipients_with_odd_unicode_find_their_mailbox(tmp_path: Path) -> None:
    delivery = await target(tmp_path).start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("J\u00fcrgen@example.org")  # precomposed
    await delivery.add_rcpt("ju\u0308rgen@EXAMPLE.org")  # decomposed: the same mailbox
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.commit()
    assert len(messages(tmp_path, "juergen")) == 1


async def test_abort_leaves_nothing_behind(tmp_path: Path) -> None:
    delivery = await target(tmp_path).start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.abort()
    for sub in ("tmp", "new", "cur"):
        assert os.listdir(tmp_path / "mail" / "joe" / sub) == []


async def test_a_quarantined_message_goes_to_the_junk_folder(tmp_path: Path) -> None:
    meta = MsgMetadata(id="m", quarantine=True)
    delivery = await target(tmp_path).start(meta, "a@x")
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.commit()
    assert messages(tmp_path, "joe") == []
    assert len(messages(tmp_path, "joe", folder="Junk")) == 1


async def test_a_full_disk_fails_only_the_recipients_it_hits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def link(src: str, dst: str, **kwargs: int | bool) -> None:
        dst_dir = kwargs.get("dst_dir_fd")
        if dst_dir is not None and "/ann/" in os.readlink(f"/proc/self/fd/{dst_dir:d}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]  # the kwargs os.link takes

    monkeypatch.setattr(os, "link", link)
    delivery = await target(tmp_path).start(MsgMetadata(id="m"), "a@x")
    assert isinstance(delivery, PartialDelivery)
    await delivery.add_rcpt("joe@example.org")
    await delivery.add_rcpt("ann@example.org")
    statuses: dict[str, Exception | None] = {}

    class Collector:
        def set_status(self, rcpt_to: str, err: Exception | None) -> None:
            statuses[rcpt_to] = err

    await delivery.body_non_atomic(Collector(), header(), MemoryBuffer(BODY))
    await delivery.commit()
    assert list(statuses) == ["ann@example.org"]
    err = statuses["ann@example.org"]
    assert isinstance(err, SMTPError)
    assert (err.code, err.enhanced_code) == (452, (4, 3, 1))
    assert len(messages(tmp_path, "joe")) == 1
    assert messages(tmp_path, "ann") == []


async def test_a_failed_atomic_body_raises_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_space)
    delivery = await target(tmp_path).start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("joe@example.org")
    await delivery.add_rcpt("ann@example.org")
    with pytest.raises(SMTPError, match="Mail system full"):
        await delivery.body(header(), MemoryBuffer(BODY))
    with pytest.raises(SMTPError, match="Bad sequence"):
        await delivery.commit()
    await delivery.abort()
    assert os.listdir(tmp_path / "mail" / "joe" / "tmp") == []


async def test_with_autocreate_and_no_table_the_local_part_is_the_mailbox(
    tmp_path: Path,
) -> None:
    maildir = bare_target(tmp_path, autocreate=True)
    delivery = await maildir.start(MsgMetadata(id="m"), "a@x")
    await delivery.add_rcpt("Bob@Example.org")
    with pytest.raises(SMTPError):
        await delivery.add_rcpt(".hidden@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.commit()
    assert len(messages(tmp_path, "bob")) == 1


async def test_maildir_behind_a_pipeline_delivers_what_checks_and_modifiers_made(
    tmp_path: Path,
) -> None:
    registry = new_registry()
    build(
        registry,
        "table.static",
        "aliases",
        {"entries": {"team@example.org": ["joe@example.org", "ann@example.org"]}},
    )
    rewrite = build(registry, "modify.replace_rcpt", "alias", {"table": "&aliases"})
    maildir = build(
        registry, "target.maildir", "local", {"root": str(tmp_path / "mail"), "autocreate": True}
    )
    assert isinstance(maildir, MaildirTarget)
    assert isinstance(rewrite, Modifier)
    pipeline = Pipeline(modifiers=[rewrite], default=Destination(targets=[maildir]))
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("team@example.org")
    await delivery.body(header(), MemoryBuffer(BODY))
    await delivery.commit()
    assert len(messages(tmp_path, "joe")) == len(messages(tmp_path, "ann")) == 1


@pytest.mark.parametrize("umask", [0o000, 0o022])
async def test_every_directory_and_file_holding_mail_is_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    old = os.umask(umask)
    try:
        maildir = target(tmp_path)
        await deliver(maildir, "joe@example.org", "ann@example.org")
        await deliver(maildir, "joe@example.org", quarantine=True)
    finally:
        os.umask(old)
    root = tmp_path / "mail"
    seen = [root, *root.rglob("*")]
    assert len([p for p in seen if p.is_file()]) == 4  # 3 messages, 1 maildirfolder
    for path in seen:
        want = 0o700 if path.is_dir() else 0o600
        assert path.lstat().st_mode & 0o777 == want, path.relative_to(tmp_path)


@pytest.mark.parametrize("where", ["joe", "joe/new", "joe/tmp", "joe/.Junk", "joe/.Junk/new"])
async def test_a_symlink_inside_the_root_is_refused_not_followed(
    tmp_path: Path, where: str
) -> None:
    maildir = target(tmp_path)
    await deliver(maildir, "ann@example.org")  # the root exists
    outside = tmp_path / "outside"
    for sub in ("cur", "new", "tmp"):
        (outside / sub).mkdir(parents=True)
    link = tmp_path / "mail" / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if where == "joe/.Junk/new":
        for sub in ("cur", "tmp"):
            (link.parent / sub).mkdir()
    os.symlink(outside / "new" if where.endswith(("new", "tmp")) else outside, link)
    with pytest.raises(SMTPError) as info:
        await deliver(maildir, "joe@example.org", quarantine="Junk" in where)
    assert info.value.code == 451
    assert "outside" not in info.value.message
    assert "joe" not in info.value.message
    assert [p for p in outside.rglob("*") if p.is_file()] == []


async def test_without_a_table_an_unknown_local_part_creates_nothing(tmp_path: Path) -> None:
    maildir = bare_target(tmp_path)
    delivery = await maildir.start(MsgMetadata(id="m"), "a@x")
    for n in range(50):
        with pytest.raises(SMTPError) as info:
            await delivery.add_rcpt(f"user{n}@example.org")
        assert (info.value.code, info.value.enhanced_code) == (550, (5, 1, 1))
    await delivery.abort()
    assert os.listdir(tmp_path / "mail") == []


async def test_without_a_table_an_existing_maildir_receives_mail(tmp_path: Path) -> None:
    maildir = bare_target(tmp_path)
    (tmp_path / "mail" / "bob").mkdir()
    await deliver(maildir, "Bob@Example.org")
    assert len(messages(tmp_path, "bob")) == 1


async def test_a_quoted_local_part_goes_to_the_unquoted_mailbox(tmp_path: Path) -> None:
    await deliver(bare_target(tmp_path, autocreate=True), '"joe"@example.org')
    assert sorted(os.listdir(tmp_path / "mail")) == ["joe"]
    await deliver(target(tmp_path / "t"), '"ann"@example.org')
    assert len(messages(tmp_path / "t", "ann")) == 1


@pytest.mark.parametrize(
    "rcpt",
    [
        '"a/b"@example.org',
        '"../x"@example.org',
        '".."@example.org',
        '"."@example.org',
        '".hidden"@example.org',
        '"a\\\\b"@example.org',
        '"a\x00b"@example.org',
        '"a\x7fb"@example.org',
        f"{chr(0xD800)}@example.org",
        f"{'a' * 256}@example.org",
    ],
)
async def test_a_local_part_that_is_no_safe_directory_name_is_refused_with_550_513(
    tmp_path: Path, rcpt: str
) -> None:
    delivery = await bare_target(tmp_path, autocreate=True).start(MsgMetadata(id="m"), "a@x")
    with pytest.raises(SMTPError) as info:
        await delivery.add_rcpt(rcpt)
    assert (info.value.code, info.value.enhanced_code) == (550, (5, 1, 3))
    await delivery.abort()
    assert os.listdir(tmp_path / "mail") == []


@settings(max_examples=150, deadline=None)
@given(local=st.text(st.characters(exclude_categories=()), min_size=1, max_size=40))
def test_any_local_part_is_refused_or_lands_in_one_mailbox_under_the_root(local: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mail"
        maildir = bare_target(Path(tmp), autocreate=True)
        for rcpt in (f"{local}@example.org", f'"{local}"@example.org'):
            refused: SMTPError | None = None
            try:
                asyncio.run(deliver(maildir, rcpt))
            except SMTPError as exc:
                refused = exc
            assert refused is None or refused.code == 550, refused
        assert os.listdir(tmp) == ["mail"]
        for box in root.iterdir():
            assert not box.name.startswith(".")
            assert not box.is_symlink()
            assert sorted(os.listdir(box)) == ["cur", "new", "tmp"]
