"""Fetching an MTA-STS policy file over HTTPS (RFC 8461 section 3.3), with the stdlib.

One GET of `https://mta-sts.<domain>/.well-known/mta-sts.txt` over HTTP/1.1 with
`Connection: close`; the certificate must verify for the host name (the context given must
verify). Redirects are not followed, only 200 with a text/plain body is taken, and the
body is capped at `MAX_POLICY_SIZE`, the header at 16 KiB, the whole exchange at `timeout`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final

from mailmodule.dns import DNSError, Resolver
from mailmodule.modules.mx_auth._sts import MAX_POLICY_SIZE, STSPolicyError

__all__ = ["fetch_policy_text"]

_MAX_HEADER: Final = 16 * 1024
_PATH: Final = "/.well-known/mta-sts.txt"


async def fetch_policy_text(
    domain: str,
    *,
    resolver: Resolver,
    context: ssl.SSLContext,
    port: int = 443,
) -> str:
    """The text of `domain`'s policy file, from `mta-sts.<domain>` on `port`.

    Each address of the host is tried in turn until one answers.

    Raises:
        STSPolicyError: the host has no address, no address could be reached, TLS or the
            certificate failed, or the reply is not a 200 text/plain body within limits.
    """
    host = f"mta-sts.{domain}"
    try:
        addresses = (await resolver.ip(host)).records
    except DNSError as exc:
        raise STSPolicyError(f"MTA-STS policy host {host}: {exc}") from exc
    if not addresses:
        raise STSPolicyError(f"MTA-STS policy host {host} has no address")
    last: Exception | None = None
    for address in addresses:
        try:
            return await _get(str(address), port, host, context)
        except (OSError, ssl.SSLError) as exc:  # the next address may answer
            last = exc
    raise STSPolicyError(f"MTA-STS policy host {host}: {last}") from last


async def _get(address: str, port: int, host: str, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=host)
    try:
        request = (
            f"GET {_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailmodule\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise STSPolicyError(f"MTA-STS policy host {host}: header too long") from exc
        except asyncio.IncompleteReadError as exc:
            raise STSPolicyError(f"MTA-STS policy host {host}: connection closed") from exc
        if len(head) > _MAX_HEADER:
            raise STSPolicyError(f"MTA-STS policy host {host}: header too long")
        headers = _headers(head, host)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _chunked(reader, host)
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isascii() or not length.isdigit() or int(length) > MAX_POLICY_SIZE:
                raise STSPolicyError(f"MTA-STS policy host {host}: bad length {length[:16]!r}")
            body = await _exactly(reader, int(length), host)
        else:
            body = await reader.read(MAX_POLICY_SIZE + 1)
            if len(body) > MAX_POLICY_SIZE or not reader.at_eof():
                raise STSPolicyError(f"MTA-STS policy host {host}: policy too long")
    finally:
        writer.close()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise STSPolicyError(f"MTA-STS policy host {host}: policy is not UTF-8") from exc


def _headers(head: bytes, host: str) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise STSPolicyError(f"MTA-STS policy host {host}: not an HTTP/1 reply")
    if parts[1] != "200":  # redirects too: RFC 8461 section 3.3 forbids following them
        raise STSPolicyError(f"MTA-STS policy host {host}: HTTP status {parts[1][:3]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "text/plain":
        raise STSPolicyError(f"MTA-STS policy host {host}: content type {media[:64]!r}")
    return headers


async def _exactly(reader: asyncio.StreamReader, size: int, host: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise STSPolicyError(f"MTA-STS policy host {host}: body cut short") from exc


async def _chunked(reader: asyncio.StreamReader, host: str) -> bytes:
    body = bytearray()
    while True:
        try:
            line = await reader.readline()  # ValueError past the stream's limit
            size_text = line.split(b";", 1)[0].strip()
            if not size_text.isalnum():
                raise ValueError(size_text)
            size = int(size_text, 16)
        except ValueError:
            raise STSPolicyError(f"MTA-STS policy host {host}: bad chunk size") from None
        if size < 0 or len(body) + size > MAX_POLICY_SIZE:
            raise STSPolicyError(f"MTA-STS policy host {host}: policy too long")
        if size == 0:
            return bytes(body)
        body += await _exactly(reader, size + 2, host)
        del body[-2:]
