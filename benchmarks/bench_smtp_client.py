"""A 10 MiB body sent through ClientConnection in 256 KiB pieces, against smtplib's
dot-stuffing of the same pieces (which, unlike ours, does not carry a line start or a CR
across pieces, so it is not even correct at their edges)."""

from __future__ import annotations

import smtplib

from _bench import compare

from mailmodule.smtp import ClientConnection

LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n"
BODY = (LINE + b".a line that starts with a dot\r\n") * ((10 << 20) // (len(LINE) + 32))
PIECE = 1 << 18
PIECES = [BODY[i : i + PIECE] for i in range(0, len(BODY), PIECE)]
GREETED = b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 OK\r\n250 OK\r\n354 Go ahead\r\n"


def in_body() -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(GREETED)
    conn.next_event()
    conn.hello("client.example.org")
    conn.next_event()
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.next_event()
    conn.next_event()
    conn.data()
    conn.next_event()
    return conn


def ours() -> None:
    conn = in_body()
    size = sum(len(conn.send_body(piece)) for piece in PIECES) + len(conn.end_body())
    assert size > len(BODY), size


def smtplib_quotedata() -> None:
    size = sum(len(smtplib.quotedata(piece.decode("latin-1"))) for piece in PIECES)
    assert size > len(BODY), size


if __name__ == "__main__":
    compare(
        "ClientConnection body, 10 MiB in 256 KiB pieces",
        ours,
        smtplib_quotedata,
        baseline_name="smtplib.quotedata over the same pieces",
        number=3,
        goal=">= 1x",
        target=1.0,
    )
