"""Certificate names read from DER, without a private ssl API."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from mailmodule.endpoint._tls import cert_names, der_names, name_matches


def certificate(directory: Path, subject: str, san: str | None) -> str:
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", subject, "-keyout", str(key), "-out", str(cert)]
    if san is not None:
        command += ["-addext", f"subjectAltName={san}"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return str(cert)


def test_every_dns_name_of_the_subject_alt_name_is_read(tmp_path: Path) -> None:
    cert = certificate(
        tmp_path, "/CN=ignored.test", "DNS:mx.example.org,IP:192.0.2.1,DNS:*.Example.NET"
    )
    assert cert_names(cert) == {"mx.example.org", "*.example.net"}


def test_the_common_name_counts_without_a_subject_alt_name(tmp_path: Path) -> None:
    cert = certificate(tmp_path, "/O=Org/CN=Mail.Example.Org", None)
    assert cert_names(cert) == {"mail.example.org"}


def test_a_wildcard_matches_one_label() -> None:
    assert name_matches("mx.example.net", {"*.example.net"})
    assert not name_matches("a.mx.example.net", {"*.example.net"})
    assert not name_matches("example.net", {"*.example.net"})


def test_garbage_has_no_names(tmp_path: Path) -> None:
    cert = certificate(tmp_path, "/CN=x.test", None)
    der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text())
    for broken in (b"", b"\x30\x82\xff\xff", der[:40], b"\x04\x00" + der):
        assert der_names(broken) == set()
    (tmp_path / "bad.pem").write_text("no certificate here")
    assert cert_names(str(tmp_path / "bad.pem")) == set()
