"""`auth.pass_table`: maddy's hash forms, Argon2id at OWASP's cost, upgrades at login,
and passwords that never leak, even those with no UTF-8 form."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Callable
from pathlib import Path

import argon2
import bcrypt
import pytest
from argon2 import low_level
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailmodule import (
    AuthError,
    ConfigMap,
    DataError,
    PlainAuth,
    PlainUserDB,
    StorageError,
    UnknownCredentialsError,
)
from mailmodule.modules import PassTable
from mailmodule.modules.pass_table import (
    ARGON2_MEMORY_KIB,
    ARGON2_THREADS,
    ARGON2_TIME,
    create_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.modules_kit import build, new_registry

# maddy's own vectors (internal/auth/pass_table/table_test.go), all for "password".
MADDY_BCRYPT = "bcrypt:$2y$10$4tEJtJ6dApmhETg8tJ4WHOeMtmYXQwmHDKIyfg09Bw1F/smhLjlaa"
MADDY_ARGON2 = (
    "argon2:1:8:1:U0FBQUFBTFQ=:KHUshl3DcpHR3AoVd28ZeBGmZ1Fj1gwJgNn98Ia8DAvGHqI0BvFOMJPxtaAfO8F"
    "+qomm2O3h0P0yV50QGwXI/Q=="
)
CURRENT = re.compile(
    rf"argon2:{ARGON2_TIME}:{ARGON2_MEMORY_KIB}:{ARGON2_THREADS}:"
    r"[A-Za-z0-9+/]{22}==:[A-Za-z0-9+/]{86}=="
)


def maddy_argon2(password: bytes, *, time: int = 1, memory: int = 8, threads: int = 1) -> str:
    """What maddy's computeArgon2 writes, from argon2-cffi's reference Argon2id."""
    salt = b"0123456789abcdef"
    digest = low_level.hash_secret_raw(password, salt, time, memory, threads, 64, low_level.Type.ID)
    b64 = base64.b64encode
    return f"argon2:{time}:{memory}:{threads}:{b64(salt).decode()}:{b64(digest).decode()}"


def maddy_bcrypt(password: bytes, *, prefix: bytes = b"2a") -> str:
    """What maddy's computeBcrypt writes (Go's bcrypt emits $2a$), from pyca's bcrypt."""
    return "bcrypt:" + bcrypt.hashpw(password, bcrypt.gensalt(4, prefix)).decode()


class ReadOnlyTable:
    """A table in memory without the `MutableTable` methods: hashes cannot be upgraded."""

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        self.entries = dict(entries or {})

    def name(self) -> str:
        return "table.dict"

    def instance_name(self) -> str:
        return "dict_users"

    def init(self, cfg: ConfigMap) -> None:
        pass

    async def lookup(self, key: str) -> str | None:
        return self.entries.get(key)


class DictTable(ReadOnlyTable):
    """A mutable table in memory, as any plugin would write one."""

    def keys(self) -> list[str]:
        return sorted(self.entries)

    def set_key(self, k: str, v: str) -> None:
        self.entries[k] = v

    def remove_key(self, k: str) -> None:
        self.entries.pop(k, None)


def over(table: ReadOnlyTable) -> PassTable:
    registry = new_registry()
    registry.register_instance(table, {})
    auth = build(registry, "auth.pass_table", "authdb", {"table": "&dict_users"})
    assert isinstance(auth, PassTable)
    return auth


def users(tmp_path: Path) -> PassTable:
    registry = new_registry()
    (tmp_path / "users").write_text("")
    build(registry, "table.file", "users_table", {"file": str(tmp_path / "users")})
    auth = build(registry, "auth.pass_table", "local_authdb", {"table": "&users_table"})
    assert isinstance(auth, PassTable)
    return auth


# The user database


def test_pass_table_is_a_user_db(tmp_path: Path) -> None:
    auth = users(tmp_path)
    assert isinstance(auth, PlainAuth)
    assert isinstance(auth, PlainUserDB)


def test_a_created_user_logs_in_and_others_do_not(tmp_path: Path) -> None:
    auth = users(tmp_path)
    auth.create_user("joe@example.org", "correct horse")
    auth.auth_plain("joe@example.org", "correct horse")
    with pytest.raises(AuthError) as wrong:
        auth.auth_plain("joe@example.org", "battery staple")
    assert not isinstance(wrong.value, UnknownCredentialsError)
    with pytest.raises(UnknownCredentialsError):
        auth.auth_plain("ann@example.org", "correct horse")
    assert auth.list_users() == ["joe@example.org"]


