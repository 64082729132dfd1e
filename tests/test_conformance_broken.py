"""The kit can fail: each broken rule makes its conformance test fail."""

from __future__ import annotations

import pytest

BROKEN = '''
import asyncio, io
import pytest
from mailmodule import AuthError, CheckResult, Header, NoSuchBlobError, StorageError, UnknownCredentialsError
from mailmodule.testing import (
    BlobStoreSuite, CheckSuite, DeliveryTargetSuite, ModifierSuite, PlainAuthSuite, TableSuite,
)


class Store:
    """A target whose deliveries can break one rule each."""

    def __init__(self, broken):
        self.broken, self.visible = broken, 0

    async def start(self, meta, mail_from):
        return Delivery(self)


class Delivery:
    def __init__(self, store):
        self.store, self.rcpts, self.staged, self.failed = store, [], 0, False

    async def add_rcpt(self, rcpt):
        if self.store.broken != "case-kept":
            rcpt = rcpt.lower()
        self.rcpts.append(rcpt)  # duplicates kept: broken unless ignored below

    async def body(self, header, body):
        try:
            body.open().read()
        except StorageError:
            if self.store.broken != "swallows-unreadable-body":
                self.failed = True
                raise
        copies = len(self.rcpts) if self.store.broken == "duplicates" else len(set(self.rcpts))
        if self.store.broken == "visible-before-commit":
            self.store.visible += copies
        else:
            self.staged = copies

    async def body_non_atomic(self, c, header, body):
        await self.body(header, body)
        if self.store.broken == "partial-twice":
            c.set_status(self.rcpts[0], StorageError("x"))
            c.set_status(self.rcpts[0], StorageError("x"))

    async def commit(self):
        if self.failed and self.store.broken != "commit-after-failed-body":
            raise StorageError("body failed")
        self.store.visible += self.staged

    async def abort(self):
        if self.store.broken == "abort-keeps":
            self.store.visible += self.staged
        self.staged = 0


class AtomicDelivery(Delivery):
    body_non_atomic = None  # not a PartialDelivery


class AtomicStore(Store):
    async def start(self, meta, mail_from):
        return AtomicDelivery(self)


class TestTarget_atomic(DeliveryTargetSuite):
    target = pytest.fixture(lambda self: AtomicStore("none"))
    delivered = lambda self, target: target.visible  # noqa: E731


def target_suite(rule):
    class Suite(DeliveryTargetSuite):
        @pytest.fixture
        def target(self):
            return Store(rule)

        def delivered(self, target):
            return target.visible

    Suite.__name__ = f"TestTarget_{rule.replace('-', '_')}"
    return Suite


for _rule in ("none", "visible-before-commit", "abort-keeps", "duplicates", "case-kept", "commit-after-failed-body", "swallows-unreadable-body", "partial-twice"):
    globals()[f"TestTarget_{_rule.replace('-', '_')}"] = target_suite(_rule)


class Blobs:
    def __init__(self, broken):
        self.broken, self.data, self.shared = broken, {}, bytearray()

    async def create(self, key, size):
        return Blob(self, key, size)

    async def open(self, key):
        if key not in self.data:
            raise KeyError(key) if self.broken == "missing-keyerror" else NoSuchBlobError(key)
        return io.BytesIO(self.data[key])

    async def delete(self, keys):
        for key in keys:
            if self.broken == "delete-missing-raises":
                del self.data[key]
            else:
                self.data.pop(key, None)


class Blob:
    def __init__(self, store, key, size):
        self.store, self.key, self.size = store, key, size
        self.buf = store.shared if store.broken == "shared-buffer" else bytearray()

    def write(self, data):
        if self.size >= 0 and len(self.buf) + len(data) > self.size and self.store.broken != "no-size-limit":
            raise StorageError("too big")
        self.buf += data
        if self.store.broken == "close-keeps":
            self.store.data[self.key] = bytes(self.buf)
        return len(data)

    def sync(self):
        self.store.data[self.key] = bytes(self.buf)

    def close(self):
        pass


for _rule in ("none", "missing-keyerror", "delete-missing-raises", "close-keeps", "no-size-limit", "shared-buffer"):
    globals()[f"TestBlobs_{_rule.replace('-', '_')}"] = type(
        f"TestBlobs_{_rule.replace('-', '_')}",
        (BlobStoreSuite,),
        {"store": pytest.fixture(lambda self, _r=_rule: Blobs(_r))},
    )


class BrokenTable:
    def __init__(self, broken):
        self.broken, self.data = broken, {"k": "v"}

    async def lookup(self, key):
        if self.broken == "missing-raises":
            return self.data[key]
        return self.data.get(key)

    async def lookup_multi(self, key):
        return ["other"] if self.broken == "multi-disagrees" and key in self.data else [self.data[key]] if key in self.data else []

    def keys(self):
        return list(self.data)

    def set_key(self, k, v):
        if self.broken != "set-does-nothing":
            self.data[k] = v

    def remove_key(self, k):
        self.data.pop(k, None)


class LookupOnly:
    async def lookup(self, key):
        return {"k": "v"}.get(key)


class TestTable_lookup_only(TableSuite):
    table = pytest.fixture(lambda self: LookupOnly())
    entries = pytest.fixture(lambda self: {"k": "v"})


class TestTable_no_entries(TableSuite):
    table = pytest.fixture(lambda self: BrokenTable("none"))


class TestTable_empty_entries(TableSuite):
    table = pytest.fixture(lambda self: BrokenTable("none"))
    entries = pytest.fixture(lambda self: {})


for _rule in ("none", "missing-raises", "multi-disagrees", "set-does-nothing"):
    globals()[f"TestTable_{_rule.replace('-', '_')}"] = type(
        f"TestTable_{_rule.replace('-', '_')}",
        (TableSuite,),
        {
            "table": pytest.fixture(lambda self, _r=_rule: BrokenTable(_r)),
            "entries": pytest.fixture(lambda self: {"k": "v"}),
        },
    )


class UnhashableState:
    __hash__ = None

    async def check_connection(self):
        return CheckResult()

    async def check_sender(self, mail_from):
        return CheckResult()

    async def check_rcpt(self, rcpt):
        return CheckResult()

    async def check_body(self, header, body):
        return CheckResult()

    def close(self):
        pass


class WrongResult(UnhashableState):
    __hash__ = object.__hash__

    async def check_rcpt(self, rcpt):
        return None


class CloseFails(WrongResult):
    async def check_rcpt(self, rcpt):
        return CheckResult()

    def close(self):
        raise RuntimeError("cannot close")


class GoodState(UnhashableState):
    __hash__ = object.__hash__


class AllEqualState(UnhashableState):
    __hash__ = lambda self: 0  # noqa: E731
    __eq__ = lambda self, other: True  # noqa: E731


for _name, _state in (("none", GoodState), ("unhashable", UnhashableState), ("all_equal", AllEqualState), ("wrong_result", WrongResult), ("close_fails", CloseFails)):

    class _Check:
        def __init__(self, state):
            self.state = state

        async def check_state_for_msg(self, meta):
            return self.state()

    globals()[f"TestCheck_{_name}"] = type(
        f"TestCheck_{_name}", (CheckSuite,), {"check": pytest.fixture(lambda self, _s=_state: _Check(_s))}
    )


class ModState:
    def __init__(self, broken):
        self.broken = broken

    async def rewrite_sender(self, mail_from):
        return mail_from

    async def rewrite_rcpt(self, rcpt):
        return [] if self.broken == "empty-rcpt" else [rcpt]

    async def rewrite_body(self, header, body):
        if self.broken == "changes-fields":
            header.set("Subject", "changed")

    def close(self):
        pass


class Mod:
    def __init__(self, broken):
        self.broken = broken

    async def mod_state_for_msg(self, meta):
        return ModState(self.broken)


for _rule in ("none", "empty-rcpt", "changes-fields"):
    globals()[f"TestModifier_{_rule.replace('-', '_')}"] = type(
        f"TestModifier_{_rule.replace('-', '_')}",
        (ModifierSuite,),
        {"modifier": pytest.fixture(lambda self, _r=_rule: Mod(_r))},
    )


class Auth:
    def __init__(self, broken):
        self.broken = broken

    def auth_plain(self, username, password):
        if username != "joe":
            raise AuthError("no") if self.broken == "unknown-user-wrong-error" else UnknownCredentialsError(username)
        if password != "pw" and self.broken != "accepts-wrong-password":
            raise AuthError("wrong password")


for _rule in ("none", "accepts-wrong-password", "unknown-user-wrong-error"):
    globals()[f"TestAuth_{_rule.replace('-', '_')}"] = type(
        f"TestAuth_{_rule.replace('-', '_')}",
        (PlainAuthSuite,),
        {
            "auth": pytest.fixture(lambda self, _r=_rule: Auth(_r)),
            "credentials": pytest.fixture(lambda self: ("joe", "pw")),
        },
    )
'''

