"""Every module interface of maddy's `framework/module` package, as `typing.Protocol`s.

Each Protocol's docstring states the seed's contract in our terms: what callers may assume,
what implementers must guarantee, and what is raised. House rules of the translation:

- a Go method that takes a `context.Context` is an `async def`; cancellation and deadlines
  come from asyncio. A Go method without one stays synchronous.
- a Go `error` result is an exception under `mailmodule.MailModuleError`; errors meant for an
  SMTP client are `SMTPError`s.
- a Go `(value, bool, error)` lookup returns `value | None` and raises on error.
- names are snake_case: `CheckStateForMsg` is `check_state_for_msg`.

Every Protocol is `@runtime_checkable`, so the registry and the pipeline can test with
`isinstance` which interfaces a module implements, optional ones (`EarlyCheck`,
`PartialDelivery`, `MultiTable`, `Closer`) included. `isinstance` checks only that the
methods exist; mypy checks their signatures.

Modules implementing an interface are registered under a name with the seed's prefix:
"check.", "modify.", "target.", "auth.", "table.", "storage.", "mx_auth.", "tls.loader.",
"imap.filter.".
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Final, Protocol, final, runtime_checkable

import attrs
from authres import AuthenticationResult

from mailmodule.buffer import Buffer
from mailmodule.config import ConfigMap
from mailmodule.errors import SMTPError
from mailmodule.header import Header, HeaderField
from mailmodule.metadata import ConnState, MsgMetadata, TLSState

__all__ = [
    "AUTH_COMMON_DOMAIN",
    "AUTH_DISABLED",
    "AUTH_DNSSEC",
    "AUTH_MTASTS",
    "SYSTEM_FLAGS",
    "UNKNOWN_BLOB_SIZE",
    "AuthResult",
    "AuthResultProperty",
    "Blob",
    "BlobStore",
    "CertificateChain",
    "Check",
    "CheckResult",
    "CheckState",
    "Closer",
    "Delivery",
    "DeliveryMXAuthPolicy",
    "DeliveryTarget",
    "EarlyCheck",
    "EndpointFactory",
    "FuncNewEndpoint",
    "FuncNewModule",
    "IMAPFilter",
    "IMAPMailbox",
    "IMAPUser",
    "MXAuthPolicy",
    "MXLevel",
    "MailboxInfo",
    "ManageableStorage",
    "MessageInfo",
    "Modifier",
    "ModifierState",
    "Module",
    "ModuleFactory",
    "MultiTable",
    "MutableTable",
    "PartialDelivery",
    "PlainAuth",
    "PlainUserDB",
    "ReadCloser",
    "ResultsCheck",
    "StatusCollector",
    "Storage",
    "TLSLevel",
    "TLSLoader",
    "Table",
]

# Outbound security policies (seed: AuthDisabled, AuthMTASTS, AuthDNSSEC, AuthCommonDomain).
AUTH_DISABLED: Final = "off"
AUTH_MTASTS: Final = "mtasts"
AUTH_DNSSEC: Final = "dnssec"
AUTH_COMMON_DOMAIN: Final = "common_domain"

#: `BlobStore.create`'s `blob_size` when the size is not known in advance.
UNKNOWN_BLOB_SIZE: Final = -1


class TLSLevel(enum.IntEnum):
    """The security established for an outbound TLS connection, weakest first."""

    TLS_NONE = 0
    TLS_ENCRYPTED = 1
    TLS_AUTHENTICATED = 2

    def __str__(self) -> str:
        return self.name.removeprefix("TLS_").lower()


class MXLevel(enum.IntEnum):
    """The security established for an MX record, weakest first.

    The values are the seed's: its single `const` block continues `iota` after the TLS
    levels, so MX_NONE is 3. Compare levels by order, never by value.
    """

    MX_NONE = 3
    MX_MTASTS = 4
    MX_DNSSEC = 5

    def __str__(self) -> str:
        return self.name.removeprefix("MX_").lower()


# Identity and life cycle.


@runtime_checkable
class Module(Protocol):
    """What every module instance is: something with a name that can be initialized.

    Callers may assume: `name()` and `instance_name()` are cheap, constant and safe from any
    thread.
    Implementers must: do the real initialization in `init`, not in the factory, so that
    every instance exists (and may be referenced) before any is initialized; report the
    module name (such as "target.maildir") from `name()` and the instance's own name, or
    "" for an unnamed (inline) instance, from `instance_name()`. A module that starts
    background work must stop it in `close()` (see `Closer`) before returning.
    Raises: `init` raises `ConfigError` for bad settings and any `MailModuleError` for
    other failures; the registry wraps it in `ModuleInitError`.
    """

    def init(self, cfg: ConfigMap) -> None:
        """Initialize from the module's settings. Called at most once."""
        ...

    def name(self) -> str:
        """The module's name, as used in configuration and logs."""
        ...

    def instance_name(self) -> str:
        """The unique name of this instance, or "" when it has none."""
        ...


