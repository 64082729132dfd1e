"""A DNSSEC-signed DNS on loopback: Knot DNS signs and serves the zones, Unbound validates
them with the zones' own keys as trust anchors, so answers carry a real AD bit.

    with SignedDNS.start(tmp, {"signed.example": records}, unsigned={...}) as dns:
        resolver = dns.resolver()          # a mailmodule Resolver asking Unbound, dnssec on

Both daemons run in the foreground as the current user from `tmp`, on free loopback
ports, and are stopped when the block ends. A zone in `bogus` is signed too, but Unbound
is given another zone's key as its anchor: every answer from it fails validation
(SERVFAIL), as a zone with a broken signature would. Zone records are zone-file lines
relative to the origin; the SOA and NS records are added.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY

from mailmodule.dns import Resolver
from tests.endpoint_kit import free_port
from tests.interop.conftest import require_peer

_STARTUP: Final = 15.0  # seconds the daemons get to answer

_KNOT_CONF = """\
server:
    rundir: "{tmp}/knot-run"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: warning
database:
    storage: "{tmp}/knot-db"
keystore:
  - id: pem
    backend: pem
    config: "{tmp}/knot-keys"
policy:
  - id: test
    keystore: pem
    algorithm: ecdsap256sha256
template:
  - id: default
    storage: "{tmp}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
{zones}"""

_UNBOUND_CONF = """\
server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound.pid"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "validator iterator"
    do-ip6: no
    qname-minimisation: no
    verbosity: 1
{anchors}
remote-control:
    control-enable: no
{stubs}"""


@attrs.frozen(kw_only=True)
class SignedDNS:
    """The running pair: Knot on `knot_port`, the validating Unbound on `port`."""

    port: int
    knot_port: int
    tmp: Path

    def resolver(self, *, dnssec: bool = True) -> Resolver:
        """A resolver asking Unbound, with the DO bit set (so AD shows) unless told not."""
        return Resolver(nameservers=["127.0.0.1"], port=self.port, timeout=2.0, dnssec=dnssec)

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        tmp: Path,
        signed: Mapping[str, Sequence[str]],
        *,
        unsigned: Mapping[str, Sequence[str]] | None = None,
        bogus: Mapping[str, Sequence[str]] | None = None,
    ) -> Iterator[SignedDNS]:
        """Knot and Unbound serving the zones; skips the test when either is missing."""
        knotd = require_peer("knotd")
        unbound = require_peer("unbound")
        unsigned = unsigned or {}
        bogus = bogus or {}
        for sub in ("knot-run", "knot-db", "knot-keys", "zones"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        zones: list[str] = []
        for name, records in {**signed, **unsigned, **bogus}.items():
            (tmp / "zones" / f"{name}.zone").write_text(_zone(name, records))
            sign = name not in unsigned
            zones.append(
                f"  - domain: {name}\n"
                + ("    dnssec-signing: on\n    dnssec-policy: test\n" if sign else "")
            )
        knot_port, port = free_port(udp=True), free_port(udp=True)
        (tmp / "knot.conf").write_text(
            _KNOT_CONF.format(tmp=tmp, port=knot_port, zones="".join(zones))
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(_daemon([knotd, "-c", str(tmp / "knot.conf")], tmp / "knot.log"))
            keys = {name: _ksk(name, knot_port, tmp) for name in (*signed, *bogus)}
            anchors = [f'    trust-anchor: "{name}. DNSKEY {keys[name]}"' for name in signed]
            wrong = next(iter(signed), None)
            for name in bogus:
                assert wrong is not None, "a bogus zone needs a signed zone's key"
                anchors.append(f'    trust-anchor: "{name}. DNSKEY {keys[wrong]}"')
            stubs = "".join(
                f'stub-zone:\n    name: "{name}"\n    stub-addr: 127.0.0.1@{knot_port}\n'
                for name in (*signed, *unsigned, *bogus)
            )
            (tmp / "unbound.conf").write_text(
                _UNBOUND_CONF.format(tmp=tmp, port=port, anchors="\n".join(anchors), stubs=stubs)
            )
            command = [unbound, "-d", "-c", str(tmp / "unbound.conf")]
            stack.enter_context(_daemon(command, tmp / "unbound.log"))
            _wait(lambda: _query(next(iter(signed)), "SOA", port), "unbound", tmp)
            yield cls(port=port, knot_port=knot_port, tmp=tmp)


def _zone(name: str, records: Sequence[str]) -> str:
    head = [
        f"$ORIGIN {name}.",
        "$TTL 60",
        f"@ SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 60",
        f"@ NS ns.{name}.",
        "ns A 127.0.0.1",
    ]
    return "\n".join([*head, *records, ""])


@contextlib.contextmanager
def _daemon(command: list[str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _query(name: str, rdtype: str, port: int) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=1.0)


def _wait(ask: Callable[[], dns.message.Message], what: str, tmp: Path) -> dns.message.Message:
    deadline = time.monotonic() + _STARTUP
    while True:
        try:
            return ask()
        except (OSError, dns.exception.Timeout):
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text(errors="replace")[-2000:] for p in tmp.glob("*.log")}
                raise RuntimeError(f"{what} did not answer in {_STARTUP}s: {logs}") from None
            time.sleep(0.1)


def _ksk(name: str, port: int, tmp: Path) -> str:
    """The zone's key-signing key as Unbound's trust anchor wants it, once Knot signed."""
    deadline = time.monotonic() + _STARTUP
    while True:
        reply = _wait(lambda: _query(name, "DNSKEY", port), "knotd", tmp)
        for rrset in reply.answer:
            for key in rrset:
                if isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY) and key.flags == 257:
                    return str(key.to_text())
        if time.monotonic() > deadline:
            raise RuntimeError(f"knotd did not sign {name} in {_STARTUP}s")
        time.sleep(0.1)