# Each broken rule and the one test of its suite that must catch it.
EXPECTED_FAILURES = {
    "TestTarget_visible_before_commit::test_nothing_is_visible_before_commit",
    "TestTarget_abort_keeps::test_abort_leaves_nothing",
    "TestTarget_duplicates::test_duplicate_recipients_are_silently_ignored",
    "TestTarget_case_kept::test_recipients_differing_only_in_case_get_one_copy",
    "TestTarget_commit_after_failed_body::test_commit_after_a_failed_body_is_refused",
    "TestTarget_swallows_unreadable_body::test_an_unreadable_body_fails_body",
    "TestTarget_swallows_unreadable_body::test_nothing_is_committed_after_an_unreadable_body",
    "TestTarget_partial_twice::test_partial_delivery_reports_each_recipient_at_most_once",
    "TestBlobs_missing_keyerror::test_a_missing_key_raises_no_such_blob",
    "TestBlobs_delete_missing_raises::test_delete_ignores_missing_keys",
    "TestBlobs_close_keeps::test_close_without_sync_discards",
    "TestBlobs_no_size_limit::test_writing_past_the_announced_size_fails",
    "TestBlobs_shared_buffer::test_concurrent_writers_of_different_keys_do_not_interfere",
    "TestTable_missing_raises::test_a_missing_key_is_none",
    "TestTable_multi_disagrees::test_lookup_multi_agrees_with_lookup",
    "TestTable_set_does_nothing::test_set_then_lookup_gives_the_value",
    "TestTable_no_entries::test_known_keys_give_their_values",
    "TestTable_empty_entries::test_known_keys_give_their_values",
    "TestCheck_unhashable::test_states_are_hashable",
    "TestCheck_all_equal::test_states_are_hashable",
    "TestCheck_wrong_result::test_every_stage_runs_in_order_and_returns_a_check_result",
    "TestCheck_close_fails::test_close_works_after_any_failure",
    "TestModifier_empty_rcpt::test_calls_in_order_return_what_the_contract_says",
    "TestModifier_changes_fields::test_calls_in_order_return_what_the_contract_says",
    "TestAuth_accepts_wrong_password::test_a_wrong_password_fails_with_an_auth_error",
    "TestAuth_unknown_user_wrong_error::test_an_unknown_user_fails_with_unknown_credentials",
}


