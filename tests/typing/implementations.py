"""One correct implementation of every Protocol, type-checked and used at run time.

`mypy --strict` must accept every assignment below; tests/test_typing.py proves the
Protocols reject the mistakes in tests/typing/bad/.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import assert_type

from authres import SPFAuthenticationResult

from mailmodule import (
    AuthResult,
    Buffer,
    ConfigMap,
    ConnState,
    Header,
    HeaderField,
    MsgMetadata,
    TLSState,
)
from mailmodule.interfaces import (
    Blob,
    BlobStore,
    CertificateChain,
    Check,
    CheckResult,
    CheckState,
    Closer,
    Delivery,
    DeliveryMXAuthPolicy,
    DeliveryTarget,
    EarlyCheck,
    EndpointFactory,
    IMAPFilter,
    IMAPMailbox,
    IMAPUser,
    MailboxInfo,
    ManageableStorage,
    MessageInfo,
    Modifier,
    ModifierState,
    Module,
    ModuleFactory,
    MultiTable,
    MutableTable,
    MXAuthPolicy,
    MXLevel,
    PartialDelivery,
    PlainAuth,
    PlainUserDB,
    ReadCloser,
    StatusCollector,
    Storage,
    Table,
    TLSLevel,
    TLSLoader,
)


class Base:
    def __init__(self, mod_name: str, inst_name: str, aliases: list[str], args: list[str]):
        self._name, self._inst = mod_name, inst_name

    def init(self, cfg: ConfigMap) -> None:
        pass

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._inst

    def close(self) -> None:
        pass


class State:
    async def check_connection(self) -> CheckResult:
        return CheckResult()

    async def check_sender(self, mail_from: str) -> CheckResult:
        return CheckResult(auth_result=[SPFAuthenticationResult(result="pass")])

    async def check_rcpt(self, rcpt_to: str) -> CheckResult:
        return CheckResult()

    async def check_body(self, header: Header, body: Buffer) -> CheckResult:
        return CheckResult(header=Header([("X-Checked", "yes")]))

    def close(self) -> None:
        pass


class MyCheck(Base):
    async def check_state_for_msg(self, msg_meta: MsgMetadata) -> CheckState:
        return State()

    async def check_connection(self, state: ConnState) -> None:
        pass


class ModState:
    async def rewrite_sender(self, mail_from: str) -> str:
        return mail_from

    async def rewrite_rcpt(self, rcpt_to: str) -> list[str]:
        return [rcpt_to]

    async def rewrite_body(self, header: Header, body: Buffer) -> None:
        header.add("X-Modified", "1")

    def close(self) -> None:
        pass


class MyModifier(Base):
    async def mod_state_for_msg(self, msg_meta: MsgMetadata) -> ModifierState:
        return ModState()


class MyDelivery:
    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: Buffer) -> None:
        pass

    async def body_non_atomic(self, c: StatusCollector, header: Header, body: Buffer) -> None:
        c.set_status("a@example.org", None)

    async def abort(self) -> None:
        pass

    async def commit(self) -> None:
        pass


class MyTarget(Base):
    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> Delivery:
        return MyDelivery()


class Collector:
    def set_status(self, rcpt_to: str, err: Exception | None) -> None:
        pass


class MyBlob:
    def write(self, data: bytes, /) -> int:
        return len(data)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class MyBlobStore(Base):
    async def create(self, key: str, blob_size: int) -> Blob:
        return MyBlob()

    async def open(self, key: str) -> ReadCloser:
        return io.BytesIO(b"")

    async def delete(self, keys: list[str]) -> None:
        pass


class MyTable(Base):
    async def lookup(self, key: str) -> str | None:
        return None

    async def lookup_multi(self, key: str) -> list[str]:
        return []

    def keys(self) -> list[str]:
        return []

    def remove_key(self, k: str) -> None:
        pass

    def set_key(self, k: str, v: str) -> None:
        pass


class MyAuth(Base):
    def auth_plain(self, username: str, password: str) -> None:
        pass

    def list_users(self) -> list[str]:
        return []

    def create_user(self, username: str, password: str) -> None:
        pass

    def set_user_password(self, username: str, password: str) -> None:
        pass

    def delete_user(self, username: str) -> None:
        pass


class Folder:
    def name(self) -> str:
        return "INBOX"

    async def list_messages(self) -> list[MessageInfo]:
        return [MessageInfo(key="k", flags=frozenset({"\\Seen"}))]

    async def read_message(self, key: str) -> bytes:
        return b""

    async def set_message_flags(self, key: str, flags: Iterable[str]) -> None:
        pass

    async def append_message(
        self, message: bytes, flags: Iterable[str] = (), date: float | None = None
    ) -> str:
        return "k"

    async def expunge(self) -> list[str]:
        return []


class User:
    def username(self) -> str:
        return "u"

    def logout(self) -> None:
        pass

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return [MailboxInfo(name="INBOX")]

    async def get_mailbox(self, name: str) -> IMAPMailbox:
        return Folder()

    async def create_mailbox(self, name: str) -> None:
        pass

    async def delete_mailbox(self, name: str) -> None:
        pass

    async def rename_mailbox(self, existing_name: str, new_name: str) -> None:
        pass


class MyStorage(Base):
    def get_or_create_imap_acct(self, username: str) -> IMAPUser:
        return User()

    def get_imap_acct(self, username: str) -> IMAPUser:
        return User()

    def imap_extensions(self) -> list[str]:
        return []

    def list_imap_accts(self) -> list[str]:
        return []

    def create_imap_acct(self, username: str) -> None:
        pass

    def delete_imap_acct(self, username: str) -> None:
        pass


class MyFilter(Base):
    def imap_filter(
        self, account_name: str, rcpt_to: str, meta: MsgMetadata, hdr: Header, body: Buffer
    ) -> tuple[str, list[str]]:
        return "", []


class DeliveryPolicy:
    async def prepare_domain(self, domain: str) -> None:
        pass

    async def prepare_conn(self, mx: str) -> None:
        pass

    async def check_mx(self, mx_level: MXLevel, domain: str, mx: str, dnssec: bool) -> MXLevel:
        return MXLevel.MX_DNSSEC if dnssec else mx_level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        return tls_level

    def reset(self, new_msg: MsgMetadata | None) -> None:
        pass


class MyPolicy(Base):
    def start(self, msg_meta: MsgMetadata) -> DeliveryMXAuthPolicy:
        return DeliveryPolicy()

    def weight(self) -> int:
        return 10


class MyLoader(Base):
    def load_certs(self) -> list[CertificateChain]:
        return [CertificateChain(certfile="c.pem", keyfile="k.pem")]


def new_endpoint(mod_name: str, addrs: list[str]) -> Module:
    return Base(mod_name, mod_name, [], addrs)


args: tuple[str, str, list[str], list[str]] = ("x", "x", [], [])
module: Module = Base(*args)
closer: Closer = Base(*args)
check: Check = MyCheck(*args)
early: EarlyCheck = MyCheck(*args)
state: CheckState = State()
modifier: Modifier = MyModifier(*args)
mod_state: ModifierState = ModState()
target: DeliveryTarget = MyTarget(*args)
delivery: Delivery = MyDelivery()
partial: PartialDelivery = MyDelivery()
collector: StatusCollector = Collector()
blob: Blob = MyBlob()
blob_store: BlobStore = MyBlobStore(*args)
table: Table = MyTable(*args)
multi: MultiTable = MyTable(*args)
mutable: MutableTable = MyTable(*args)
auth: PlainAuth = MyAuth(*args)
user_db: PlainUserDB = MyAuth(*args)
storage: Storage = MyStorage(*args)
manageable: ManageableStorage = MyStorage(*args)
imap_filter: IMAPFilter = MyFilter(*args)
imap_user: IMAPUser = User()
imap_mailbox: IMAPMailbox = Folder()
policy: MXAuthPolicy = MyPolicy(*args)
delivery_policy: DeliveryMXAuthPolicy = DeliveryPolicy()
loader: TLSLoader = MyLoader(*args)
module_factory: ModuleFactory = MyTarget
endpoint_factory: EndpointFactory = new_endpoint


async def use(meta: MsgMetadata) -> None:
    assert_type(await check.check_state_for_msg(meta), CheckState)
    assert_type(await table.lookup("k"), str | None)
    assert_type(await multi.lookup_multi("k"), list[str])
    assert_type(await mod_state.rewrite_rcpt("a@b"), list[str])
    assert_type(await delivery_policy.check_mx(MXLevel.MX_NONE, "d", "mx", True), MXLevel)
    assert_type(CheckResult().auth_result, tuple[AuthResult, ...])
    assert_type(CheckResult().header, tuple[HeaderField, ...])
    assert_type(await imap_user.get_mailbox("INBOX"), IMAPMailbox)
    assert_type(await imap_mailbox.list_messages(), list[MessageInfo])
    assert_type(await imap_mailbox.append_message(b"", ["\\Seen"]), str)
