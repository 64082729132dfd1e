"""`make demo`: a mail server composed from examples/demo.toml, on loopback, receiving mail.

It starts the server on a free port, sends messages with the stdlib's smtplib (one a check
rejects, one it quarantines, one to an alias, one that is not ours to take), prints where
each landed with its Authentication-Results field, and stops the server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import sys
import tempfile
import tomllib
from pathlib import Path

from mailmodule.server import Server

HERE = Path(__file__).resolve().parent
MESSAGES = [
    ("joe@example.org", "Lunch on Friday?", "Shall we try the new place?"),
    ("team@example.org", "Release notes", "Version 1.0 is out."),
    ("ann@example.org", "Cheap watches", "SPAM SPAM SPAM"),
    ("joe@example.org", "Invoice", "Open the attached VIRUS now."),
    ("someone@elsewhere.example", "Relay attempt", "Please forward."),
]


def send(host: str, port: int) -> list[str]:
    """Each message's final SMTP reply (to RCPT TO when refused there, else to DATA)."""
    replies = []
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("client.demo.test")
        for rcpt, subject, text in MESSAGES:
            msg = f"From: demo@example.net\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{text}\r\n"
            client.mail("demo@example.net")
            code, reply = client.rcpt(rcpt)
            if code < 400:
                code, reply = client.data(msg.encode())
            else:
                client.rset()
            replies.append(f"{code} {reply.decode()}")
    return replies


def landed(root: Path) -> dict[str, list[tuple[str, str]]]:
    """Subject -> (mailbox/folder, Authentication-Results) for every delivered file."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(root.rglob("new/*")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        where = str(path.parent.parent.relative_to(root))
        auth = " ".join(str(msg.get("Authentication-Results", "-")).split())
        found.setdefault(str(msg["Subject"]), []).append((where, auth))
    return found


async def main() -> int:
    config = HERE / "demo.toml"
    data = tomllib.loads(config.read_text())
    with tempfile.TemporaryDirectory(prefix="mailmodule-demo-") as tmp:
        data["modules"]["local"]["root"] = tmp
        data["modules"]["content_filter"]["command"][0] = sys.executable
        server = Server(data, source=str(config))
        server.initialize()
        ((_, host, port),) = await server.start()
        print(f"server from {config.name} listening on {host}:{port}\n")
        try:
            replies = await asyncio.to_thread(send, host, port)
        finally:
            await server.stop()
        where = landed(Path(tmp))
        print(f"{'to':<26} {'subject':<17} {'SMTP reply':<46} landed in")
        for (rcpt, subject, _), reply in zip(MESSAGES, replies, strict=True):
            places = where.get(subject, [])
            first = ", ".join(p for p, _ in places) or "nowhere"
            print(f"{rcpt:<26} {subject:<17} {reply[:46]:<46} {first}")
            if places:
                print(f"{'':<26} Authentication-Results: {places[0][1]}")
        quarantined = [s for s, p in where.items() if any("Junk" in w for w, _ in p)]
        print(f"\nquarantined: {quarantined}; server stopped, modules closed.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
