"""Postfix (Debian's postfix) as the MX target.remote finds through DNS: it takes the mail
for its domain, and its lack of SMTPUTF8 keeps a non-ASCII local part from being sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmodule import Header, MemoryBuffer, MsgMetadata, SMTPError
from mailmodule.dns import Resolver
from mailmodule.metadata import MailOptions
from mailmodule.modules import RemoteTarget
from mailmodule.testing.dnsserver import DNSServer
from tests.interop.test_postfix_upstream import delivered, postfix
from tests.modules_kit import build, new_registry

__all__ = ["postfix"]  # the fixture, shared with target.smtp's Postfix tests

HEADER = Header([("From", "a@sender.example"), ("Subject", "To the MX")])
BODY = b"Found through the MX record.\r\n"


def remote(dns_server: DNSServer, port: int) -> RemoteTarget:
    dns_server.add_zone("@ MX 10 mx\nmx A 127.0.0.1", origin="example.org")
    registry = new_registry()
    settings = {"nameservers": ["127.0.0.1"], "port": dns_server.port}
    registry.register_instance(Resolver(nameservers=["127.0.0.1"], port=dns_server.port), settings)
    target = build(
        registry, "target.remote", "remote", {"hostname": "out.sender.example", "smtp_port": port}
    )
    assert isinstance(target, RemoteTarget)
    return target


async def test_postfix_as_the_mx_gets_the_mail_for_its_domain(
    dns_server: DNSServer, postfix: tuple[Path, int]
) -> None:
    maildir, port = postfix
    target = remote(dns_server, port)
    delivery = await target.start(MsgMetadata(id="m"), "a@sender.example")
    await delivery.add_rcpt("joe@example.org")
    await delivery.body(HEADER, MemoryBuffer(BODY))
    await delivery.commit()
    messages = await delivered(maildir, 1)
    assert any(
        b"Return-Path: <a@sender.example>" in m and b"Delivered-To: joe@example.org" in m
        for m in messages
    )


async def test_a_non_ascii_local_part_is_refused_where_the_mx_has_no_smtputf8(
    dns_server: DNSServer, postfix: tuple[Path, int]
) -> None:
    _maildir, port = postfix
    target = remote(dns_server, port)
    delivery = await target.start(
        MsgMetadata(id="m", smtp_opts=MailOptions(utf8=True)), "a@sender.example"
    )
    with pytest.raises(SMTPError) as refused:
        await delivery.add_rcpt("jöe@example.org")
    await delivery.abort()
    assert refused.value.enhanced_code == (5, 6, 7)