@runtime_checkable
class Closer(Protocol):
    """An optional interface (Go's io.Closer) for modules that hold resources.

    Callers may assume: nothing; `close()` is called once at shutdown, in reverse order of
    initialization.
    Implementers must: release resources and stop background work before returning.
    Raises: any `MailModuleError`; shutdown reports it and goes on closing the others.
    """

    def close(self) -> None: ...


#: Builds a module instance: `factory(mod_name, inst_name, aliases, inline_args)`.
#: `inst_name` is "" for an inline definition, whose settings then come in `inline_args`.
ModuleFactory = Callable[[str, str, list[str], list[str]], Module]
#: Builds an endpoint: `factory(mod_name, addrs)`. Endpoints are not registered as
#: instances, have no instance name (`instance_name()` returns `name()`) and get their
#: listening addresses in `addrs`.
EndpointFactory = Callable[[str, list[str]], Module]
#: The seed's names for the factory types.
FuncNewModule = ModuleFactory
FuncNewEndpoint = EndpointFactory


# Checks.


@final
@attrs.frozen
class AuthResultProperty:
    """One property of an authentication result: `type.name=value (comment)`, such as
    `smtp.mailfrom=joe@example.org` or `header.d=example.org`."""

    type: str
    name: str
    value: str | None = None
    comment: str | None = None


def _properties(value: Iterable[AuthResultProperty]) -> tuple[AuthResultProperty, ...]:
    return tuple(
        p
        if isinstance(p, AuthResultProperty)
        else AuthResultProperty(p.type, p.name, p.value, p.comment)
        for p in value
    )


@final
@attrs.frozen(kw_only=True)
class AuthResult:
    """One result for the Authentication-Results field (RFC 8601), as a value.

    `authres`'s result objects are mutable; checks may return them, and `CheckResult`
    keeps a frozen copy made by `AuthResult.of`, so that one message's results cannot be
    changed under another's.
    """

    method: str
    result: str
    version: str | None = None
    result_comment: str | None = None
    reason: str | None = None
    reason_comment: str | None = None
    properties: tuple[AuthResultProperty, ...] = attrs.field(default=(), converter=_properties)

    @classmethod
    def of(cls, res: AuthResult | AuthenticationResult) -> AuthResult:
        """A frozen copy of an `authres` result (an AuthResult is returned as it is)."""
        if isinstance(res, AuthResult):
            return res
        return cls(
            method=res.method,
            result=res.result,
            version=res.version,
            result_comment=res.result_comment,
            reason=res.reason,
            reason_comment=res.reason_comment,
            properties=[
                AuthResultProperty(p.type, p.name, p.value, p.comment) for p in res.properties
            ],
        )

    def get(self, type: str, name: str) -> str | None:
        """The value of the first property `type.name`, such as ("header", "d")."""
        for p in self.properties:
            if p.type == type and p.name == name:
                return p.value
        return None


