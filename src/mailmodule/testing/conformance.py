"""Conformance suites: prove that a module keeps the seed's contracts.

Each suite is a base class for pytest. Subclass it in a test module and give it a fixture
that builds your module; every test of the suite then runs against it:

    from mailmodule.testing import DeliveryTargetSuite

    class TestMyTarget(DeliveryTargetSuite):
        @pytest.fixture
        def target(self, tmp_path):
            return MyTarget(tmp_path)

Tests are marked for pytest-asyncio, so they run whatever `asyncio_mode` a project uses.
A test of an optional interface (`PartialDelivery`, `MultiTable`, `MutableTable`) that the
module does not implement is skipped, and the report says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import BinaryIO, ClassVar, cast

import pytest

from mailmodule.buffer import MemoryBuffer
from mailmodule.errors import (
    AuthError,
    MailModuleError,
    NoSuchBlobError,
    StorageError,
    UnknownCredentialsError,
)
from mailmodule.header import Header
from mailmodule.interfaces import (
    UNKNOWN_BLOB_SIZE,
    Blob,
    BlobStore,
    Check,
    CheckResult,
    DeliveryTarget,
    Modifier,
    MultiTable,
    MutableTable,
    PartialDelivery,
    PlainAuth,
    Table,
)
from mailmodule.metadata import MsgMetadata

__all__ = [
    "BlobStoreSuite",
    "BrokenBuffer",
    "CheckSuite",
    "DeliveryTargetSuite",
    "ModifierSuite",
    "PlainAuthSuite",
    "TableSuite",
]

_BODY = b"Hello from the conformance suite.\r\n"


def _header() -> Header:
    return Header([("Subject", "Conformance"), ("From", "sender@example.org")])


class BrokenBuffer:
    """A body whose storage is gone: `open()` raises. A body that cannot be read must fail
    the delivery, not deliver something else."""

    def open(self) -> BinaryIO:
        raise StorageError("the body's storage is gone (conformance suite)")

    def __len__(self) -> int:
        return len(_BODY)

    def remove(self) -> None:
        pass


def _write_then_sync(blob: Blob, data: bytes) -> None:
    blob.write(data)
    blob.sync()


class _Collector:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, Exception | None]] = []

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        self.statuses.append((rcpt_to, err))


class DeliveryTargetSuite:
    """The contract of `DeliveryTarget` and its `Delivery` (and `PartialDelivery`).

    Provide a `target` fixture. Override `recipients` with addresses the target accepts
    (in the form `add_rcpt` receives: domain lower-cased), and `delivered(target)` to count
    the messages a reader of the store can see (return 0 always, with
    `stores_messages = False`, for a target that keeps nothing and need not read a body).
    """

    stores_messages: ClassVar[bool] = True
    recipients: ClassVar[tuple[str, ...]] = ("alice@example.org", "bob@example.org")

    @pytest.fixture
    def target(self) -> DeliveryTarget:
        raise NotImplementedError("define a `target` fixture that builds your module")

    def delivered(self, target: DeliveryTarget) -> int:
        """How many messages a reader of the store sees now (a message delivered to two
        mailboxes may count twice)."""
        return 0

    async def _deliver(self, target: DeliveryTarget, rcpts: list[str]) -> int:
        """Deliver one message to `rcpts`; how many more messages are visible after."""
        before = self.delivered(target)
        delivery = await target.start(self._meta(), "sender@example.org")
        for rcpt in rcpts:
            await delivery.add_rcpt(rcpt)
        await delivery.body(_header(), MemoryBuffer(_BODY))
        await delivery.commit()
        return self.delivered(target) - before

    async def _deliver_once(self, target: DeliveryTarget, rcpt: str) -> int:
        """Copies visible after delivering to `rcpt` alone; at least one for a store."""
        once = await self._deliver(target, [rcpt])
        if self.stores_messages:
            assert once > 0, f"a delivery to {rcpt!r} made nothing visible"
        return once

    def _meta(self) -> MsgMetadata:
        return MsgMetadata(id="conform", original_from="sender@example.org")

    @pytest.mark.asyncio
    async def test_it_is_a_delivery_target(self, target: DeliveryTarget) -> None:
        assert isinstance(target, DeliveryTarget)

    @pytest.mark.asyncio
    async def test_nothing_is_visible_before_commit(self, target: DeliveryTarget) -> None:
        before = self.delivered(target)
        delivery = await target.start(self._meta(), "sender@example.org")
        for rcpt in self.recipients:
            await delivery.add_rcpt(rcpt)
        await delivery.body(_header(), MemoryBuffer(_BODY))
        assert self.delivered(target) == before, "the message is visible before commit"
        await delivery.commit()
        if self.stores_messages:
            assert self.delivered(target) > before, "commit made nothing visible"
        else:
            assert self.delivered(target) == before

    @pytest.mark.asyncio
    async def test_abort_leaves_nothing(self, target: DeliveryTarget) -> None:
        before = self.delivered(target)
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        await delivery.body(_header(), MemoryBuffer(_BODY))
        await delivery.abort()
        assert self.delivered(target) == before, "abort left a message behind"

    @pytest.mark.asyncio
    async def test_abort_before_any_body_is_fine(self, target: DeliveryTarget) -> None:
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        await delivery.abort()

    @pytest.mark.asyncio
    async def test_duplicate_recipients_are_silently_ignored(self, target: DeliveryTarget) -> None:
        rcpt = self.recipients[0]
        once = await self._deliver_once(target, rcpt)
        twice = await self._deliver(target, [rcpt, rcpt])
        assert twice == once, "a duplicate recipient got a second copy"

    @pytest.mark.asyncio
    async def test_recipients_differing_only_in_case_get_one_copy(
        self, target: DeliveryTarget
    ) -> None:
        rcpt = next((r for r in self.recipients if r != r.swapcase()), None)
        if rcpt is None:
            pytest.skip("no recipient in `recipients` has a letter whose case can change")
        local, at, domain = rcpt.rpartition("@")
        variant = f"{local.swapcase()}{at}{domain}" if local else rcpt.swapcase()
        once = await self._deliver_once(target, rcpt)
        both = await self._deliver(target, [rcpt, variant])
        assert both == once, f"{rcpt!r} and {variant!r} got a copy each: case was not folded"

    @pytest.mark.asyncio
    async def test_an_unreadable_body_fails_body(self, target: DeliveryTarget) -> None:
        if not self.stores_messages:
            pytest.skip("a target that stores nothing need not read the body")
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        try:
            with pytest.raises(MailModuleError):
                await delivery.body(_header(), BrokenBuffer())
        finally:
            await delivery.abort()

    @pytest.mark.asyncio
    async def test_nothing_is_committed_after_an_unreadable_body(
        self, target: DeliveryTarget
    ) -> None:
        before = self.delivered(target)
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        try:
            await delivery.body(_header(), BrokenBuffer())
        except MailModuleError:
            with contextlib.suppress(MailModuleError):  # refused: the next test's concern
                await delivery.commit()
            await delivery.abort()
        else:
            await delivery.commit()  # a body that was not read, or swallowed
        assert self.delivered(target) == before, "a message was committed without its body"

    @pytest.mark.asyncio
    async def test_commit_after_a_failed_body_is_refused(self, target: DeliveryTarget) -> None:
        before = self.delivered(target)
        delivery = await target.start(self._meta(), "sender@example.org")
        await delivery.add_rcpt(self.recipients[0])
        try:
            await delivery.body(_header(), BrokenBuffer())
        except MailModuleError:
            pass
        else:
            await delivery.abort()
            pytest.skip("body did not fail: the target did not read it")
        try:
            with pytest.raises(MailModuleError):
                await delivery.commit()
        finally:
            await delivery.abort()
        assert self.delivered(target) == before

    @pytest.mark.asyncio
    async def test_partial_delivery_reports_each_recipient_at_most_once(
        self, target: DeliveryTarget
    ) -> None:
        delivery = await target.start(self._meta(), "sender@example.org")
        for rcpt in self.recipients:
            await delivery.add_rcpt(rcpt)
        if not isinstance(delivery, PartialDelivery):
            await delivery.abort()
            pytest.skip(f"{type(delivery).__name__} does not implement PartialDelivery")
        collector = _Collector()
        await delivery.body_non_atomic(collector, _header(), MemoryBuffer(_BODY))
        reported = [rcpt for rcpt, _ in collector.statuses]
        assert len(reported) == len(set(reported)), f"a recipient was reported twice: {reported}"
        assert set(reported) <= set(self.recipients), f"unknown recipients reported: {reported}"
        await delivery.commit()


class BlobStoreSuite:
    """The contract of `BlobStore` and `Blob`. Provide a `store` fixture (an empty store)."""

    @pytest.fixture
    def store(self) -> BlobStore:
        raise NotImplementedError("define a `store` fixture that builds your module")

    async def _read(self, store: BlobStore, key: str) -> bytes:
        reader = await store.open(key)
        try:
            return reader.read()
        finally:
            reader.close()

    @pytest.mark.asyncio
    async def test_a_missing_key_raises_no_such_blob(self, store: BlobStore) -> None:
        with pytest.raises(NoSuchBlobError):
            await store.open("never-written")

    @pytest.mark.asyncio
    async def test_a_synced_blob_reads_back(self, store: BlobStore) -> None:
        blob = await store.create("k1", len(_BODY))
        blob.write(_BODY)
        await asyncio.to_thread(blob.sync)  # the seed's sync may block: off the loop
        await asyncio.to_thread(blob.close)
        assert await self._read(store, "k1") == _BODY

    @pytest.mark.asyncio
    async def test_delete_ignores_missing_keys(self, store: BlobStore) -> None:
        await store.delete(["never-written"])

    @pytest.mark.asyncio
    async def test_close_without_sync_discards(self, store: BlobStore) -> None:
        blob = await store.create("k2", UNKNOWN_BLOB_SIZE)
        blob.write(_BODY)
        await asyncio.to_thread(blob.close)
        with pytest.raises(NoSuchBlobError):
            await store.open("k2")

    @pytest.mark.asyncio
    async def test_writing_past_the_announced_size_fails(self, store: BlobStore) -> None:
        blob = await store.create("k3", 4)
        with pytest.raises(MailModuleError):  # on write, or at the latest on sync
            await asyncio.to_thread(_write_then_sync, blob, b"five!")
        await asyncio.to_thread(blob.close)

    @pytest.mark.asyncio
    async def test_concurrent_writers_of_different_keys_do_not_interfere(
        self, store: BlobStore
    ) -> None:
        async def write(n: int) -> None:
            blob = await store.create(f"c{n}", UNKNOWN_BLOB_SIZE)
            for _ in range(5):
                blob.write(bytes([65 + n]) * 64)
                await asyncio.sleep(0)
            await asyncio.to_thread(blob.sync)
            await asyncio.to_thread(blob.close)

        await asyncio.gather(*(write(n) for n in range(8)))
        for n in range(8):
            assert await self._read(store, f"c{n}") == bytes([65 + n]) * 320


class TableSuite:
    """The contract of `Table` (and `MultiTable`, `MutableTable` when offered).

    Provide a `table` fixture and an `entries` fixture (required, not empty): keys the
    table holds, with their (first) values. Set `holds_nothing = True` instead for a table
    that finds nothing by design, such as `Dummy`.
    """

    holds_nothing: ClassVar[bool] = False

    @pytest.fixture
    def table(self) -> Table:
        raise NotImplementedError("define a `table` fixture that builds your module")

    @pytest.fixture
    def entries(self) -> dict[str, str]:
        raise NotImplementedError(
            "define an `entries` fixture: keys your table holds, with their (first) values"
        )

    def _entries(self, request: pytest.FixtureRequest) -> dict[str, str]:
        """The `entries` fixture, checked: a dict of keys to values, not empty."""
        if self.holds_nothing:
            return {}
        entries: object = request.getfixturevalue("entries")
        if not isinstance(entries, dict) or not entries:
            pytest.fail(
                f"`entries` is empty or not a dict ({entries!r}): give keys your table holds, "
                "or set `holds_nothing = True` for a table that finds nothing by design",
                pytrace=False,
            )
        return cast("dict[str, str]", entries)

    @pytest.mark.asyncio
    async def test_a_missing_key_is_none(self, table: Table) -> None:
        assert await table.lookup("no-such-key-in-any-table") is None

    @pytest.mark.asyncio
    async def test_known_keys_give_their_values(
        self, table: Table, request: pytest.FixtureRequest
    ) -> None:
        if self.holds_nothing:
            pytest.skip(f"{type(table).__name__} holds nothing by design")
        for key, value in self._entries(request).items():
            assert await table.lookup(key) == value, f"lookup({key!r})"

    @pytest.mark.asyncio
    async def test_lookup_multi_agrees_with_lookup(
        self, table: Table, request: pytest.FixtureRequest
    ) -> None:
        if not isinstance(table, MultiTable):
            pytest.skip(f"{type(table).__name__} does not implement MultiTable")
        assert await table.lookup_multi("no-such-key-in-any-table") == []
        for key in self._entries(request):
            values = await table.lookup_multi(key)
            assert values, f"lookup_multi({key!r}) found nothing that lookup found"
            assert await table.lookup(key) in values

    @pytest.mark.asyncio
    async def test_set_then_lookup_gives_the_value(self, table: Table) -> None:
        if not isinstance(table, MutableTable):
            pytest.skip(f"{type(table).__name__} does not implement MutableTable")
        table.set_key("conformance-key", "conformance-value")
        assert await table.lookup("conformance-key") == "conformance-value"
        assert "conformance-key" in table.keys()  # noqa: SIM118  # a MutableTable, not a dict
        table.remove_key("conformance-key")
        assert await table.lookup("conformance-key") is None
        table.remove_key("conformance-key")  # removing a missing key is not an error


class CheckSuite:
    """The contract of `Check` and `CheckState`. Provide a `check` fixture."""

    @pytest.fixture
    def check(self) -> Check:
        raise NotImplementedError("define a `check` fixture that builds your module")

    @pytest.mark.asyncio
    async def test_states_are_hashable(self, check: Check) -> None:
        one = await check.check_state_for_msg(MsgMetadata(id="a"))
        two = await check.check_state_for_msg(MsgMetadata(id="b"))
        try:
            states = {one, two}
            assert one in states, "a state is not found by its own hash"
            assert two in states, "a state is not found by its own hash"
            # The same state may be shared, but two different states must stay apart.
            assert len(states) == (1 if two is one else 2), "two different states are equal"
        finally:
            one.close()
            if two is not one:
                two.close()

    @pytest.mark.asyncio
    async def test_every_stage_runs_in_order_and_returns_a_check_result(self, check: Check) -> None:
        state = await check.check_state_for_msg(MsgMetadata(id="c"))
        try:
            for result in (
                await state.check_connection(),
                await state.check_sender("sender@example.org"),
                await state.check_rcpt("rcpt@example.org"),
                await state.check_body(_header(), MemoryBuffer(_BODY)),
            ):
                assert isinstance(result, CheckResult)
                if result.reject:
                    assert result.reason is None or isinstance(result.reason, MailModuleError)
        finally:
            state.close()

    @pytest.mark.asyncio
    async def test_close_works_after_any_failure(self, check: Check) -> None:
        state = await check.check_state_for_msg(MsgMetadata(id="d"))
        await state.check_connection()
        with contextlib.suppress(MailModuleError):  # a check may raise on this body
            await state.check_body(_header(), BrokenBuffer())
        state.close()


class ModifierSuite:
    """The contract of `Modifier` and `ModifierState`. Provide a `modifier` fixture;
    override `samples` with addresses worth rewriting."""

    samples: ClassVar[tuple[str, ...]] = ("alice@example.org", "postmaster", "bob@example.net")

    @pytest.fixture
    def modifier(self) -> Modifier:
        raise NotImplementedError("define a `modifier` fixture that builds your module")

    @pytest.mark.asyncio
    async def test_calls_in_order_return_what_the_contract_says(self, modifier: Modifier) -> None:
        state = await modifier.mod_state_for_msg(MsgMetadata(id="m"))
        try:
            sender = await state.rewrite_sender("sender@example.org")
            assert isinstance(sender, str)
            for rcpt in self.samples:
                rewritten = await state.rewrite_rcpt(rcpt)
                assert isinstance(rewritten, list)
                assert rewritten, f"rewrite_rcpt({rcpt!r}) returned no recipient"
                assert all(isinstance(r, str) and r for r in rewritten)
            header = _header()
            before = [f.raw for f in header]
            await state.rewrite_body(header, MemoryBuffer(_BODY))
            after = [f.raw for f in header]
            assert after[len(after) - len(before) :] == before, "existing fields were changed"
        finally:
            state.close()


class PlainAuthSuite:
    """The contract of `PlainAuth`. Provide an `auth` fixture and a `credentials` fixture
    (a username and password it accepts). Set `accepts_everyone = True` for a module that
    accepts any credentials by design, such as `Dummy`."""

    accepts_everyone: ClassVar[bool] = False

    @pytest.fixture
    def auth(self) -> PlainAuth:
        raise NotImplementedError("define an `auth` fixture that builds your module")

    @pytest.fixture
    def credentials(self) -> tuple[str, str]:
        raise NotImplementedError("define a `credentials` fixture: (username, password)")

    def test_the_right_password_is_accepted(
        self, auth: PlainAuth, credentials: tuple[str, str]
    ) -> None:
        auth.auth_plain(*credentials)

    def test_a_wrong_password_fails_with_an_auth_error(
        self, auth: PlainAuth, credentials: tuple[str, str]
    ) -> None:
        username, password = credentials
        if self.accepts_everyone:
            auth.auth_plain(username, password + "-wrong")
            return
        with pytest.raises(AuthError) as info:
            auth.auth_plain(username, password + "-wrong")
        assert not isinstance(info.value, UnknownCredentialsError)
        assert password not in str(info.value)

    def test_an_unknown_user_fails_with_unknown_credentials(self, auth: PlainAuth) -> None:
        if self.accepts_everyone:
            auth.auth_plain("no-such-user@example.invalid", "x")
            return
        with pytest.raises(UnknownCredentialsError):
            auth.auth_plain("no-such-user@example.invalid", "x")