def test_users_can_change_password_and_be_deleted(tmp_path: Path) -> None:
    auth = users(tmp_path)
    auth.create_user("joe", "one")
    with pytest.raises(AuthError, match="already exists"):
        auth.create_user("joe", "two")
    auth.set_user_password("joe", "two")
    auth.auth_plain("joe", "two")
    auth.delete_user("joe")
    with pytest.raises(UnknownCredentialsError):
        auth.auth_plain("joe", "two")
    with pytest.raises(UnknownCredentialsError):
        auth.set_user_password("joe", "three")


def test_the_table_holds_salted_argon2id_hashes_never_passwords(tmp_path: Path) -> None:
    auth = users(tmp_path)
    auth.create_user("joe", "hunter2")
    auth.create_user("ann", "hunter2")
    stored = (tmp_path / "users").read_text()
    assert "hunter2" not in stored
    hashes = [line.split(": ", 1)[1] for line in stored.splitlines()]
    assert hashes[0] != hashes[1]  # salted
    assert all(CURRENT.fullmatch(h) for h in hashes)


async def test_auth_plain_on_the_event_loop_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    auth = users(tmp_path)
    with pytest.raises(StorageError, match="off the event loop"):
        auth.auth_plain("joe", "pw")
    with pytest.raises(UnknownCredentialsError):
        await asyncio.to_thread(auth.auth_plain, "joe", "pw")


# Hash forms: maddy's, read exactly as maddy writes them, and ours


@pytest.mark.parametrize("stored", [MADDY_BCRYPT, MADDY_ARGON2], ids=["bcrypt", "argon2"])
def test_maddys_own_test_vectors_verify(stored: str) -> None:
    assert verify_password("password", stored)
    assert not verify_password("different-password", stored)
    auth = over(ReadOnlyTable({"foxcpp": stored}))
    auth.auth_plain("foxcpp", "password")
    with pytest.raises(AuthError) as wrong:
        auth.auth_plain("foxcpp", "different-password")
    assert type(wrong.value) is AuthError


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
def test_bcrypt_hashes_from_the_reference_implementation_verify(prefix: bytes) -> None:
    stored = maddy_bcrypt("pässword".encode(), prefix=prefix)
    assert stored.startswith(f"bcrypt:${prefix.decode()}$04$")
    assert verify_password("pässword", stored)
    assert not verify_password("password", stored)


def test_bcrypt_compares_the_first_72_bytes_as_go_does() -> None:
    stored = maddy_bcrypt(b"x" * 72)
    assert verify_password("x" * 72, stored)
    assert verify_password("x" * 80, stored)  # Go's CompareHashAndPassword agrees
    assert not verify_password("x" * 71, stored)


def test_argon2_hashes_with_maddys_parameters_verify() -> None:
    # `maddy hash --hash argon2` without flags: time 2, memory 1024 KiB, one thread.
    stored = maddy_argon2("pässword".encode(), time=2, memory=1024)
    assert verify_password("pässword", stored)
    assert not verify_password("password", stored)


def test_argon2_from_passwordhasher_reencoded_in_maddys_form_verifies() -> None:
    phc = argon2.PasswordHasher(
        time_cost=3, memory_cost=1024, parallelism=1, hash_len=64, salt_len=16
    ).hash("pw")
    params = argon2.extract_parameters(phc)
    salt, digest = (base64.b64decode(part + "==") for part in phc.split("$")[-2:])
    stored = (
        f"argon2:{params.time_cost}:{params.memory_cost}:{params.parallelism}:"
        f"{base64.b64encode(salt).decode()}:{base64.b64encode(digest).decode()}"
    )
    assert verify_password("pw", stored)
    assert not verify_password("pW", stored)


def test_create_hash_writes_argon2id_at_owasps_cost_that_the_reference_verifies() -> None:
    stored = create_hash("pässword")
    assert CURRENT.fullmatch(stored)
    assert (ARGON2_TIME, ARGON2_MEMORY_KIB, ARGON2_THREADS) == (2, 19456, 1)
    assert verify_password("pässword", stored)
    assert not needs_rehash(stored)
    # Rebuilt as a PHC string, argon2-cffi's own verifier accepts it: real Argon2id v19.
    _, t, m, p, salt, digest = stored.split(":")

    def nopad(b64: str) -> str:
        return b64.rstrip("=")

    phc = f"$argon2id$v=19$m={m},t={t},p={p}${nopad(salt)}${nopad(digest)}"
    assert argon2.PasswordHasher().verify(phc, "pässword")