def _results(value: Iterable[AuthResult | AuthenticationResult]) -> tuple[AuthResult, ...]:
    return tuple(AuthResult.of(r) for r in value)


def _fields(value: Header | Iterable[HeaderField]) -> tuple[HeaderField, ...]:
    fields = tuple(value.fields() if isinstance(value, Header) else value)
    for field in fields:
        if not isinstance(field, HeaderField):
            raise TypeError(
                f"CheckResult.header takes a Header or HeaderFields, got {type(field).__name__}"
            )
    return fields


@final
@attrs.frozen(kw_only=True)
class CheckResult:
    """What a check says about a message at one stage. `CheckResult()` says nothing.

    `reject` refuses the message with `reason` (a generic 5.7.1 reply when None);
    `quarantine` asks for delivery to the Junk folder; `auth_result` holds results for the
    Authentication-Results field; `header` holds fields to add to the message after all body
    checks, top first. `auth_result` accepts `AuthResult`s or `authres` results and keeps
    frozen `AuthResult` copies; `header` accepts a `Header` or `HeaderField`s: both are
    kept as tuples, so a result is an immutable, hashable value all the way down that one
    message cannot change under another (a check may share one result among messages).
    A `reason` that is not an `SMTPError` is refused by the pipeline as the check's
    temporary failure (451 4.7.0, naming the check).
    """

    reason: SMTPError | None = None
    reject: bool = False
    quarantine: bool = False
    auth_result: tuple[AuthResult, ...] = attrs.field(default=(), converter=_results)
    header: tuple[HeaderField, ...] = attrs.field(default=(), converter=_fields)
    #: True when the result says nothing at all (read once per check and stage).
    quiet: bool = attrs.field(init=False, eq=False, repr=False)

    @quiet.default
    def _says_nothing(self) -> bool:
        return not (
            self.reject
            or self.quarantine
            or self.header
            or self.auth_result
            or self.reason is not None
        )


@runtime_checkable
class Check(Protocol):
    """A module that inspects messages, read-only except for header fields it adds.

    Registered with the "check." prefix.

    Callers may assume: a fresh `CheckState` per message, which the caller closes.
    Implementers must: return a hashable state (identity hashing is enough): the pipeline
    uses it to call each state once even when a check is configured twice; not keep the
    `MsgMetadata` passed in (copy it with `deep_copy()` when it must be kept).
    Raises: any `MailModuleError` when no state can be made; the message is then refused.
    """

    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> CheckState:
        """A state for checking one message."""
        ...


@runtime_checkable
class CheckState(Protocol):
    """One message's passage through one check.

    Callers may assume (the pipeline guarantees): stages are called in order,
    `check_connection`, `check_sender`, `check_rcpt` once per recipient, `check_body`;
    `close()` is called exactly once when the message is done, also after any failure or
    cancellation.
    Implementers must: report verdicts in the `CheckResult` rather than by raising; work on
    the header only through the `CheckResult` (the body is read-only); keep `close()`
    synchronous and quick. `check_connection`'s result may be cached for the connection,
    so it may not be called for every message.
    Raises: a check that raises instead of returning a result is treated as a temporary
    failure of that check.
    """

    async def check_connection(self) -> CheckResult:
        """Judge the connection the message arrives on."""
        ...

    async def check_sender(self, mail_from: str) -> CheckResult:
        """Judge the sender (MAIL FROM)."""
        ...

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        """Judge one recipient (RCPT TO)."""
        ...

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        """Judge the header and the buffered body. Do not change `header`: return fields."""
        ...

    def close(self) -> None:
        """The message is done; release what the state holds."""
        ...


@runtime_checkable
class EarlyCheck(Protocol):
    """An optional interface of a `Check` module: judge a connection before its session.

    Used to refuse obviously bad clients before resources are spent on them. It can only
    accept or refuse: no quarantine, no header fields.

    Callers may assume: it is called once per connection, with what is known at connect time.
    Implementers must: return to accept.
    Raises: `SMTPError` to refuse the connection with that reply.
    """

    async def check_connection(self, state: ConnState) -> None: ...


