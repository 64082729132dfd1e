"""`auth.pass_table`: passwords checked against salted hashes kept in a table.

Stored values, one per user, in the forms maddy's `auth.pass_table` writes
(internal/auth/pass_table/hash.go), so a maddy credentials table works unchanged and
a table written here works in maddy:

- `argon2:<time>:<memory KiB>:<threads>:<salt>:<hash>`: Argon2id (version 0x13), salt and
  the 64-byte hash in padded standard base64. What `create_hash` writes.
- `bcrypt:<modular crypt string>`, such as `bcrypt:$2a$10$...` (`$2a$`, `$2b$`, `$2y$`):
  maddy's default; read only.
- `scrypt$<n>$<r>$<p>$<salt>$<hash>`: what this module wrote before Argon2id; read only.

A successful login with an outdated hash (bcrypt, scrypt, or Argon2id weaker than the
current parameters) replaces it with a `create_hash` value when the table is a
`MutableTable`. maddy's `sha256:` form is not read: maddy itself verifies it only in its
own tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from typing import ClassVar, Final, final

import bcrypt
from argon2 import low_level as argon2_raw
from argon2.exceptions import HashingError

from mailmodule.config import ConfigMap, Setting
from mailmodule.errors import (
    AuthError,
    ConfigError,
    DataError,
    MailModuleError,
    StorageError,
    UnknownCredentialsError,
)
from mailmodule.interfaces import MutableTable, Table
from mailmodule.modules._base import ModuleBase

__all__ = ["PassTable", "create_hash", "hash_password", "needs_rehash", "verify_password"]

_log = logging.getLogger("mailmodule.modules.pass_table")

# Argon2id's cost for new hashes: OWASP Password Storage Cheat Sheet
# (https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html):
# "Use Argon2id with a minimum configuration of 19 MiB of memory, an iteration count of 2,
# and 1 degree of parallelism" (m=19456 KiB, t=2, p=1; it lists m=47104 KiB, t=1 as an
# equivalent). About 50 ms per hash on a current x86 core.
ARGON2_TIME: Final = 2
ARGON2_MEMORY_KIB: Final = 19 * 1024
ARGON2_THREADS: Final = 1
# maddy's Argon2Salt and Argon2Size: maddy derives 64 bytes whatever it stored.
_ARGON2_SALT_LEN: Final = 16
_ARGON2_HASH_LEN: Final = 64
_ARGON2_MAX_MEMORY_KIB: Final = 1 << 20  # 1 GiB
_ARGON2_MAX_TIME: Final = 64

# scrypt, the legacy format: n = 2**14, r = 8, p = 1, below OWASP's 2**17.
_N: Final = 1 << 14
_R: Final = 8
_P: Final = 1
_MAXMEM: Final = 64 << 20

# bcrypt's modular crypt form: version, two-digit cost, 22 characters of salt, 31 of hash.
_BCRYPT: Final = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
# bcrypt keys on 72 bytes at most; Go's CompareHashAndPassword ignores the rest, and the
# `bcrypt` package refuses longer passwords, so they are cut as Go does.
_BCRYPT_MAX_BYTES: Final = 72


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _std_b64decode(text: str) -> bytes:
    """Go's `base64.StdEncoding.DecodeString`: padded, standard alphabet."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _malformed("argon2", "bad base64") from None


def _encode(password: str) -> bytes | None:
    """The UTF-8 bytes of `password`, or None if it has none (a lone surrogate)."""
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        return None  # the error quotes the character: never let it out


def _malformed(scheme: str, why: str) -> DataError:
    # Fixed words only: neither the stored value nor the password reaches the message.
    return DataError(f"malformed password hash ({scheme}: {why})")


def _argon2id(secret: bytes, salt: bytes, time: int, memory: int, threads: int) -> bytes:
    try:
        return argon2_raw.hash_secret_raw(
            secret,
            salt,
            time_cost=time,
            memory_cost=memory,
            parallelism=threads,
            hash_len=_ARGON2_HASH_LEN,
            type=argon2_raw.Type.ID,
        )
    except HashingError:
        raise _malformed("argon2", "parameters out of range") from None