def test_the_legacy_scrypt_form_is_still_read() -> None:
    stored = hash_password("pw", n=2**10)
    assert verify_password("pw", stored)
    assert not verify_password("PW", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "plain-text-password",
        "hunter2:hunter2",
        "sha256:U0FMVA==:8PDRAgaUqaLSk34WpYniXjaBgGM93Lc6iF4pw2slthw=",  # maddy's tests only
        "argon2:1:8:1:U0FBQUFBTFQ=",
        "argon2:1:8:x:U0FBQUFBTFQ=:AAAA",
        "argon2:1:8:1:not base64!:AAAA",
        "argon2:1:8:1:U0FBQUFBTFQ=:AAAA",  # a 3-byte hash
        MADDY_ARGON2.replace("argon2:1:8:1", "argon2:0:8:1"),
        MADDY_ARGON2.replace("argon2:1:8:1", "argon2:1:8:300"),
        MADDY_ARGON2.replace("U0FBQUFBTFQ=", "U0FMVA=="),  # a 4-byte salt
        "bcrypt:$2y$10$short",
        "bcrypt:" + MADDY_BCRYPT.removeprefix("bcrypt:").replace("$10$", "$99$"),
        "scrypt$1024$8$1$c2FsdA",
    ],
)
def test_a_malformed_stored_value_is_a_data_error_that_hides_it(stored: str) -> None:
    with pytest.raises(DataError, match="malformed password hash") as info:
        verify_password("pw", stored)
    for secret_part in ("hunter2", "U0F", "8PDR", "short", "not base64", "c2FsdA"):
        assert secret_part not in str(info.value)


# Upgrades at the next login


@pytest.mark.parametrize(
    "outdated",
    [
        pytest.param(hash_password("right", n=2**10), id="scrypt"),
        pytest.param(maddy_bcrypt(b"right"), id="bcrypt"),
        pytest.param(maddy_argon2(b"right", time=2, memory=1024), id="weaker-argon2"),
    ],
)
def test_an_outdated_hash_becomes_argon2id_at_the_next_successful_login(outdated: str) -> None:
    assert needs_rehash(outdated)
    table = DictTable({"joe": outdated})
    auth = over(table)
    with pytest.raises(AuthError):
        auth.auth_plain("joe", "wrong")
    assert table.entries["joe"] == outdated  # a failed login changes nothing
    auth.auth_plain("joe", "right")
    upgraded = table.entries["joe"]
    assert CURRENT.fullmatch(upgraded)
    assert verify_password("right", upgraded)
    auth.auth_plain("joe", "right")
    assert table.entries["joe"] == upgraded  # current: not rewritten again
    with pytest.raises(AuthError):
        auth.auth_plain("joe", "wrong")


def test_an_upgrade_in_a_file_table_persists(tmp_path: Path) -> None:
    auth = users(tmp_path)
    (tmp_path / "users").write_text(f"joe: {MADDY_BCRYPT}\n")
    auth.auth_plain("joe", "password")
    stored = (tmp_path / "users").read_text()
    assert CURRENT.fullmatch(stored.strip().split(": ", 1)[1])


def test_a_stronger_argon2id_hash_is_kept() -> None:
    stronger = maddy_argon2(b"right", time=3, memory=ARGON2_MEMORY_KIB)
    assert not needs_rehash(stronger)
    table = DictTable({"joe": stronger})
    over(table).auth_plain("joe", "right")
    assert table.entries["joe"] == stronger


def test_a_read_only_table_keeps_its_hashes_and_logins_work() -> None:
    table = ReadOnlyTable({"joe": MADDY_BCRYPT})
    over(table).auth_plain("joe", "password")
    assert table.entries["joe"] == MADDY_BCRYPT