# Modifiers.


@runtime_checkable
class Modifier(Protocol):
    """A module that rewrites the envelope or adds header fields. Registered as "modify.".

    The body cannot be changed: that would need re-buffering, could invalidate earlier
    checks and would break DKIM signatures. Existing header fields should not be removed or
    changed either.

    Callers may assume: a fresh `ModifierState` per message, which the caller closes.
    Implementers must: not keep the `MsgMetadata` passed in.
    Raises: any `MailModuleError` when no state can be made; the message is then refused.
    """

    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> ModifierState:
        """A state for modifying one message."""
        ...


@runtime_checkable
class ModifierState(Protocol):
    """One message's passage through one modifier.

    Callers may assume (the pipeline guarantees): calls are strictly ordered:
    `rewrite_sender` first, then `rewrite_rcpt` for each recipient, then `rewrite_body`;
    so a state may remember earlier values for later calls. `close()` is called exactly
    once, also after any failure.
    Implementers must: return the argument unchanged when there is nothing to change;
    return at least one recipient from `rewrite_rcpt`; leave `MsgMetadata.original_from`
    and `original_rcpts` alone (the pipeline fills `original_rcpts`).
    Raises: any `MailModuleError`; the message (or recipient) is refused.
    """

    async def rewrite_sender(self, mail_from: str) -> str:
        """The sender to use instead of `mail_from` (or `mail_from` itself)."""
        ...

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        """The recipients to use instead of `rcpt_to`: one or more, never none."""
        ...

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        """Add fields to `header` (changed in place); `body` may be read to decide."""
        ...

    def close(self) -> None:
        """The message is done; release what the state holds."""
        ...


@runtime_checkable
class ResultsCheck(Protocol):
    """Judges a message by what all its checks found: DMARC (RFC 7489) is one.

    Not in maddy's module package: maddy's pipeline runs DMARC itself (its `dmarc`
    directive). Here the pipeline runs any number of these (`Pipeline(result_checks=...)`)
    without knowing what they do, so it needs no import of DNS or of a module.

    Callers may assume (the pipeline guarantees): `check_results` is called once per
    message, after every body check, with the header as received and the authentication
    results of all checks in configured order; what it returns is merged as a check's
    result: `auth_result` goes into the Authentication-Results field after the checks'
    own, `quarantine` sends the message to Junk, `reject` refuses it with `reason` (no
    fail action applies: the result is the verdict).
    Implementers must: not change `header`; be safe to call concurrently for different
    messages.
    Raises: an exception is a temporary failure of the message (451 4.7.0).
    """

    async def check_results(
        self, msg_meta: MsgMetadata, header: Header, results: tuple[AuthResult, ...]
    ) -> CheckResult:
        """The verdict on the message, given the results of its checks."""
        ...


# Delivery.


@runtime_checkable
class DeliveryTarget(Protocol):
    """A final destination for messages: a mailbox, a queue, a remote server.

    Registered with the "target." prefix.

    Callers may assume: each `start` begins an independent delivery.
    Implementers must: accept a `mail_from` whose domain is already U-labels, NFC and
    lower-cased (the message source calls `address.clean_domain`); not keep `msg_meta`.
    Raises: any `MailModuleError` when no delivery can start; an `SMTPError` says what to
    reply.
    """

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        """Begin delivering one message from `mail_from`."""
        ...