def create_hash(password: str) -> str:
    """A new table value for `password`: Argon2id at the current cost, in maddy's form.

    The value is `argon2:<time>:<memory KiB>:<threads>:<salt>:<hash>` with a fresh
    16-byte salt, readable by this module and by maddy's `auth.pass_table`. This is what
    `create_user`, `set_user_password` and `mailmodule creds create` store. It takes
    tens of milliseconds and 19 MiB of memory: call it off the event loop.

    Args:
        password: the password, any text that has a UTF-8 form.

    Returns:
        The value to store under the user's name.

    Raises:
        DataError: `password` has no UTF-8 form (a lone surrogate); the message names no
            part of it.
    """
    secret = _encode(password)
    if secret is None:
        raise DataError("the password cannot be encoded as UTF-8")
    salt = secrets.token_bytes(_ARGON2_SALT_LEN)
    digest = _argon2id(secret, salt, ARGON2_TIME, ARGON2_MEMORY_KIB, ARGON2_THREADS)
    salt64 = base64.b64encode(salt).decode("ascii")
    digest64 = base64.b64encode(digest).decode("ascii")
    return f"argon2:{ARGON2_TIME}:{ARGON2_MEMORY_KIB}:{ARGON2_THREADS}:{salt64}:{digest64}"


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A salted scrypt hash as stored in the table: `scrypt$n$r$p$salt$hash`.

    The legacy format, still read and kept for callers that write it; new values come
    from `create_hash`, and a scrypt value is replaced by one at the user's next login.

    Raises:
        DataError: `password` has no UTF-8 form; the message names no part of it.
    """
    secret = _encode(password)
    if secret is None:
        raise DataError("the password cannot be encoded as UTF-8")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _verify_scrypt(secret: bytes, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        want = _unb64(digest)
        got = hashlib.scrypt(
            secret,
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(want),
        )
    except ValueError:  # also binascii.Error; the secret cannot cause one
        raise _malformed("scrypt", "expected scrypt$n$r$p$salt$hash") from None
    return hmac.compare_digest(got, want)


def _parse_argon2(payload: str) -> tuple[int, int, int, bytes, bytes]:
    """maddy's `<time>:<memory>:<threads>:<salt>:<hash>` as (t, m, p, salt, hash)."""
    parts = payload.split(":")
    if len(parts) != 5 or not all(part.isascii() and part.isdigit() for part in parts[:3]):
        raise _malformed("argon2", "expected argon2:time:memory:threads:salt:hash")
    time, memory, threads = (int(part) for part in parts[:3])
    if time >= 1 << 32 or memory >= 1 << 32 or threads >= 1 << 8:  # maddy's uint32, uint8
        raise _malformed("argon2", "parameters out of range")
    # A stored value decides what one login costs: a corrupt or hostile one must not make
    # a login take gigabytes or minutes (scrypt values are bounded by _MAXMEM likewise).
    if memory > _ARGON2_MAX_MEMORY_KIB or time > _ARGON2_MAX_TIME:
        raise _malformed("argon2", "parameters beyond what a login may cost")
    salt, digest = _std_b64decode(parts[3]), _std_b64decode(parts[4])
    if len(digest) != _ARGON2_HASH_LEN:
        raise _malformed("argon2", "the hash is not 64 bytes")
    return time, memory, threads, salt, digest


def _verify_argon2(secret: bytes, payload: str) -> bool:
    time, memory, threads, salt, want = _parse_argon2(payload)
    return hmac.compare_digest(_argon2id(secret, salt, time, memory, threads), want)


def _verify_bcrypt(secret: bytes, payload: str) -> bool:
    if _BCRYPT.fullmatch(payload) is None:
        raise _malformed("bcrypt", "expected bcrypt:$2a$cost$salt-and-hash")
    # checkpw compares in constant time.
    return bcrypt.checkpw(secret[:_BCRYPT_MAX_BYTES], payload.encode("ascii"))


