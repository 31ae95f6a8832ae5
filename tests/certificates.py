"""Certificates made, served and read by hand, for the tests of the one `brproxy up` generates.

Used from tests/edge and tests/e2e: a certificate like one an earlier version generated, one
signed with the generated key (as whoever got hold of it would make), a TLS server presenting
any of them, and the certificate a server presents.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = {
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
}
"""The names every generated certificate carries."""


def self_signed(
    *, ca: bool, lifetime: dt.timedelta, ends_in: dt.timedelta
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for the loopback names: `ca=True` is what fe62f59 generated (ten years, CA:TRUE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BRProxy self-signed (localhost)")])
    end = dt.datetime.now(dt.UTC) + ends_in
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(end - lifetime)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sorted(LOOPBACK, key=str)), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    return builder.sign(key, hashes.SHA256()), key


def signed_with(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, host: str, names: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for `host` and `names`, with a key of its own, signed by `issuer_key`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate, key


def write_pair(
    directory: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    """Written where `brproxy up` keeps the generated pair; returns (certificate, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "brproxy-selfsigned.crt", directory / "brproxy-selfsigned.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextmanager
def tls_server(
    cert: Path,
    key: Path,
    host: str = "127.0.0.1",
    answer: bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
) -> Iterator[int]:
    """A TLS server presenting `cert`, sending `answer` to any request; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((host, 0))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(answer)
            except (OSError, ssl.SSLError):
                raw.close()  # the client refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (closing alone does not)
        listener.close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def served_certificate(port: int) -> x509.Certificate:
    """The certificate the TLS server on 127.0.0.1:`port` presents, unverified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