@runtime_checkable
class Delivery(Protocol):
    """One message on its way into one target.

    Callers may assume (the pipeline guarantees): `add_rcpt` for each recipient, then
    `body` once, then exactly one of `commit` or `abort`; `abort` may also come at any
    earlier point.
    Implementers must: make nothing visible before `commit` (maildir: `body` writes to
    tmp/, `commit` moves to new/, `abort` removes), and roll back in `abort` what cannot
    wait; fold case and ignore duplicate recipients silently in `add_rcpt` (the caller does
    neither); check as much as possible in `add_rcpt` and refuse recipients that cannot be
    used; treat a failed `body` as failing every recipient (or implement
    `PartialDelivery`); refuse `commit` after a failed `body`. `commit` should never fail:
    its failure breaks the atomicity of a delivery to several targets.
    Cancellation, step by step: a cancelled `add_rcpt` must leave the recipient out (or
    leave the delivery fit only for `abort`); a cancelled `body` leaves the delivery fit
    only for `abort`, which must then remove whatever the body wrote; `commit` and `abort`
    should not be cancelled (callers shield them and bound them with a timeout), and an
    implementation that is cancelled there anyway must leave either the whole message
    committed or nothing visible. `abort` must work after any earlier step, also one that
    failed or was cancelled. The pipeline's own delivery, `PipelineDelivery`, aborts the
    whole message when `add_rcpt` or `body` is cancelled, and runs `commit` and `abort` to
    their end before letting a cancellation through.
    Raises: `SMTPError` (the reply for the recipient or message), other `MailModuleError`s
    for internal failures.
    """

    async def add_rcpt(self, rcpt_to: str) -> None:
        """Add a recipient; its domain is U-labels, NFC and lower-cased."""
        ...

    async def body(self, header: Header, body: Buffer) -> None:
        """Take the message content. Failure fails every recipient."""
        ...

    async def abort(self) -> None:
        """Cancel the delivery, undoing what can be undone."""
        ...

    async def commit(self) -> None:
        """Complete the delivery."""
        ...


@runtime_checkable
class StatusCollector(Protocol):
    """Receives per-recipient outcomes from `PartialDelivery.body_non_atomic`.

    Callers may assume: nothing beyond the signature.
    Implementers must: be safe to call from several tasks and threads.
    Raises: nothing.
    """

    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        """Record the outcome for `rcpt_to` (exactly as given to `add_rcpt`): None for
        success, the error otherwise. Called at most once per recipient, and never after
        `body_non_atomic` returned."""
        ...


@runtime_checkable
class PartialDelivery(Protocol):
    """An optional interface of a `Delivery` that can fail some recipients and not others.

    Preferred by LMTP and queues, which can report per-recipient outcomes.

    Callers may assume: nothing beyond `Delivery`.
    Implementers must: call `c.set_status` at most once per recipient, with the address as
    given to `add_rcpt`, before returning; a recipient without a status succeeded.
    Raises: nothing: failures go to the collector.
    """

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        """Like `Delivery.body`, reporting failures per recipient to `c`."""
        ...


# Storage of large objects.


@runtime_checkable
class ReadCloser(Protocol):
    """A readable binary stream (Go's io.ReadCloser): files and `io.BytesIO` qualify."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class Blob(Protocol):
    """A blob being written. Written, then `sync`ed, then `close`d.

    Callers may assume: nothing is visible under the key until `sync` succeeds.
    Implementers must: discard the data on `close` without `sync`; fail any call once more
    than the announced size has been written.
    Raises: `StorageError` on write failures or an oversize blob.
    """

    def write(self, data: bytes, /) -> int: ...

    def sync(self) -> None:
        """All data is written: make the blob visible under its key, durably."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BlobStore(Protocol):
    """Storage for large binary objects by key. Registered with the "storage." prefix.

    Callers may assume: `delete` ignores missing keys.
    Implementers must: follow `Blob`'s contract; reject keys that could escape the store.
    Raises: `NoSuchBlobError` from `open` for a missing key; `StorageError` otherwise.
    """

    async def create(self, key: str, blob_size: int) -> Blob:
        """Start writing the blob `key`; `blob_size` is its exact size, or
        `UNKNOWN_BLOB_SIZE`."""
        ...

    async def open(self, key: str) -> ReadCloser:
        """A reader for the blob `key`."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove the blobs; keys that do not exist are ignored."""
        ...


