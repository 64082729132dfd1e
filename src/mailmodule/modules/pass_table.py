"""`auth.pass_table`: passwords checked against salted scrypt hashes kept in a table."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Final, final

from mailmodule.config import ConfigMap
from mailmodule.errors import (
    AuthError,
    ConfigError,
    DataError,
    StorageError,
    UnknownCredentialsError,
)
from mailmodule.interfaces import MutableTable, Table
from mailmodule.modules._base import ModuleBase

__all__ = ["PassTable", "hash_password", "verify_password"]

# scrypt's cost: n = 2**14, r = 8, p = 1 (RFC 7914's interactive-login setting), 16 MiB.
_N: Final = 1 << 14
_R: Final = 8
_P: Final = 1
_MAXMEM: Final = 64 << 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A salted scrypt hash as stored in the table: `scrypt$n$r$p$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash, compared in constant time.

    Raises:
        DataError: the stored value is not a hash this module wrote (never naming it).
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            raise ValueError(f"unknown scheme {scheme!r}")
        want = _unb64(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(want),
        )
    except ValueError as exc:
        raise DataError(f"malformed password hash ({exc})") from None
    return hmac.compare_digest(got, want)


# Checked for unknown users, so that they cost as much as a wrong password.
_DUMMY_HASH: Final = hash_password(secrets.token_hex(8))


@final
class PassTable(ModuleBase):
    """`auth.pass_table`: `PlainAuth` and `PlainUserDB` over a table of password hashes.

    Settings: `table` (or the first inline argument), a table mapping usernames to hashes;
    a `MutableTable` lets users be created, changed and deleted.

    Hashes are salted scrypt from the stdlib's `hashlib` (n=2**14, r=8, p=1): a slow,
    memory-hard hash with no dependency to add. Comparison is constant-time, and an
    unknown user costs one scrypt as a wrong password does. Passwords never appear in
    logs, reprs or exceptions. `auth_plain` is slow by design: call it off the event loop.
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

    def init(self, cfg: ConfigMap) -> None:
        table = self.ref(cfg, "table", Table)
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
        """Check the password of `username`.

        Raises:
            UnknownCredentialsError: no such user here.
            AuthError: the password is wrong.
        """
        stored = self._lookup(username)
        if stored is None:
            verify_password(password, _DUMMY_HASH)  # the same cost as a wrong password
            raise UnknownCredentialsError(username)
        if not verify_password(password, stored):
            raise AuthError(f"invalid credentials for user {username!r}")

    def list_users(self) -> list[str]:
        return self._mutable().keys()

    def create_user(self, username: str, password: str) -> None:
        if self._lookup(username) is not None:
            raise AuthError(f"user {username!r} already exists")
        self._mutable().set_key(username, hash_password(password))

    def set_user_password(self, username: str, password: str) -> None:
        if self._lookup(username) is None:
            raise UnknownCredentialsError(username)
        self._mutable().set_key(username, hash_password(password))

    def delete_user(self, username: str) -> None:
        self._mutable().remove_key(username)
