"""DKIM private keys on disk and the TXT records that publish them (as maddy's modify.dkim)."""

from __future__ import annotations

import base64
import os
from typing import Final, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailmodule.errors import ConfigError
from mailmodule.modules.dkim._crypto import PrivateKey

__all__ = [
    "KEY_TYPES",
    "KeyType",
    "dns_record",
    "generate_key",
    "load_key",
    "load_or_generate",
    "write_key",
]

KeyType = Literal["rsa2048", "rsa4096", "ed25519"]
KEY_TYPES: Final[tuple[KeyType, ...]] = ("rsa2048", "rsa4096", "ed25519")
_MAX_KEY_FILE: Final = 64 * 1024


def generate_key(key_type: KeyType) -> PrivateKey:
    """A new private key: RSA of 2048 or 4096 bits, or Ed25519 (RFC 8463)."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))


def dns_record(key: PrivateKey) -> str:
    """The TXT record value that publishes `key`'s public half: `v=DKIM1; k=...; p=...`."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "ed25519"
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kind = "rsa"
    return f"v=DKIM1; k={kind}; p={base64.b64encode(raw).decode('ascii')}"


def load_key(path: str) -> PrivateKey:
    """The private key in the PEM file `path` (PKCS #8, or PKCS #1 for RSA).

    Raises:
        ConfigError: the file cannot be read, is not an unencrypted PEM private key, or
            holds a key other than RSA (of at least 1024 bits) or Ed25519.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key {path}: {exc.strerror}") from exc
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"the DKIM key {path} is larger than a key file can be")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The message of cryptography could quote key material: not echoed.
        raise ConfigError(f"{path} is not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise ConfigError(f"the RSA key {path} has {key.key_size} bits; 1024 at least")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(f"{path} holds a {type(key).__name__}; DKIM keys are RSA or Ed25519")


def write_key(path: str, key: PrivateKey) -> str:
    """Write `key` to `path` (PKCS #8 PEM, mode 0600, never over an existing file) and its
    TXT record beside it (`.dns` instead of `.key`); returns the record file's path.

    Raises:
        OSError: the file exists or cannot be written.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    record_path = (path.removesuffix(".key") if path.endswith(".key") else path) + ".dns"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    with open(record_path, "w", encoding="ascii") as f:
        f.write(dns_record(key) + "\n")
    return record_path


def load_or_generate(path: str, key_type: KeyType) -> tuple[PrivateKey, str | None]:
    """The key at `path`, or a new one of `key_type` written there when there is none.

    Returns:
        The key, and the path of the new TXT record file when the key was generated.

    Raises:
        ConfigError: as `load_key`, or the new key cannot be written.
    """
    if os.path.lexists(path):
        return load_key(path), None
    key = generate_key(key_type)
    try:
        return key, write_key(path, key)
    except OSError as exc:
        raise ConfigError(f"cannot write a new DKIM key to {path}: {exc.strerror}") from exc