# Tables.


@runtime_checkable
class Table(Protocol):
    """Maps a key (an address, a domain) to a value. Registered with the "table." prefix.

    Callers may assume: `lookup` has no side effects and may run in several tasks at once.
    Implementers must: return None for a missing key, never raise for it.
    Raises: any `MailModuleError` when the backing store fails.
    """

    async def lookup(self, key: str) -> str | None:
        """The value for `key`, or None."""
        ...


@runtime_checkable
class MultiTable(Protocol):
    """An optional interface of a `Table` that can give several values for a key.

    Callers may assume: an empty list means a missing key.
    Implementers must: agree with `lookup` (its value is one of these).
    Raises: any `MailModuleError` when the backing store fails.
    """

    async def lookup_multi(self, key: str) -> list[str]: ...


@runtime_checkable
class MutableTable(Table, Protocol):
    """A `Table` that can be changed.

    Callers may assume: after `set_key(k, v)`, `lookup(k)` gives `v`.
    Implementers must: make each change atomic.
    Raises: any `MailModuleError` when the backing store fails; removing a missing key is
    not an error.
    """

    def keys(self) -> list[str]: ...

    def remove_key(self, k: str) -> None: ...

    def set_key(self, k: str, v: str) -> None: ...


# Authentication.


@runtime_checkable
class PlainAuth(Protocol):
    """Checks username and password pairs. Registered with the "auth." prefix.

    Callers may assume: it may be slow (password hashing): call it off the event loop.
    Implementers must: never log, keep or put into an exception the password; take the
    same time for an unknown user as for a wrong password.
    Raises: `UnknownCredentialsError` when the user is not known here (another provider
    may know them); `AuthError` when the password is wrong.
    """

    def auth_plain(self, username: str, password: str) -> None: ...


@runtime_checkable
class PlainUserDB(PlainAuth, Protocol):
    """A local credential store that can be managed (maddyctl's `creds`)."""

    def list_users(self) -> list[str]: ...

    def create_user(self, username: str, password: str) -> None: ...

    def set_user_password(self, username: str, password: str) -> None: ...

    def delete_user(self, username: str) -> None: ...


# IMAP storage.


#: The IMAP system flags (RFC 3501 2.3.2) a storage keeps, as IMAP writes them.
SYSTEM_FLAGS: Final = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


@final
@attrs.frozen(kw_only=True)
class MailboxInfo:
    """One folder of an IMAP account, as LIST shows it.

    `name` is the IMAP name (Unicode, levels joined by `delimiter`); `attributes` holds
    LIST attributes such as "\\HasChildren", "\\HasNoChildren" and "\\Noselect" (a level
    that exists only because it has children).
    """

    name: str
    delimiter: str = "."
    attributes: frozenset[str] = frozenset()


@final
@attrs.frozen(kw_only=True)
class MessageInfo:
    """One message of a folder: its key, flags, size and arrival time.

    `key` identifies the message in its folder for as long as it exists (a Maildir's
    unique name); `flags` holds IMAP flags ("\\Seen", ...); `size` is in bytes;
    `internal_date` is IMAP's INTERNALDATE as a POSIX timestamp.
    """

    key: str
    flags: frozenset[str] = frozenset()
    size: int = 0
    internal_date: float = 0.0


