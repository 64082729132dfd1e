"""Parse + serialize a realistic 20-field header: ours against the stdlib's parser."""

from __future__ import annotations

import email.parser
import email.policy

from _bench import compare

from mailmodule.header import Header, HeaderField, read_header

HEADER = (
    b"Return-Path: <bounces+123@mail.example.net>\r\n"
    b"Delivered-To: joe@example.org\r\n"
    b"Received: from mx1.example.net (mx1.example.net [192.0.2.10])\r\n"
    b"\tby mail.example.org (mailmodule) with ESMTPS id 4f2a9c1d\r\n"
    b"\tfor <joe@example.org>; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
    b"Received: from app.example.net (app.example.net [198.51.100.7])\r\n"
    b"\tby mx1.example.net with ESMTP; Tue, 24 Nov 2026 09:59:58 +0000\r\n"
    b"Authentication-Results: mail.example.org; spf=pass smtp.mailfrom=example.net;\r\n"
    b" dkim=pass header.d=example.net; dmarc=pass header.from=example.net\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1;\r\n"
    b" h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    b" b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3MgbGlrZSBvbmU=\r\n"
    b"From: =?utf-8?q?J=C3=B6rg_Example?= <jorg@example.net>\r\n"
    b"To: Joe <joe@example.org>\r\n"
    b"Cc: team@example.org\r\n"
    b"Subject: =?utf-8?b?V2Vla2x5IHJlcG9ydCDinIU=?=\r\n"
    b"Date: Tue, 24 Nov 2026 09:59:57 +0000\r\n"
    b"Message-ID: <20261124095957.123@app.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1_abcdef"\r\n'
    b"List-Unsubscribe: <mailto:unsubscribe@example.net>, <https://example.net/u/1>\r\n"
    b"List-Id: Reports <reports.example.net>\r\n"
    b"X-Mailer: app 1.2\r\n"
    b"X-Campaign: weekly-2026-47\r\n"
    b"Precedence: bulk\r\n"
    b"Feedback-ID: 1:weekly:example.net\r\n"
    b"\r\n"
)
MESSAGE = HEADER + b"--b1_abcdef\r\n\r\nbody\r\n"

_stdlib_parser = email.parser.BytesHeaderParser(policy=email.policy.default)


def ours() -> bytes:
    header, _ = read_header(MESSAGE)
    return header.to_bytes()


def stdlib() -> bytes:
    return _stdlib_parser.parsebytes(HEADER).as_bytes()


_FIELD = HeaderField.build("X-Check", "pass")
_ADDS = 100_000


def many_adds() -> int:
    header = Header()
    for _ in range(_ADDS):
        header.add_field(_FIELD)
    return len(header)


def many_appends() -> int:
    fields: list[HeaderField] = []
    for _ in range(_ADDS):
        fields.append(_FIELD)
    return len(fields)


if __name__ == "__main__":
    assert ours() == HEADER, "ours must be byte-exact"
    exact = stdlib() == HEADER
    compare(
        "header parse + serialize (20 fields)",
        ours,
        stdlib,
        baseline_name="BytesHeaderParser + as_bytes",
        number=300,
        goal=">= 2x",
        target=2.0,
    )
    print(f"  byte-exact: ours yes, stdlib {'yes' if exact else 'no'}")
    compare(
        f"Header.add_field x {_ADDS} (on top)",
        many_adds,
        many_appends,
        baseline_name="list.append",
        number=1,
        rounds=5,
        goal=">= 0.3x (linear: a constant factor of an append, not quadratic)",
        target=0.3,
    )
