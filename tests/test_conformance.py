"""The conformance suites pass for Dummy and every reference module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mailmodule import (
    BlobStore,
    Check,
    DeliveryTarget,
    Dummy,
    Modifier,
    PlainAuth,
    Registry,
    Table,
)
from mailmodule.modules import FSBlobStore, MaildirTarget, PassTable
from mailmodule.testing import (
    BlobStoreSuite,
    CheckSuite,
    DeliveryTargetSuite,
    ModifierSuite,
    PlainAuthSuite,
    TableSuite,
)
from tests.modules_kit import build


class TestDummyDelivers(DeliveryTargetSuite):
    stores_messages = False

    @pytest.fixture
    def target(self, dummy: Dummy) -> DeliveryTarget:
        return dummy


class TestDummyTable(TableSuite):
    holds_nothing = True

    @pytest.fixture
    def table(self, dummy: Dummy) -> Table:
        return dummy


class TestDummyAuth(PlainAuthSuite):
    accepts_everyone = True

    @pytest.fixture
    def auth(self, dummy: Dummy) -> PlainAuth:
        return dummy

    @pytest.fixture
    def credentials(self) -> tuple[str, str]:
        return ("anyone", "anything")


class TestMaildir(DeliveryTargetSuite):
    recipients = ("alice@example.org", "bob@example.org")

    @pytest.fixture
    def target(self, mailmodule_registry: Registry, tmp_path: Path) -> DeliveryTarget:
        built = build(
            mailmodule_registry,
            "target.maildir",
            "local",
            {"root": str(tmp_path), "autocreate": True},
        )
        assert isinstance(built, MaildirTarget)
        return built

    def delivered(self, target: DeliveryTarget) -> int:
        assert isinstance(target, MaildirTarget)
        root = Path(target.root)
        return sum(
            len(list((root / box / "new").iterdir()))
            for box in ("alice", "bob")
            if (root / box).exists()
        )


class TestFSBlobStore(BlobStoreSuite):
    @pytest.fixture
    def store(self, mailmodule_registry: Registry, tmp_path: Path) -> BlobStore:
        built = build(mailmodule_registry, "storage.blob.fs", "blobs", {"root": str(tmp_path)})
        assert isinstance(built, FSBlobStore)
        return built


class TestMemoryBlobStore(BlobStoreSuite):
    @pytest.fixture
    def store(self, mailmodule_registry: Registry) -> BlobStore:
        built = build(mailmodule_registry, "storage.blob.memory", "blobs", {})
        assert isinstance(built, BlobStore)
        return built


class TestStaticTable(TableSuite):
    @pytest.fixture
    def table(self, mailmodule_registry: Registry) -> Table:
        settings = {"entries": {"a@example.org": ["x", "y"], "b": "z"}}
        built = build(mailmodule_registry, "table.static", "t", settings)
        assert isinstance(built, Table)
        return built

    @pytest.fixture
    def entries(self) -> dict[str, str]:
        return {"a@example.org": "x", "b": "z"}


class TestFileTable(TableSuite):
    @pytest.fixture
    def table(self, mailmodule_registry: Registry, tmp_path: Path) -> Table:
        (tmp_path / "t").write_text("a@example.org: x, y\nb: z\n")
        built = build(mailmodule_registry, "table.file", "t", {"file": str(tmp_path / "t")})
        assert isinstance(built, Table)
        return built

    @pytest.fixture
    def entries(self) -> dict[str, str]:
        return {"a@example.org": "x", "b": "z"}


class TestSQLTable(TableSuite):
    @pytest.fixture
    def table(self, mailmodule_registry: Registry, tmp_path: Path) -> Table:
        settings = {
            "dsn": str(tmp_path / "t.db"),
            "init": [
                "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)",
                "INSERT INTO t VALUES ('b', 'z')",
            ],
            "lookup": "SELECT v FROM t WHERE k = :key",
            "list": "SELECT k FROM t",
            "set": "INSERT OR REPLACE INTO t VALUES (:key, :value)",
            "del": "DELETE FROM t WHERE k = :key",
        }
        built = build(mailmodule_registry, "table.sql", "t", settings)
        assert isinstance(built, Table)
        return built

    @pytest.fixture
    def entries(self) -> dict[str, str]:
        return {"b": "z"}


class TestPassTable(PlainAuthSuite):
    @pytest.fixture
    def auth(self, mailmodule_registry: Registry, tmp_path: Path) -> PlainAuth:
        (tmp_path / "users").write_text("")
        build(mailmodule_registry, "table.file", "users", {"file": str(tmp_path / "users")})
        built = build(mailmodule_registry, "auth.pass_table", "auth", {"table": "&users"})
        assert isinstance(built, PassTable)
        built.create_user("joe@example.org", "correct horse")
        return built

    @pytest.fixture
    def credentials(self) -> tuple[str, str]:
        return ("joe@example.org", "correct horse")


class TestCommandCheck(CheckSuite):
    @pytest.fixture
    def check(self, mailmodule_registry: Registry) -> Check:
        settings = {"command": [sys.executable, "-c", "import sys; sys.stdin.read()"]}
        built = build(mailmodule_registry, "check.command", "cmd", settings)
        assert isinstance(built, Check)
        return built


class TestAuthorizeSender(CheckSuite):
    @pytest.fixture
    def check(self, mailmodule_registry: Registry) -> Check:
        built = build(mailmodule_registry, "check.authorize_sender", "auth_sender", {})
        assert isinstance(built, Check)
        return built


class TestReplaceRcpt(ModifierSuite):
    @pytest.fixture
    def modifier(self, mailmodule_registry: Registry) -> Modifier:
        build(
            mailmodule_registry,
            "table.static",
            "aliases",
            {"entries": {"alice@example.org": ["a1@x", "a2@x"]}},
        )
        built = build(mailmodule_registry, "modify.replace_rcpt", "rw", {"table": "&aliases"})
        assert isinstance(built, Modifier)
        return built


class TestReplaceSender(ModifierSuite):
    @pytest.fixture
    def modifier(self, mailmodule_registry: Registry) -> Modifier:
        build(mailmodule_registry, "table.static", "aliases", {"entries": {}})
        built = build(mailmodule_registry, "modify.replace_sender", "rw", {"table": "&aliases"})
        assert isinstance(built, Modifier)
        return built