# Modules that lack an optional interface: its tests must skip and say why.
EXPECTED_SKIPS = {
    "TestTarget_atomic::test_partial_delivery_reports_each_recipient_at_most_once": (
        "AtomicDelivery does not implement PartialDelivery"
    ),
    "TestTable_lookup_only::test_lookup_multi_agrees_with_lookup": (
        "LookupOnly does not implement MultiTable"
    ),
    "TestTable_lookup_only::test_set_then_lookup_gives_the_value": (
        "LookupOnly does not implement MutableTable"
    ),
}
# Modules that break no rule.
CONTROLS = ("_none", "TestTarget_atomic", "TestTable_lookup_only")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Each test of the broken modules: its outcome and the message it gave."""
    import subprocess
    import sys
    from xml.etree import ElementTree

    directory = tmp_path_factory.mktemp("broken")
    (directory / "test_broken.py").write_text(BROKEN)
    report = directory / "report.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}"],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=300,
    )
    assert report.exists(), run.stdout + run.stderr
    found: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        test_id = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        outcome, message = "PASSED", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "SKIPPED"}[kind]
                message = element.get("message", "")
        found[test_id] = (outcome, message)
    assert found, run.stdout + run.stderr
    return found


@pytest.mark.parametrize("test_id", sorted(EXPECTED_FAILURES))
def test_each_broken_rule_fails_its_test(
    outcomes: dict[str, tuple[str, str]], test_id: str
) -> None:
    assert outcomes.get(test_id, ("missing", ""))[0] == "FAILED", outcomes.get(test_id)


@pytest.mark.parametrize("test_id", sorted(EXPECTED_SKIPS))
def test_a_missing_optional_interface_skips_its_test_and_says_so(
    outcomes: dict[str, tuple[str, str]], test_id: str
) -> None:
    outcome, message = outcomes.get(test_id, ("missing", ""))
    assert outcome == "SKIPPED"
    assert EXPECTED_SKIPS[test_id] in message


@pytest.mark.parametrize(
    ("test_id", "hint"),
    [
        ("TestTable_no_entries::test_known_keys_give_their_values", "define an `entries` fixture"),
        ("TestTable_empty_entries::test_known_keys_give_their_values", "`entries` is empty"),
    ],
)
def test_a_table_suite_without_entries_fails_saying_how_to_give_them(
    outcomes: dict[str, tuple[str, str]], test_id: str, hint: str
) -> None:
    assert hint in outcomes.get(test_id, ("missing", ""))[1]


def test_the_same_modules_unbroken_pass_every_test(outcomes: dict[str, tuple[str, str]]) -> None:
    controls = {t: o for t, (o, _) in outcomes.items() if t.split("::")[0].endswith(CONTROLS)}
    assert {t.split("::")[0] for t in controls} == {
        "TestTarget_none",
        "TestTarget_atomic",
        "TestBlobs_none",
        "TestTable_none",
        "TestTable_lookup_only",
        "TestCheck_none",
        "TestModifier_none",
        "TestAuth_none",
    }
    assert {t for t, o in controls.items() if o != "PASSED" and t not in EXPECTED_SKIPS} == set()
