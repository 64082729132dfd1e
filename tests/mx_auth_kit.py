"""What the mx_auth tests share: TLSA records of real certificates, policies built through
a registry whose `dns` instance asks a loopback server, and an HTTPS policy host."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import TypedDict, cast

import attrs
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typing_extensions import Unpack

from mailmodule import MXAuthPolicy
from mailmodule.dns import TLSA, Resolver
from tests.modules_kit import build, new_registry


def chain(leaf: trustme.LeafCert) -> tuple[bytes, ...]:
    """The certificate chain a server with `leaf` sends, as DER, leaf first."""
    return tuple(ssl.PEM_cert_to_DER_cert(pem.bytes().decode()) for pem in leaf.cert_chain_pems)


def ca_der(ca: trustme.CA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


def tlsa(usage: int, selector: int, mtype: int, der: bytes) -> TLSA:
    """The TLSA record of certificate `der` with these parameters."""
    data = der
    if selector == 1:
        key = x509.load_der_x509_certificate(der).public_key()
        data = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return TLSA(usage=usage, selector=selector, mtype=mtype, data=data)


def zone_line(name: str, record: TLSA) -> str:
    """`record` as a zone-file line for `_25._tcp.<name>`."""
    return (
        f"_25._tcp.{name} TLSA {record.usage} {record.selector} {record.mtype} {record.data.hex()}"
    )


def policy(
    module: str,
    settings: Mapping[str, object] | None = None,
    *,
    dns_port: int = 53,
    dnssec: bool = True,
) -> MXAuthPolicy:
    """`module` built by a registry whose shared resolver asks 127.0.0.1 on `dns_port`."""
    registry = new_registry()
    resolver = Resolver(nameservers=["127.0.0.1"], port=dns_port)
    dns_settings = {"nameservers": ["127.0.0.1"], "port": dns_port, "dnssec": dnssec}
    registry.register_instance(resolver, dns_settings)
    return cast(MXAuthPolicy, build(registry, module, "policy", settings or {}))


@attrs.define
class PolicyHost:
    """An HTTPS server answering every request with `status`, `content_type` and `body`."""

    port: int = 0
    status: str = "200 OK"
    content_type: str = "text/plain"
    body: bytes = b""
    chunked: bool = False
    requests: list[bytes] = attrs.Factory(list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            head = f"HTTP/1.1 {self.status}\r\nContent-Type: {self.content_type}\r\n"
            if self.chunked:
                half = len(self.body) // 2
                parts = [self.body[:half], self.body[half:]]
                data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
                head += "Transfer-Encoding: chunked\r\n"
            else:
                data = self.body
                head += f"Content-Length: {len(data)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + data)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a client that hung up (a failed handshake) is not the server's problem
        finally:
            writer.close()


class Answer(TypedDict, total=False):
    """How a `PolicyHost` answers: its fields, each optional."""

    status: str
    content_type: str
    body: bytes
    chunked: bool


@contextlib.asynccontextmanager
async def policy_host(
    ca: trustme.CA, name: str, **answer: Unpack[Answer]
) -> AsyncIterator[PolicyHost]:
    """A `PolicyHost` on a free loopback port with a certificate for `name` from `ca`."""
    host = PolicyHost(**answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    server = await asyncio.start_server(host._serve, "127.0.0.1", 0, ssl=context)
    host.port = server.sockets[0].getsockname()[1]
    async with server:
        yield host
