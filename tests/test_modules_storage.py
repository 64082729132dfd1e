from __future__ import annotations

import asyncio
import contextlib
import mailbox
import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmodule import Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.errors import (
    ConfigError,
    InvalidNameError,
    MailboxExistsError,
    ModuleInitError,
    NoSuchMailboxError,
    StorageError,
    UnsafePathError,
)
from mailmodule.interfaces import (
    IMAPMailbox,
    IMAPUser,
    MailboxInfo,
    ManageableStorage,
    Storage,
)
from mailmodule.modules import MaildirTarget
from mailmodule.modules.storage import MaildirStorage, MaildirUser, _utf7
from mailmodule.modules.storage.maildir import (
    check_folder_name,
    check_username,
    flags_of_info,
    info_of_flags,
)
from tests.modules_kit import build, new_registry

MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def storage(root: Path) -> MaildirStorage:
    built = build(new_registry(), "storage.maildir", "mail", {"root": str(root)})
    assert isinstance(built, MaildirStorage)
    return built


def user(tmp_path: Path, name: str = "joe") -> MaildirUser:
    return storage(tmp_path / "mail").get_or_create_imap_acct(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def names(infos: list[MailboxInfo]) -> list[str]:
    return [i.name for i in infos]


# The storage and its users.


def test_storage_maildir_is_a_manageable_storage(tmp_path: Path) -> None:
    built = storage(tmp_path / "mail")
    assert isinstance(built, Storage)
    assert isinstance(built, ManageableStorage)
    assert isinstance(built.get_or_create_imap_acct("joe"), IMAPUser)


def test_a_storage_without_root_is_refused() -> None:
    with pytest.raises(ModuleInitError) as info:
        build(new_registry(), "storage.maildir", "mail", {})
    assert isinstance(info.value.__cause__, ConfigError)


def test_users_are_created_listed_and_deleted(tmp_path: Path) -> None:
    mail = storage(tmp_path / "mail")
    mail.create_imap_acct("joe")
    mail.create_imap_acct("ann")
    assert mail.list_imap_accts() == ["ann", "joe"]
    mail.delete_imap_acct("joe")
    assert mail.list_imap_accts() == ["ann"]
    assert sorted(os.listdir(tmp_path / "mail")) == ["ann"]


def test_a_user_maildir_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        mail = storage(tmp_path / "mail")
        mail.create_imap_acct("joe")
    finally:
        os.umask(old)
    joe = tmp_path / "mail" / "joe"
    assert mode(tmp_path / "mail") == 0o700
    assert [mode(joe / sub) for sub in ("", "cur", "new", "tmp")] == [0o700] * 4


def test_creating_an_existing_user_is_refused(tmp_path: Path) -> None:
    mail = storage(tmp_path / "mail")
    mail.create_imap_acct("joe")
    with pytest.raises(MailboxExistsError) as info:
        mail.create_imap_acct("joe")
    assert (info.value.kind, info.value.name) == ("user", "joe")


def test_an_unknown_user_is_not_found(tmp_path: Path) -> None:
    mail = storage(tmp_path / "mail")
    with pytest.raises(NoSuchMailboxError):
        mail.get_imap_acct("joe")
    with pytest.raises(NoSuchMailboxError):
        mail.delete_imap_acct("joe")


def test_get_or_create_gives_the_same_account(tmp_path: Path) -> None:
    mail = storage(tmp_path / "mail")
    first = mail.get_or_create_imap_acct("joe")
    second = mail.get_or_create_imap_acct("joe")
    assert first.path == second.path == mail.get_imap_acct("joe").path


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "a\0b", "tab\there", "x" * 256, "\udc80"]
)
def test_unsafe_user_names_are_refused(tmp_path: Path, name: str) -> None:
    mail = storage(tmp_path / "mail")
    with pytest.raises(InvalidNameError) as info:
        mail.create_imap_acct(name)
    assert info.value.kind == "user"
    assert os.listdir(tmp_path / "mail") == []