@runtime_checkable
class IMAPMailbox(Protocol):
    """One folder of an IMAP account: its messages and their flags.

    Callers may assume: message keys are stable while the message exists (also across
    flag changes); every method may be called from several tasks at once, and with another
    program (an IMAP server) working on the same folder.
    Implementers must: make each change atomic: a message is appended whole or not at
    all, and a flag change never shows a message twice or loses it; keep flags they do not
    understand (another program's keywords) when setting flags; do blocking I/O off the
    event loop.
    Raises: `NoSuchMailboxError` for a message key (or the folder itself) that does not
    exist; `InvalidNameError` for a malformed key or a flag the storage cannot keep;
    `UnsafePathError` when the folder or message is a symbolic link; `StorageError` when
    the backing store fails.
    """

    def name(self) -> str:
        """The folder's IMAP name ("INBOX", "Archive.2024")."""
        ...

    async def list_messages(self) -> list[MessageInfo]:
        """Every message of the folder, oldest first."""
        ...

    async def read_message(self, key: str) -> bytes:
        """The message `key`, byte for byte as stored."""
        ...

    async def set_message_flags(self, key: str, flags: Iterable[str]) -> None:
        """Replace the flags of the message `key` with `flags` (IMAP's STORE FLAGS)."""
        ...

    async def append_message(
        self, message: bytes, flags: Iterable[str] = (), date: float | None = None
    ) -> str:
        """Store `message` with `flags` (and INTERNALDATE `date`); returns its key."""
        ...

    async def expunge(self) -> list[str]:
        """Remove the messages flagged "\\Deleted"; returns their keys."""
        ...


@runtime_checkable
class IMAPUser(Protocol):
    """One IMAP account (go-imap's `backend.User`): its folders.

    The seed needs only `username` and `logout`; the folder methods are what a mail client
    needs (LIST, CREATE, RENAME, DELETE, SELECT). Folder names are IMAP names, levels
    joined by the storage's delimiter; "INBOX" (in any case) is the inbox, which always
    exists.

    Callers may assume: the folder methods may be called from several tasks at once, and
    with another program working on the same account.
    Implementers must: refuse names that could leave the account (a "/" or NUL, an empty
    level) with `InvalidNameError`; never delete or rename INBOX; move a folder's children
    with it on rename; create missing parents on create and rename; do blocking I/O off
    the event loop. `logout` must be idempotent.
    Raises: `InvalidNameError` for a refused name (and for deleting or renaming INBOX);
    `NoSuchMailboxError` for a folder that does not exist; `MailboxExistsError` when
    creating or renaming onto an existing folder; `UnsafePathError` for a symbolic link in
    the account; `StorageError` when the backing store fails.
    """

    def username(self) -> str: ...

    def logout(self) -> None: ...

    async def list_mailboxes(self) -> list[MailboxInfo]:
        """Every folder, INBOX first, then by name; parents before their children."""
        ...

    async def get_mailbox(self, name: str) -> IMAPMailbox:
        """The folder `name` (which must exist)."""
        ...

    async def create_mailbox(self, name: str) -> None:
        """Create the folder `name` and any missing parent."""
        ...

    async def delete_mailbox(self, name: str) -> None:
        """Delete the folder `name` and its messages; its children stay."""
        ...

    async def rename_mailbox(self, existing_name: str, new_name: str) -> None:
        """Rename the folder `existing_name`, and its children, to `new_name`."""
        ...


@runtime_checkable
class Storage(Protocol):
    """IMAP mail storage (go-imap's Backend without authentication).

    Registered with the "storage." prefix.

    Callers may assume: the methods are synchronous, as the seed's, and may block on
    I/O: call them through `asyncio.to_thread` from the event loop; they are safe to call
    from several threads.
    Implementers must: give the same account for the same name each time; refuse user
    names that could leave the storage with `InvalidNameError`.
    Raises: `InvalidNameError` for a refused user name; `NoSuchMailboxError` from
    `get_imap_acct` for an unknown user; `StorageError` when the backing store fails.
    """

    def get_or_create_imap_acct(self, username: str) -> IMAPUser:
        """The account `username`, created when it does not exist."""
        ...

    def get_imap_acct(self, username: str) -> IMAPUser:
        """The existing account `username`."""
        ...

    def imap_extensions(self) -> list[str]:
        """The IMAP extensions the storage supports, such as "MOVE"."""
        ...