def test_a_failed_rewrite_is_logged_without_the_password_and_the_login_succeeds(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = DictTable({"joe": maddy_bcrypt(b"s3cret-pw")})

    def failing(k: str, v: str) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(table, "set_key", failing)
    with caplog.at_level(logging.DEBUG):
        over(table).auth_plain("joe", "s3cret-pw")
    assert "disk full" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_password_changed_during_the_login_is_not_reverted() -> None:
    changed = create_hash("new")

    class Changing(DictTable):
        calls = 0

        async def lookup(self, key: str) -> str | None:
            # The second lookup (before the rewrite) sees an administrator's change.
            Changing.calls += 1
            if Changing.calls == 2:
                self.entries[key] = changed
            return self.entries.get(key)

    racing = Changing({"joe": MADDY_BCRYPT})
    over(racing).auth_plain("joe", "password")
    assert racing.entries["joe"] == changed


# Passwords never leak, and cost the same for unknown users


def test_a_password_never_reaches_a_log_repr_or_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = users(tmp_path)
    auth.create_user("joe", "s3cret-pw")
    errors: list[AuthError] = []
    with caplog.at_level(logging.DEBUG):
        for password in ("s3cret-pw", "wr0ng-pw"):
            try:
                auth.auth_plain("joe", password)
            except AuthError as exc:
                errors.append(exc)
    assert len(errors) == 1
    assert all("pw" not in f"{e} {e!r}" for e in errors)
    assert "pw" not in caplog.text
    assert "s3cret" not in repr(auth)


@pytest.mark.parametrize("stored", [MADDY_ARGON2, MADDY_BCRYPT, hash_password("x", n=2**10)])
def test_a_password_with_no_utf8_form_fails_as_a_wrong_one_does(stored: str) -> None:
    lone = "pass\udcffword"
    assert not verify_password(lone, stored)
    with pytest.raises(AuthError) as wrong:
        over(ReadOnlyTable({"joe": stored})).auth_plain("joe", lone)
    assert type(wrong.value) is AuthError
    assert "\udcff" not in str(wrong.value)
    with pytest.raises(UnknownCredentialsError):
        over(ReadOnlyTable()).auth_plain("ann", lone)


@pytest.mark.parametrize("make", [create_hash, hash_password])
def test_hashing_a_password_with_no_utf8_form_is_a_data_error_naming_none_of_it(
    make: Callable[[str], str],
) -> None:
    with pytest.raises(DataError) as info:
        make("s3cret\ud800")
    assert "s3cret" not in str(info.value)
    assert "\ud800" not in str(info.value)
    assert "\\ud800" not in repr(info.value)


texts = st.lists(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=90,
).map("".join)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(right=texts, other=texts, scheme=st.sampled_from(["argon2", "bcrypt"]))
def test_any_text_password_logs_in_or_raises_the_same_auth_error(
    right: str, other: str, scheme: str
) -> None:
    """Auth succeeds for the right password; any other raises an `AuthError` whose message
    is the same for every password, so no part of one can be in it."""
    secret = right.encode() if _encodable(right) else b"the password set"
    stored = maddy_argon2(secret) if scheme == "argon2" else maddy_bcrypt(secret[:72])
    auth = over(ReadOnlyTable({"joe": stored}))
    if _encodable(right):
        auth.auth_plain("joe", right)
    else:
        with pytest.raises(AuthError) as unencodable:
            auth.auth_plain("joe", right)
        assert str(unencodable.value) == "invalid credentials for user 'joe'"
    cut = 72 if scheme == "bcrypt" else None
    assume(other.encode("utf-8", "surrogatepass")[:cut] != secret[:cut])
    with pytest.raises(AuthError) as wrong:
        auth.auth_plain("joe", other)
    assert type(wrong.value) is AuthError
    assert str(wrong.value) == "invalid credentials for user 'joe'"
    assert repr(wrong.value) == repr(AuthError("invalid credentials for user 'joe'"))


def test_an_unknown_user_costs_one_argon2id_as_a_wrong_password_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal work, so timing tells nothing about which usernames exist."""
    auth = users(tmp_path)
    auth.create_user("joe", "right")
    calls: list[tuple[int, int, int]] = []
    real = low_level.hash_secret_raw

    def counting(
        secret: bytes,
        salt: bytes,
        time_cost: int,
        memory_cost: int,
        parallelism: int,
        hash_len: int,
        type: low_level.Type,
        version: int = low_level.ARGON2_VERSION,
    ) -> bytes:
        calls.append((time_cost, memory_cost, parallelism))
        return real(secret, salt, time_cost, memory_cost, parallelism, hash_len, type, version)

    monkeypatch.setattr(low_level, "hash_secret_raw", counting)
    with pytest.raises(AuthError):
        auth.auth_plain("joe", "wrong")
    wrong = list(calls)
    calls.clear()
    with pytest.raises(UnknownCredentialsError):
        auth.auth_plain("nobody", "wrong")
    assert calls == wrong == [(2, 19456, 1)]


@pytest.mark.parametrize("params", ["1:4194304:1", "100000:19456:1"])
def test_a_stored_argon2_value_that_would_cost_too_much_is_refused_unrun(params: str) -> None:
    good = create_hash("secret")
    salt, digest = good.split(":")[4:]
    with pytest.raises(DataError, match="beyond what a login may cost"):
        verify_password("secret", f"argon2:{params}:{salt}:{digest}")
