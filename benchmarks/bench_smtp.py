"""A 10 MiB DATA body in 64 KiB reads through ServerConnection, against bytes.replace."""

from __future__ import annotations

from _bench import compare

from mailmodule.smtp import (
    NEED_DATA,
    DataChunk,
    DataEnd,
    Reply,
    ServerConfig,
    ServerConnection,
    dot_stuff,
)

LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n"
BODY = (LINE + b"..a line that starts with a dot\r\n") * ((10 << 20) // (len(LINE) + 33))
WIRE = dot_stuff(BODY)
CHUNK = 1 << 16
READS = [WIRE[i : i + CHUNK] for i in range(0, len(WIRE), CHUNK)]
OK = Reply(code=250, enhanced_code=(2, 0, 0), lines="OK")


def in_data() -> ServerConnection:
    conn = ServerConnection(ServerConfig())
    conn.send(Reply(code=220, lines="mx"))
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    for reply in (OK, OK, OK, Reply(code=354, lines="Go ahead")):
        conn.next_event()
        conn.send(reply)
    return conn


def ours() -> None:
    conn = in_data()
    size = 0
    for data in READS:
        conn.receive_data(data)
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, DataChunk):
                size += len(event.data)
            elif isinstance(event, DataEnd):
                conn.send(OK)
                break
    assert size == len(BODY), size


def replace() -> None:
    size = 0
    for data in READS:
        size += len(data.replace(b"\r\n..", b"\r\n."))
    assert size > 0


if __name__ == "__main__":
    compare(
        "ServerConnection DATA, 10 MiB in 64 KiB reads",
        ours,
        replace,
        baseline_name='bytes.replace(b"\\r\\n..", b"\\r\\n.") over the same chunks',
        number=3,
        goal=">= 0.5x",
        target=0.5,
    )