@runtime_checkable
class ManageableStorage(Storage, Protocol):
    """A `Storage` whose accounts can be listed, created and deleted (maddyctl's
    `imap-acct`).

    Callers may assume: any name `create_imap_acct` accepts is listed, exactly as given,
    by `list_imap_accts` until `delete_imap_acct` removes it.
    Implementers must: refuse a name that would not round-trip with `InvalidNameError`
    rather than store it altered.
    Raises: `InvalidNameError` for a refused user name; `MailboxExistsError` from
    `create_imap_acct` for an existing user; `NoSuchMailboxError` from `delete_imap_acct`
    for an unknown one; `StorageError` when the backing store fails.
    """

    def list_imap_accts(self) -> list[str]:
        """Every account, sorted."""
        ...

    def create_imap_acct(self, username: str) -> None:
        """Create the account `username`."""
        ...

    def delete_imap_acct(self, username: str) -> None:
        """Delete the account `username` with all its mail."""
        ...


@runtime_checkable
class IMAPFilter(Protocol):
    """Chooses the IMAP folder and flags of a message as it is stored.

    Registered with the "imap.filter." prefix. Called only for messages that arrived over
    SMTP; `hdr` and `body` are the message exactly as it will be stored.

    Callers may assume: nothing beyond the signature; it may block (run a command): call
    it through `asyncio.to_thread`. Quarantined messages are not filtered: they go to Junk.
    Implementers must: return ("", []) to change nothing; never change `hdr` or `body`.
    Raises: `FilterError` (or any exception) when the filter cannot decide: the caller
    logs it and delivery goes on as if it had returned ("", []).
    """

    def imap_filter(
        self,
        account_name: str,
        rcpt_to: str,
        meta: MsgMetadata,
        hdr: Header,
        body: Buffer,
    ) -> tuple[str, list[str]]:
        """The folder ("" to keep the default) and extra flags for the message."""
        ...


# Outbound security policy.


@runtime_checkable
class MXAuthPolicy(Protocol):
    """A security policy for outbound connections (MTA-STS, DANE, local policy).

    Registered with the "mx_auth." prefix. A policy checks levels, raises them when a
    condition holds, or refuses an MX or connection; mixing these in one policy is
    discouraged.
    """

    def start(self, msg_meta: MsgMetadata) -> DeliveryMXAuthPolicy:
        """A per-delivery policy object."""
        ...

    def weight(self) -> int:
        """Order of application, 0 to 1000."""
        ...


@runtime_checkable
class DeliveryMXAuthPolicy(Protocol):
    """One delivery's view of an `MXAuthPolicy`.

    Callers may assume: `prepare_domain` before the MX lookup, `prepare_conn` before each
    connection, then `check_mx` and `check_conn`.
    Implementers must: return quickly from the `prepare_*` calls (start lookups as tasks)
    and defer their errors to `check_mx` or `check_conn`; accept `reset(None)` when the
    object is no longer needed.
    Raises: `check_mx` and `check_conn` raise `SMTPError` to refuse the MX or connection.
    """

    async def prepare_domain(self, domain: str) -> None: ...

    async def prepare_conn(self, mx: str) -> None: ...

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        """The MX level after this policy; `dnssec` tells whether the lookup was signed."""
        ...

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        """The TLS level after this policy. `tls_state.handshake_complete` is false without
        TLS; no peer certificates means no verification was done."""
        ...

    def reset(self, new_msg: MsgMetadata | None) -> None:
        """Forget the state, for another message (or none)."""
        ...


# TLS.


@final
@attrs.frozen(kw_only=True)
class CertificateChain:
    """A certificate chain and its private key, as PEM files (Go's tls.Certificate)."""

    certfile: str
    keyfile: str


@runtime_checkable
class TLSLoader(Protocol):
    """Supplies certificates to TLS endpoints. Registered with the "tls.loader." prefix.

    Callers may assume: with several chains, the endpoint picks one by SNI.
    Implementers must: cache what they load: `load_certs` is called for each connection.
    Raises: any `MailModuleError` when certificates cannot be loaded.
    """

    def load_certs(self) -> list[CertificateChain]: ...
