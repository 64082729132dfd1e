"""TLS for the endpoints: server contexts from a TLSLoader, SNI, certificate names.

The names a certificate is for are read from its DER form with a small ASN.1 walk (the
subjectAltName dNSNames, else the subject's commonName), so no private API of `ssl` and
no extra dependency is needed.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Sequence
from typing import Final, final

from mailmodule.errors import ConfigError, MailModuleError
from mailmodule.interfaces import CertificateChain
from mailmodule.metadata import TLSState

__all__ = ["ServerTLS", "cert_names", "der_names", "load_error", "name_matches"]

_log = logging.getLogger("mailmodule.endpoint")

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_OID: Final = 0x06
_OCTET_STRING: Final = 0x04
_BOOLEAN: Final = 0x01
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT in TBSCertificate
_DNS_NAME: Final = 0x82  # [2] IMPLICIT IA5String in GeneralName
_SAN_OID: Final = bytes([0x55, 0x1D, 0x11])  # 2.5.29.17
_CN_OID: Final = bytes([0x55, 0x04, 0x03])  # 2.5.4.3
_STRING_TAGS: Final = frozenset({0x0C, 0x13, 0x14, 0x16, 0x1E})  # UTF8, Printable, T61, IA5, BMP


class _DERError(ValueError):
    pass


def _items(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The (tag, content start, content end) of each DER element in data[start:end]."""
    out = []
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise _DERError("truncated element")
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if not 1 <= count <= 4 or pos + count > end:
                raise _DERError("bad length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > end:
            raise _DERError("element runs past its container")
        out.append((tag, pos, pos + length))
        pos += length
    return out


def _only(data: bytes, start: int, end: int, tag: int) -> tuple[int, int]:
    items = _items(data, start, end)
    if len(items) != 1 or items[0][0] != tag:
        raise _DERError(f"expected one element of tag {tag:#x}")
    return items[0][1], items[0][2]


def der_names(der: bytes) -> set[str]:
    """The DNS names a DER certificate is for: its subjectAltName dNSNames, else its
    subject's commonNames; lower-cased. An unreadable certificate has none."""
    try:
        start, end = _only(der, 0, len(der), _SEQUENCE)
        cert = _items(der, start, end)
        if not cert or cert[0][0] != _SEQUENCE:
            raise _DERError("no TBSCertificate")
        tbs = _items(der, cert[0][1], cert[0][2])
        fields = tbs[1:] if tbs and tbs[0][0] == 0xA0 else tbs  # skip [0] version
        if len(fields) < 6:
            raise _DERError("short TBSCertificate")
        names = _san_names(der, fields[6:])
        return names or _common_names(der, fields[4])
    except (_DERError, UnicodeDecodeError):
        return set()


def _san_names(der: bytes, rest: Sequence[tuple[int, int, int]]) -> set[str]:
    names: set[str] = set()
    for tag, start, end in rest:
        if tag != _EXTENSIONS:
            continue
        exts = _only(der, start, end, _SEQUENCE)
        for ext_tag, ext_start, ext_end in _items(der, *exts):
            parts = _items(der, ext_start, ext_end) if ext_tag == _SEQUENCE else []
            if len(parts) < 2 or parts[0][0] != _OID or der[parts[0][1] : parts[0][2]] != _SAN_OID:
                continue
            value = parts[-1]
            if value[0] != _OCTET_STRING:
                raise _DERError("extension value is not an OCTET STRING")
            general = _only(der, value[1], value[2], _SEQUENCE)
            for name_tag, name_start, name_end in _items(der, *general):
                if name_tag == _DNS_NAME:
                    names.add(der[name_start:name_end].decode("ascii").lower())
    return names


def _common_names(der: bytes, subject: tuple[int, int, int]) -> set[str]:
    names: set[str] = set()
    if subject[0] != _SEQUENCE:
        return names
    for rdn_tag, rdn_start, rdn_end in _items(der, subject[1], subject[2]):
        if rdn_tag != _SET:
            continue
        for _, atv_start, atv_end in _items(der, rdn_start, rdn_end):
            parts = _items(der, atv_start, atv_end)
            if (
                len(parts) == 2
                and parts[0][0] == _OID
                and der[parts[0][1] : parts[0][2]] == _CN_OID
            ):
                tag, start, end = parts[1]
                if tag in _STRING_TAGS:
                    codec = "utf-16-be" if tag == 0x1E else "utf-8"
                    names.add(der[start:end].decode(codec).lower())
    return names


def cert_names(certfile: str) -> set[str]:
    """The DNS names the first certificate of a PEM file is for (see `der_names`); none
    when the file cannot be read."""
    try:
        with open(certfile, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return set()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    first = text.find(begin)
    last = text.find(end, first)
    if first < 0 or last < 0:
        return set()
    try:
        der = ssl.PEM_cert_to_DER_cert(text[first : last + len(end)])
    except ValueError:
        return set()
    return der_names(der)


def name_matches(name: str, names: set[str]) -> bool:
    """Whether `name` (lower-case) is one of `names`, or matches a "*.domain" in them."""
    if name in names:
        return True
    head, _, rest = name.partition(".")
    return bool(head and rest) and f"*.{rest}" in names


@final
class ServerTLS:
    """The server side of TLS for one endpoint: one context per certificate chain, the
    first one by default, another chosen by the client's SNI when its names match.

    Raises:
        ConfigError: from `load`, the loader gave no chain or a chain does not load
            (key "tls").
    """

    __slots__ = ("_contexts", "_server_names", "context")

    def __init__(self, contexts: list[tuple[set[str], ssl.SSLContext]]) -> None:
        self._contexts = contexts
        self._server_names: weakref.WeakKeyDictionary[ssl.SSLObject, str] = (
            weakref.WeakKeyDictionary()
        )
        self.context = contexts[0][1]
        self.context.sni_callback = self._pick

    @classmethod
    def load(cls, chains: Sequence[CertificateChain], module: str) -> ServerTLS:
        """Build the contexts of `chains` (as a TLSLoader gives them)."""
        if not chains:
            raise ConfigError("the TLS loader gave no certificate", module=module, key="tls")
        contexts = []
        for chain in chains:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(chain.certfile, chain.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load certificates {chain.certfile!r}: {exc}", module=module, key="tls"
                ) from exc
            contexts.append((cert_names(chain.certfile), ctx))
        if len(contexts) > 1 and not all(names for names, _ in contexts):
            _log.warning("%s: a certificate names no DNS name; SNI cannot choose it", module)
        return cls(contexts)

    def _pick(self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        self._server_names[sock] = name
        for names, ctx in self._contexts:
            if name_matches(name, names):
                sock.context = ctx
                return

    def take_over(self, old: ServerTLS) -> None:
        """Serve the handshakes of listeners made with `old`'s context (implicit TLS,
        whose context is fixed when they start listening) with these certificates: a
        reload rotates them without closing the listener."""
        old.context.sni_callback = self._switch

    def _switch(self, sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sock.context = self.context
        self._pick(sock, server_name, ctx)

    def state(self, sock: ssl.SSLObject | None) -> TLSState | None:
        """The `TLSState` of an established connection, None without TLS."""
        if sock is None:
            return None
        cipher = sock.cipher()
        return TLSState(
            version=sock.version() or "",
            cipher=cipher[0] if cipher else "",
            server_name=self._server_names.get(sock, ""),
        )


def load_error(exc: MailModuleError, module: str) -> ConfigError:
    """A TLSLoader's failure as the endpoint's ConfigError (key "tls")."""
    if isinstance(exc, ConfigError):
        return exc
    return ConfigError(f"cannot load certificates: {exc}", module=module, key="tls")
