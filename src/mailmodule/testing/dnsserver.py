"""An authoritative DNS server on loopback for tests: zones given as text, UDP and TCP.

    with DNSServer() as server:
        server.add_zone('''
            @      TXT  "v=spf1 ip4:192.0.2.0/24 -all"
            @      MX   10 mx
            mx     A    192.0.2.1
        ''', origin="example.org")
        resolver = Resolver(nameservers=["127.0.0.1"], port=server.port)

It runs in a thread of its own, so synchronous tests, asynchronous tests and other
processes (a `mailmodule serve` under test) can all query it. It answers as an
authoritative server does: the records of the zone whose origin is the closest enclosing
one, CNAME chains within its zones, wildcards (RFC 4592), NXDOMAIN and NODATA with the
zone's SOA in the authority section, REFUSED for a name outside every zone. A UDP answer
larger than the client's EDNS payload (512 bytes without EDNS) is truncated (TC), and the
client retries over TCP. A zone added with `authenticated=True` answers with the AD bit
when the query has the AD or DO bit, as a validating resolver does for a signed zone.
`fail(name, ...)` injects faults: SERVFAIL or any other rcode, or no answer at all (a
time-out).

The `dns_server` fixture of the pytest plugin gives a started, empty server.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Final, final

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset
import dns.zone

from mailmodule.errors import MailModuleError

__all__ = ["DNSServer", "Query", "ZoneError"]

_DEFAULT_SOA: Final = "@ 300 IN SOA {ns} {mailbox} 1 3600 600 86400 300"
_MAX_CHAIN: Final = 8
_TIMEOUT: Final = "timeout"


class ZoneError(MailModuleError, ValueError):
    """Raised when zone text given to `DNSServer.add_zone` does not parse; fix the text."""


@final
@attrs.frozen
class Query:
    """One question the server received: the name (lower-case, no trailing dot), the
    type ("TXT") and whether it came over TCP."""

    name: str
    rdtype: str
    tcp: bool


@attrs.define
class _Zone:
    zone: dns.zone.Zone
    authenticated: bool


@final
class DNSServer:
    """An authoritative DNS server on `host` (default 127.0.0.1), UDP and TCP on one port.

    Start it with `with DNSServer() as server:` or `start()`/`stop()`. Zones may be
    added, replaced and faults injected at any time, from any thread.

    Args:
        zones: zone texts by origin, added before the server starts.
        host: the loopback address to listen on ("::1" for IPv6).
    """

    def __init__(self, zones: Mapping[str, str] | None = None, *, host: str = "127.0.0.1"):
        self.host = host
        self._lock = threading.Lock()
        self._zones: dict[dns.name.Name, _Zone] = {}
        self._faults: dict[tuple[dns.name.Name, str | None], str] = {}
        self._queries: list[Query] = []
        self._errors: list[str] = []
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.TCPServer | None = None
        self._threads: list[threading.Thread] = []
        for origin, text in (zones or {}).items():
            self.add_zone(text, origin=origin)

    # Lifecycle

    @property
    def port(self) -> int:
        """The port both UDP and TCP listen on (after `start`)."""
        if self._udp is None:
            raise RuntimeError("the DNS server is not started")
        return int(self._udp.server_address[1])

    def start(self) -> None:
        """Listen on a free port (the same for UDP and TCP) and serve in threads."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):  # a UDP port whose TCP twin is taken: try another
            udp = _UDPServer((self.host, 0), _UDPHandler, family, self)
            try:
                tcp = _TCPServer((self.host, udp.server_address[1]), _TCPHandler, family, self)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise OSError("no free port for both UDP and TCP")
        self._udp, self._tcp = udp, tcp
        for server in (udp, tcp):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and close the sockets; idempotent."""
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._udp = self._tcp = None

    def __enter__(self) -> DNSServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Data

    def add_zone(self, text: str, *, origin: str, authenticated: bool = False) -> None:
        """Serve the zone `text` (master file format) for `origin`, replacing any zone of
        that origin. Names are relative to `origin` unless they end with a dot; `$TTL`
        defaults to 300; an SOA is made up when the text has none. `origin` "."
        serves every name. `authenticated` sets the AD bit on its answers.

        Raises:
            ZoneError: the text does not parse; the message says where.
        """
        name = dns.name.from_text(origin)
        try:
            zone = dns.zone.from_text(
                "$TTL 300\n" + text,
                origin=name,
                relativize=False,
                check_origin=False,
            )
        except (dns.exception.DNSException, ValueError) as exc:
            raise ZoneError(f"zone {origin!r}: {exc}") from exc
        if zone.get_rdataset(name, dns.rdatatype.SOA) is None:
            soa = dns.zone.from_text(
                _DEFAULT_SOA.format(
                    ns=dns.name.Name((b"ns", *name.labels)),
                    mailbox=dns.name.Name((b"hostmaster", *name.labels)),
                ),
                origin=name,
                relativize=False,
                check_origin=False,
            ).get_rdataset(name, dns.rdatatype.SOA)
            assert soa is not None
            zone.replace_rdataset(name, soa)
        with self._lock:
            self._zones[name] = _Zone(zone, authenticated)

    def add_record(
        self, name: str, rdtype: str, rdata: str | dns.rdata.Rdata, *, ttl: int = 300
    ) -> None:
        """Add one record to the zone enclosing `name` (an absolute name; any octets but
        "." and "\\" may appear in its labels). `rdata` is master file text ("10 mx.example.org.")
        or a dnspython rdata (for TXT strings of any bytes).

        Raises:
            ZoneError: no zone encloses `name`, or `rdata` does not parse.
        """
        try:
            owner = dns.name.from_text(name)
            kind = dns.rdatatype.from_text(rdtype)
            if isinstance(rdata, str):
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN, kind, rdata, origin=dns.name.root, relativize=False
                )
        except (dns.exception.DNSException, ValueError) as exc:
            raise ZoneError(f"record {name!r} {rdtype}: {exc}") from exc
        with self._lock:
            zone = self._zone_of(owner)
            if zone is None:
                raise ZoneError(f"record {name!r}: no zone encloses it")
            node = zone.zone.find_node(owner, create=True)
            node.find_rdataset(dns.rdataclass.IN, kind, create=True).add(rdata, ttl)

    def remove_zone(self, origin: str) -> None:
        """Stop serving the zone of `origin` (names in it get REFUSED)."""
        with self._lock:
            self._zones.pop(dns.name.from_text(origin), None)

    def fail(self, name: str, rcode: str = "SERVFAIL", *, rdtype: str | None = None) -> None:
        """Answer queries for `name` (of `rdtype`, or of any type) with `rcode` ("SERVFAIL",
        "REFUSED", ...), or not at all when `rcode` is "timeout"."""
        if rcode != _TIMEOUT:
            dns.rcode.from_text(rcode)  # an unknown one fails here, not in the server thread
        with self._lock:
            self._faults[(dns.name.from_text(name), rdtype and rdtype.upper())] = rcode

    def heal(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    @property
    def queries(self) -> tuple[Query, ...]:
        """Every question received so far, in order."""
        with self._lock:
            return tuple(self._queries)

    @property
    def errors(self) -> tuple[str, ...]:
        """Why the server answered SERVFAIL on its own (zone data it could not send)."""
        with self._lock:
            return tuple(self._errors)

    def clear_queries(self) -> None:
        """Forget the questions received so far."""
        with self._lock:
            self._queries.clear()

    # Answering

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The response to the query `wire`, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: a real server drops it too (a FORMERR needs an id)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self._queries.append(
                Query(
                    qname.to_text(omit_final_dot=True).lower(),
                    dns.rdatatype.to_text(qtype),
                    tcp,
                )
            )
            fault = self._faults.get((qname, dns.rdatatype.to_text(qtype)))
            fault = fault or self._faults.get((qname, None))
            if fault == _TIMEOUT:
                return None
            if fault is not None:
                response.set_rcode(dns.rcode.from_text(fault))
                return response.to_wire()
            wants_ad = bool(query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO)
            try:
                self._fill(response, qname, qtype, question.rdclass, wants_ad)
                return self._wire(response, query, tcp)
            except (dns.exception.DNSException, ValueError) as exc:
                # Zone data the server cannot answer with: SERVFAIL, as a real one would,
                # and the reason in `errors` for the test to see (never a silent drop).
                self._errors.append(f"{qname} {dns.rdatatype.to_text(qtype)}: {exc}")
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        return failed.to_wire()

    def _zone_of(self, name: dns.name.Name) -> _Zone | None:
        found: _Zone | None = None
        depth = -1
        for origin, zone in self._zones.items():
            if name.is_subdomain(origin) and len(origin) > depth:
                found, depth = zone, len(origin)
        return found

    def _fill(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        qclass: dns.rdataclass.RdataClass,
        wants_ad: bool,
    ) -> None:
        zone = self._zone_of(qname)
        if zone is None or qclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if zone.authenticated and wants_ad:
            response.flags |= dns.flags.AD
        name = qname
        for _ in range(_MAX_CHAIN):
            node_name, exists = _find(zone.zone, name)
            if not exists:  # after a CNAME, the rcode is the target's (RFC 6604)
                response.set_rcode(dns.rcode.NXDOMAIN)
                _add_soa(response, zone.zone)
                return
            found = None if node_name is None else zone.zone.get_rdataset(node_name, qtype)
            if found is not None:
                response.answer.append(_rrset(name, found))
                return
            cname = (
                None
                if node_name is None or qtype == dns.rdatatype.CNAME
                else zone.zone.get_rdataset(node_name, dns.rdatatype.CNAME)
            )
            if cname is None:
                _add_soa(response, zone.zone)  # NODATA
                return
            response.answer.append(_rrset(name, cname))
            target = next(iter(cname))
            assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
            name = target.target
            next_zone = self._zone_of(name)
            if next_zone is None:
                return  # out of our zones: the client follows it
            zone = next_zone

    def _wire(self, response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        limit = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()


def _find(zone: dns.zone.Zone, name: dns.name.Name) -> tuple[dns.name.Name | None, bool]:
    """The node answering `name` (itself or a wildcard) and whether `name` exists at all
    (an empty non-terminal exists, with no node of its own)."""
    if zone.get_node(name) is not None:
        return name, True
    if any(other.is_subdomain(name) for other in zone.nodes):
        return None, True  # an empty non-terminal
    encloser = name.parent()
    while encloser != zone.origin and not any(other.is_subdomain(encloser) for other in zone.nodes):
        encloser = encloser.parent()
    wildcard = dns.name.Name((b"*", *encloser.labels))
    if zone.get_node(wildcard) is not None:
        return wildcard, True
    return None, False


def _rrset(owner: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset))


def _add_soa(response: dns.message.Message, zone: dns.zone.Zone) -> None:
    origin = zone.origin
    assert origin is not None
    soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
    if soa is not None:
        response.authority.append(_rrset(origin, soa))


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        family: socket.AddressFamily,
        dns_server: DNSServer,
    ) -> None:
        self.address_family = family
        self.dns_server = dns_server
        super().__init__(address, handler)


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        family: socket.AddressFamily,
        dns_server: DNSServer,
    ) -> None:
        self.address_family = family
        self.dns_server = dns_server
        super().__init__(address, handler)


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _UDPServer)
        data, sock = self.request
        reply = self.server.dns_server.answer(data, tcp=False)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _TCPServer)
        sock: socket.socket = self.request
        sock.settimeout(5.0)
        try:
            for wire in _frames(sock):
                reply = self.server.dns_server.answer(wire, tcp=True)
                if reply is not None:
                    sock.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass  # the client went away or stalled


def _frames(sock: socket.socket) -> Iterator[bytes]:
    """The length-prefixed messages of a TCP connection, until it closes."""
    while True:
        head = _exactly(sock, 2)
        if head is None:
            return
        body = _exactly(sock, struct.unpack("!H", head)[0])
        if body is None:
            return
        yield body


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