def _verify(secret: bytes, stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return _verify_scrypt(secret, stored)
    tag, sep, payload = stored.partition(":")
    if sep and tag == "argon2":
        return _verify_argon2(secret, payload)
    if sep and tag == "bcrypt":
        return _verify_bcrypt(secret, payload)
    raise _malformed("unknown scheme", "expected argon2:, bcrypt: or scrypt$")


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash, compared in constant time.

    `stored` is any form in the module docstring. A password with no UTF-8 form (a lone
    surrogate) matches nothing, at the cost of a check of another password.

    Raises:
        DataError: the stored value is not a hash in a form read here (never naming it,
            nor any part of the password).
    """
    secret = _encode(password)
    if secret is None:
        _verify(secrets.token_bytes(16), stored)  # the same cost as a wrong password
        return False
    return _verify(secret, stored)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` is weaker than what `create_hash` writes now.

    True for bcrypt, scrypt and any other form but Argon2id, and for Argon2id with less
    time or memory than the current cost. Stronger Argon2id values are kept as they are.
    Malformed values are not judged here: `verify_password` reports them.
    """
    tag, _, payload = stored.partition(":")
    if tag != "argon2":
        return True
    try:
        time, memory, _threads, salt, _digest = _parse_argon2(payload)
    except DataError:
        return False
    return time < ARGON2_TIME or memory < ARGON2_MEMORY_KIB or len(salt) < _ARGON2_SALT_LEN


@functools.cache
def _dummy_hash() -> str:
    """Checked for unknown users, so that they cost as much as a wrong password."""
    return create_hash(secrets.token_hex(8))


_TABLE: Final = Setting.module(
    "table",
    "maps a username to its password hash",
    Table,
    default_doc="required (in code: the first inline argument)",
)


@final
class PassTable(ModuleBase):
    """`auth.pass_table`: `PlainAuth` and `PlainUserDB` over a table of password hashes.

    Settings: `table` (or the first inline argument), a table mapping usernames to hashes
    in the forms of the module docstring (maddy's `argon2:` and `bcrypt:`, the older
    `scrypt$`); a `MutableTable` lets users be created, changed and deleted.

    Callers may assume: new hashes are Argon2id at OWASP's cost (`create_hash`);
    comparison is constant-time; an unknown user costs one Argon2id hash as a wrong
    password does; a successful login with an outdated hash rewrites it in a mutable
    table (`needs_rehash`), and a failed rewrite is logged, never a failed login.
    Passwords never appear in logs, reprs or exceptions, and a password with no UTF-8 form
    fails as a wrong one does. The methods are synchronous and slow by design: call them
    off the event loop (`asyncio.to_thread`); on it they raise `StorageError`.
    """

    def __init__(
        self,
        mod_name: str = "auth.pass_table",
        inst_name: str = "",
        aliases: Sequence[str] = (),
        inline_args: Sequence[str] = (),
    ) -> None:
        super().__init__(mod_name, inst_name, aliases, inline_args)
        self._table: Table | None = None

    SETTINGS: ClassVar = (_TABLE,)

    def init(self, cfg: ConfigMap) -> None:
        cfg.declare(self.SETTINGS)
        table = self.ref(cfg, _TABLE)
        assert isinstance(table, Table)
        self._table = table

    def _lookup(self, username: str) -> str | None:
        # auth_plain is synchronous (the seed's AuthPlain takes no context) and the table's
        # lookup is async: run it on a loop of its own, which needs a thread without one.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._require().lookup(username))
        raise StorageError(
            "auth.pass_table must be called off the event loop (asyncio.to_thread): "
            "password hashing is slow and its table lookup is async"
        )

    def _require(self) -> Table:
        if self._table is None:
            raise ConfigError("auth.pass_table is not initialized", module=self.name())
        return self._table

    def _mutable(self) -> MutableTable:
        table = self._require()
        if not isinstance(table, MutableTable):
            raise ConfigError("the table cannot be changed", module=self.name(), key="table")
        return table

    def auth_plain(self, username: str, password: str) -> None:
        """Check the password of `username`; upgrade an outdated hash when it matches.

        Raises:
            UnknownCredentialsError: no such user here.
            AuthError: the password is wrong or has no UTF-8 form; the message is the
                same for every password.
            DataError: the user's stored value is malformed (never naming it).
            StorageError: called on an event loop thread, or the table failed.
        """
        stored = self._lookup(username)
        if stored is None:
            verify_password(password, _dummy_hash())  # the same cost as a wrong password
            raise UnknownCredentialsError(username)
        if not verify_password(password, stored):
            raise AuthError(f"invalid credentials for user {username!r}")
        if needs_rehash(stored):
            self._upgrade(username, password, stored)

    def _upgrade(self, username: str, password: str, stored: str) -> None:
        """Replace the verified but outdated `stored` value of `username` by a new hash.

        Only if it is still there: a password changed meanwhile is not reverted (a change
        between this re-read and the write can still be lost; tables have no
        compare-and-set). Failures are logged without the password, never raised.
        """
        table = self._require()
        if not isinstance(table, MutableTable):
            return
        fresh = create_hash(password)
        try:
            if self._lookup(username) != stored:
                return
            table.set_key(username, fresh)
        except MailModuleError as exc:
            _log.warning(
                "%s: keeping the outdated password hash of %r, rewrite failed: %s",
                self.name(),
                username,
                exc,
            )

    def list_users(self) -> list[str]:
        return self._mutable().keys()

    def create_user(self, username: str, password: str) -> None:
        if self._lookup(username) is not None:
            raise AuthError(f"user {username!r} already exists")
        self._mutable().set_key(username, create_hash(password))

    def set_user_password(self, username: str, password: str) -> None:
        if self._lookup(username) is None:
            raise UnknownCredentialsError(username)
        self._mutable().set_key(username, create_hash(password))

    def delete_user(self, username: str) -> None:
        self._mutable().remove_key(username)