def test_a_user_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    mail = storage(tmp_path / "mail")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "mail" / "joe").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError):
        mail.get_imap_acct("joe")
    with pytest.raises(UnsafePathError):
        mail.create_imap_acct("joe")
    assert mail.list_imap_accts() == []


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=40))
def test_any_user_name_is_refused_or_round_trips(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    mail = storage(tmp_path_factory.mktemp("mail"))
    refused: InvalidNameError | None = None
    try:
        mail.create_imap_acct(name)
    except InvalidNameError as exc:
        refused = exc
    if refused is not None:
        assert refused.kind == "user"
        assert mail.list_imap_accts() == []
        return
    assert mail.list_imap_accts() == [name]
    assert mail.get_imap_acct(name).username() == name
    mail.delete_imap_acct(name)
    assert mail.list_imap_accts() == []


# Folders.


async def test_a_new_user_has_only_inbox(tmp_path: Path) -> None:
    joe = user(tmp_path)
    assert await joe.list_mailboxes() == [
        MailboxInfo(name="INBOX", attributes=frozenset({"\\HasNoChildren"}))
    ]


async def test_folders_are_dovecot_maildirpp_directories(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("Archive.2024")
    await joe.create_mailbox("Entwürfe")
    root = tmp_path / "mail" / "joe"
    assert sorted(p.name for p in root.iterdir()) == [
        ".Archive",
        ".Archive.2024",
        ".Entw&APw-rfe",
        "cur",
        "new",
        "tmp",
    ]
    for folder in (".Archive", ".Archive.2024", ".Entw&APw-rfe"):
        assert mode(root / folder) == 0o700
        assert mode(root / folder / "maildirfolder") == 0o600
        assert all((root / folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    # The stdlib reads Maildir++ folders the same way.
    assert sorted(mailbox.Maildir(str(root)).list_folders()) == [
        "Archive",
        "Archive.2024",
        "Entw&APw-rfe",
    ]


async def test_folders_are_listed_with_their_hierarchy(tmp_path: Path) -> None:
    joe = user(tmp_path)
    for name in ("Work.Projects", "Work", "Archive", "Work.Old.Deep"):
        with pytest.raises(MailboxExistsError) if name == "Work" else contextlib.nullcontext():
            await joe.create_mailbox(name)
    listed = await joe.list_mailboxes()
    assert names(listed) == [
        "INBOX",
        "Archive",
        "Work",
        "Work.Old",
        "Work.Old.Deep",
        "Work.Projects",
    ]
    attrs = {i.name: i.attributes for i in listed}
    assert attrs["Work"] == {"\\HasChildren"}
    assert attrs["Archive"] == {"\\HasNoChildren"}
    assert all(i.delimiter == "." for i in listed)


async def test_deleting_a_folder_keeps_its_children_under_a_noselect_parent(
    tmp_path: Path,
) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("Work.Projects")
    await joe.delete_mailbox("Work")
    attrs = {i.name: i.attributes for i in await joe.list_mailboxes()}
    assert attrs["Work"] == {"\\HasChildren", "\\Noselect"}
    assert "Work.Projects" in attrs
    assert sorted(os.listdir(tmp_path / "mail" / "joe")) == [".Work.Projects", "cur", "new", "tmp"]
    with pytest.raises(NoSuchMailboxError):
        await joe.get_mailbox("Work")


async def test_inbox_cannot_be_deleted_renamed_or_created(tmp_path: Path) -> None:
    joe = user(tmp_path)
    with pytest.raises(InvalidNameError):
        await joe.delete_mailbox("inbox")
    with pytest.raises(InvalidNameError):
        await joe.rename_mailbox("INBOX", "Old")
    with pytest.raises(MailboxExistsError):
        await joe.create_mailbox("Inbox")
    assert (await joe.get_mailbox("inbox")).name() == "INBOX"


async def test_renaming_a_folder_moves_its_children(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("Work.Projects.Big")
    box = await joe.get_mailbox("Work.Projects")
    key = await box.append_message(MESSAGE, ["\\Seen"])
    await joe.rename_mailbox("Work", "Old.Jobs")
    assert names(await joe.list_mailboxes()) == [
        "INBOX",
        "Old",
        "Old.Jobs",
        "Old.Jobs.Projects",
        "Old.Jobs.Projects.Big",
    ]
    moved = await joe.get_mailbox("Old.Jobs.Projects")
    assert await moved.read_message(key) == MESSAGE


async def test_renaming_onto_an_existing_folder_changes_nothing(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("A.Child")
    await joe.create_mailbox("B.Child")
    with pytest.raises(MailboxExistsError):
        await joe.rename_mailbox("A", "B")
    assert names(await joe.list_mailboxes()) == ["INBOX", "A", "A.Child", "B", "B.Child"]


async def test_renaming_into_itself_or_a_missing_folder_is_refused(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("A")
    with pytest.raises(InvalidNameError):
        await joe.rename_mailbox("A", "A.B")
    with pytest.raises(NoSuchMailboxError):
        await joe.rename_mailbox("Missing", "B")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",
        "../etc",
        "a..b",
        ".hidden",
        "trailing.",
        "a\0b",
        "tab\tname",
        "wild*",
        "wild%",
        "INBOX.Sub",
        "\udc80",
        "x" * 300,
    ],
)
async def test_unsafe_folder_names_are_refused(tmp_path: Path, name: str) -> None:
    joe = user(tmp_path)
    before = sorted(os.listdir(joe.path))
    with pytest.raises(InvalidNameError) as info:
        await joe.create_mailbox(name)
    assert info.value.kind == "folder"
    assert sorted(os.listdir(joe.path)) == before


@settings(max_examples=300)
@given(name=st.text(max_size=30))
def test_any_folder_name_is_refused_or_maps_into_the_users_maildir(name: str) -> None:
    try:
        dirname = check_folder_name(name)
    except InvalidNameError as exc:
        refused = exc
        assert refused.kind == "folder"
        return
    if name.upper() == "INBOX":
        assert dirname == ""
        return
    assert dirname.startswith(".")
    assert not dirname.startswith("..")
    assert "/" not in dirname
    assert "\0" not in dirname
    assert os.path.normpath(os.path.join("/u", dirname)) == f"/u/{dirname}"
    assert _utf7.decode(dirname[1:]) == name


@given(name=st.text())
def test_modified_utf7_round_trips(name: str) -> None:
    try:
        encoded = _utf7.encode(name)
    except UnicodeEncodeError:
        return  # lone surrogates: refused by the name checks first
    assert encoded.isascii()
    assert _utf7.decode(encoded) == name


@pytest.mark.parametrize("text", ["&", "&Jjo", "&AGE-", "&AGEAZQ-&AGE-", "caf\xe9", "&Jjo!-"])
def test_non_canonical_modified_utf7_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="modified UTF-7"):
        _utf7.decode(text)


def test_modified_utf7_matches_rfc_3501() -> None:
    assert _utf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert _utf7.encode("a&b") == "a&-b"


async def test_a_folder_that_is_a_symlink_is_refused_and_not_listed(tmp_path: Path) -> None:
    joe = user(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", os.path.join(joe.path, ".Evil"))
    with pytest.raises(UnsafePathError):
        await joe.get_mailbox("Evil")
    with pytest.raises(UnsafePathError):
        await joe.create_mailbox("Evil")
    assert names(await joe.list_mailboxes()) == ["INBOX"]


async def test_dovecot_files_and_foreign_entries_are_left_alone(tmp_path: Path) -> None:
    joe = user(tmp_path)
    root = Path(joe.path)
    (root / "dovecot-uidlist").write_text("3 V1 N1\n")
    (root / "dovecot-keywords").write_text("0 $Label1\n")
    (root / "..DOVECOT-TRASHED").mkdir()
    (root / ".&bad").mkdir()
    await joe.create_mailbox("A")
    await joe.rename_mailbox("A", "B")
    await joe.delete_mailbox("B")
    assert names(await joe.list_mailboxes()) == ["INBOX"]
    assert (root / "dovecot-uidlist").read_text() == "3 V1 N1\n"
    assert (root / "dovecot-keywords").read_text() == "0 $Label1\n"


# Messages and flags.


def test_flags_are_maildir_letters_in_ascii_order() -> None:
    every = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
    assert info_of_flags(every) == "DFRST"
    assert info_of_flags(["\\seen", "\\SEEN"]) == "S"
    assert flags_of_info("DFPRST") == frozenset(every)
    with pytest.raises(InvalidNameError):
        info_of_flags(["$Label1"])


async def test_appended_mail_without_flags_is_new(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    key = await inbox.append_message(MESSAGE)
    path = tmp_path / "mail" / "joe" / "new" / key
    assert path.read_bytes() == MESSAGE
    assert mode(path) == 0o600
    (info,) = await inbox.list_messages()
    assert (info.key, info.flags, info.size) == (key, frozenset(), len(MESSAGE))
    assert os.listdir(tmp_path / "mail" / "joe" / "tmp") == []


async def test_appended_mail_with_flags_is_in_cur_with_its_info(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("Sent")
    sent = await joe.get_mailbox("Sent")
    key = await sent.append_message(MESSAGE, ["\\Seen", "\\Answered"], date=1_700_000_000.0)
    path = Path(sent.path) / "cur" / f"{key}:2,RS"
    assert path.read_bytes() == MESSAGE
    (info,) = await sent.list_messages()
    assert info.flags == {"\\Seen", "\\Answered"}
    assert info.internal_date == 1_700_000_000.0
    assert await sent.read_message(key) == MESSAGE


async def test_setting_flags_moves_new_mail_to_cur_and_renames_it(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    key = await inbox.append_message(MESSAGE)
    await inbox.set_message_flags(key, ["\\Flagged", "\\Seen"])
    assert os.listdir(Path(inbox.path) / "cur") == [f"{key}:2,FS"]
    assert os.listdir(Path(inbox.path) / "new") == []
    await inbox.set_message_flags(key, ["\\Draft"])
    assert os.listdir(Path(inbox.path) / "cur") == [f"{key}:2,D"]
    (info,) = await inbox.list_messages()
    assert info.flags == {"\\Draft"}
    assert await inbox.read_message(key) == MESSAGE


async def test_setting_flags_keeps_letters_it_does_not_own(tmp_path: Path) -> None:
    """Dovecot's keyword letters (a-z) and P survive a flag change."""
    inbox = await user(tmp_path).get_mailbox("INBOX")
    cur = Path(inbox.path) / "cur"
    (cur / "1.M1P1.host:2,PSab").write_bytes(MESSAGE)
    await inbox.set_message_flags("1.M1P1.host", ["\\Deleted"])
    assert os.listdir(cur) == ["1.M1P1.host:2,PTab"]


async def test_expunge_removes_only_deleted_mail(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    keep = await inbox.append_message(MESSAGE, ["\\Seen"])
    gone = await inbox.append_message(MESSAGE, ["\\Deleted", "\\Seen"])
    fresh = await inbox.append_message(MESSAGE)
    assert await inbox.expunge() == [gone]
    assert sorted(m.key for m in await inbox.list_messages()) == sorted([keep, fresh])


async def test_unknown_and_malformed_message_keys_are_refused(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    with pytest.raises(NoSuchMailboxError):
        await inbox.read_message("1.M1P1.host")
    for key in ("", "../x", "a/b", ".hidden", "k:2,S", "a\0b"):
        with pytest.raises(InvalidNameError):
            await inbox.read_message(key)


async def test_keywords_are_refused_when_appending(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    with pytest.raises(InvalidNameError) as info:
        await inbox.append_message(MESSAGE, ["$Label1"])
    assert info.value.kind == "flag"
    assert await inbox.list_messages() == []


async def test_a_message_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    os.symlink(secret, Path(inbox.path) / "cur" / "1.M1P1.host:2,S")
    with pytest.raises(UnsafePathError):
        await inbox.read_message("1.M1P1.host")
    with pytest.raises(UnsafePathError):
        await inbox.set_message_flags("1.M1P1.host", [])
    assert await inbox.list_messages() == []


async def test_a_deleted_folder_is_no_longer_usable(tmp_path: Path) -> None:
    joe = user(tmp_path)
    await joe.create_mailbox("Old")
    box = await joe.get_mailbox("Old")
    await joe.delete_mailbox("Old")
    with pytest.raises(NoSuchMailboxError):
        await box.list_messages()


async def test_concurrent_appends_all_land(tmp_path: Path) -> None:
    inbox = await user(tmp_path).get_mailbox("INBOX")
    keys = await asyncio.gather(*(inbox.append_message(MESSAGE) for _ in range(20)))
    assert len(set(keys)) == 20
    assert len(await inbox.list_messages()) == 20


def test_an_uninitialized_storage_refuses_to_work() -> None:
    with pytest.raises(StorageError):
        MaildirStorage().list_imap_accts()


async def test_a_folder_is_an_imap_mailbox(tmp_path: Path) -> None:
    assert check_username("joe") == "joe"
    assert isinstance(await user(tmp_path).get_mailbox("INBOX"), IMAPMailbox)


# target.maildir delivering into the storage.


def delivering(tmp_path: Path, **settings: object) -> tuple[MaildirStorage, MaildirTarget]:
    registry = new_registry()
    mail = build(registry, "storage.maildir", "mail", {"root": str(tmp_path / "mail")})
    assert isinstance(mail, MaildirStorage)
    for name in ("joe", "ann"):
        mail.create_imap_acct(name)
    target = build(registry, "target.maildir", "local", {"storage": "&mail", **settings})
    assert isinstance(target, MaildirTarget)
    return mail, target


async def deliver(target: MaildirTarget, *rcpts: str, quarantine: bool = False) -> None:
    delivery = await target.start(MsgMetadata(id="m", quarantine=quarantine), "a@example.org")
    for rcpt in rcpts:
        await delivery.add_rcpt(rcpt)
    await delivery.body(Header([("Subject", "Hi")]), MemoryBuffer(b"Hello.\r\n"))
    await delivery.commit()


async def test_the_target_delivers_into_the_storages_inbox(tmp_path: Path) -> None:
    mail, target = delivering(tmp_path)
    await deliver(target, "joe@example.org", "ann@example.org")
    for name in ("joe", "ann"):
        inbox = await mail.get_imap_acct(name).get_mailbox("INBOX")
        (info,) = await inbox.list_messages()
        assert info.flags == frozenset()
        assert await inbox.read_message(info.key) == b"Subject: Hi\r\n\r\nHello.\r\n"


async def test_quarantined_mail_goes_to_the_junk_folder_unfiltered(tmp_path: Path) -> None:
    prog = tmp_path / "filter"
    prog.write_text(f"#!{sys.executable}\nopen({str(tmp_path / 'ran')!r}, 'w')\n")
    prog.chmod(0o700)
    mail, target = delivering_with_filter(tmp_path, [str(prog)])
    await deliver(target, "joe@example.org", quarantine=True)
    joe = mail.get_imap_acct("joe")
    assert "Junk" in names(await joe.list_mailboxes())
    assert len(await (await joe.get_mailbox("Junk")).list_messages()) == 1
    assert not (tmp_path / "ran").exists()


def delivering_with_filter(
    tmp_path: Path, command: list[str]
) -> tuple[MaildirStorage, MaildirTarget]:
    registry = new_registry()
    mail = build(registry, "storage.maildir", "mail", {"root": str(tmp_path / "mail")})
    assert isinstance(mail, MaildirStorage)
    mail.create_imap_acct("joe")
    build(registry, "imap.filter.command", "sieve", {"command": command})
    target = build(
        registry, "target.maildir", "local", {"storage": "&mail", "imap_filter": "&sieve"}
    )
    assert isinstance(target, MaildirTarget)
    return mail, target


def filter_script(tmp_path: Path, output: str) -> list[str]:
    prog = tmp_path / "filter"
    prog.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({output!r})\n")
    prog.chmod(0o700)
    return [str(prog), "{account_name}"]


async def test_an_imap_filter_chooses_the_folder_and_the_flags(tmp_path: Path) -> None:
    mail, target = delivering_with_filter(
        tmp_path, filter_script(tmp_path, "Lists.Python\n\\Seen\n\\Flagged\n$Label1\n")
    )
    joe = mail.get_imap_acct("joe")
    await joe.create_mailbox("Lists.Python")
    await deliver(target, "joe@example.org")
    box = await joe.get_mailbox("Lists.Python")
    (info,) = await box.list_messages()
    assert info.flags == {"\\Seen", "\\Flagged"}  # the keyword is dropped
    assert os.listdir(Path(box.path) / "cur") == [f"{info.key}:2,FS"]
    assert await (await joe.get_mailbox("INBOX")).list_messages() == []


async def test_a_folder_the_filter_chose_that_does_not_exist_means_inbox(tmp_path: Path) -> None:
    mail, target = delivering_with_filter(tmp_path, filter_script(tmp_path, "Nowhere\n\\Seen\n"))
    await deliver(target, "joe@example.org")
    joe = mail.get_imap_acct("joe")
    assert names(await joe.list_mailboxes()) == ["INBOX"]
    (info,) = await (await joe.get_mailbox("INBOX")).list_messages()
    assert info.flags == {"\\Seen"}


async def test_an_unsafe_folder_from_the_filter_means_inbox(tmp_path: Path) -> None:
    mail, target = delivering_with_filter(tmp_path, filter_script(tmp_path, "../../etc\n"))
    await deliver(target, "joe@example.org")
    joe = mail.get_imap_acct("joe")
    assert len(await (await joe.get_mailbox("INBOX")).list_messages()) == 1
    assert sorted(os.listdir(tmp_path / "mail")) == ["joe"]


async def test_a_failing_filter_means_inbox_without_flags(tmp_path: Path) -> None:
    mail, target = delivering_with_filter(tmp_path, ["false"])
    await deliver(target, "joe@example.org")
    (info,) = await (await mail.get_imap_acct("joe").get_mailbox("INBOX")).list_messages()
    assert info.flags == frozenset()


async def test_the_target_refuses_users_the_storage_does_not_have(tmp_path: Path) -> None:
    _mail, target = delivering(tmp_path)
    delivery = await target.start(MsgMetadata(id="m"), "a@example.org")
    with pytest.raises(SMTPError) as info:
        await delivery.add_rcpt("nobody@example.org")
    assert info.value.code == 550
    await delivery.abort()


def test_the_target_takes_root_or_storage_not_both(tmp_path: Path) -> None:
    registry = new_registry()
    build(registry, "storage.maildir", "mail", {"root": str(tmp_path / "mail")})
    with pytest.raises(ModuleInitError, match="not both"):
        build(registry, "target.maildir", "t", {"storage": "&mail", "root": str(tmp_path / "x")})


def test_an_imap_filter_without_storage_is_refused(tmp_path: Path) -> None:
    registry = new_registry()
    build(registry, "imap.filter.command", "sieve", {"command": ["true"]})
    with pytest.raises(ModuleInitError, match="needs a storage"):
        build(registry, "target.maildir", "t", {"root": str(tmp_path), "imap_filter": "&sieve"})
