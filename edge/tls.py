"""The edge's TLS certificate when the user gives none: a self-signed leaf, made on first start.

Users are told to trust this certificate on their clients, so it must vouch for this gateway
and nothing else: it is a leaf (CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
serverAuth) naming the addresses served, never a certificate authority, whose key, if it
leaked, could sign a certificate for any host that the clients would accept. Every verifier the
README names (Python's ssl and so httpx and the OpenAI and Anthropic SDKs, curl, Node.js and so
Claude Code) accepts a self-signed leaf as a trust anchor: no CA is needed.

Each installation's certificate has a subject of its own and a random serial. Verifiers look a
trusted certificate up by its subject: of two with the same subject in one bundle, OpenSSL finds
only one, so two stacks' certificates could not be trusted side by side.

A generated certificate that is no longer fit (a CA, as earlier versions made; near its end; not
naming the address now served; unreadable, or not matching its key) is replaced at start, and
the caller is told why, so that the user can be told to trust the new one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "RENEWAL_MARGIN",
    "VALIDITY",
    "GeneratedCertificate",
    "ensure_generated_certificate",
    "ensure_self_signed",
    "served_names",
]

VALIDITY = dt.timedelta(days=825)
"""The longest validity Apple platforms accept for a TLS server certificate (iOS 13, macOS 10.15),
counted from notBefore to notAfter."""
RENEWAL_MARGIN = dt.timedelta(days=30)
"""A generated certificate with less than this left is replaced at start, before clients refuse it."""
_BACKDATE = dt.timedelta(minutes=5)  # a client whose clock is a little behind still accepts it
_SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)  # fmt: skip
"""A TLS server's key signs handshakes (ECDHE), nothing else: never certificates."""
_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


@dataclass(frozen=True, slots=True)
class GeneratedCertificate:
    """What `ensure_generated_certificate` found fit, or made."""

    cert: Path
    key: Path
    created: bool
    """Written by this call: on first use, or replacing one that was no longer fit."""
    replaced_because: str | None = None
    """Why the certificate found in the directory was replaced ("the old one ..."); None if none was."""


def served_names(host: str) -> list[x509.GeneralName]:
    """The names the certificate carries: loopback by name and by address, and the listener's
    address `host` unless it is the unspecified address (0.0.0.0 or ::, which no client dials).

    Envoy listens only on IP addresses; a host name is named too, should the edge ever be given one.
    """
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    served: x509.GeneralName | None = None
    try:
        address = ipaddress.ip_address(host.strip().strip("[]").split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        name = host.strip().rstrip(".").lower()
        if len(name) <= 253 and _HOST_NAME.fullmatch(name):
            served = x509.DNSName(name)
    else:
        if not address.is_unspecified:
            served = x509.IPAddress(address)
    if served is not None and served not in names:
        names.append(served)
    return names


def ensure_generated_certificate(directory: Path, host: str = "127.0.0.1") -> GeneratedCertificate:
    """The certificate and key in `directory`, made (or replaced) when missing or no longer fit.

    `host` is the address the edge listens on (see `served_names`). The key file is created
    with mode 0600 before any key material goes into it. Each file is replaced whole (written
    beside, then renamed); a crash between the two leaves a key and a certificate that do not
    match, which the next start replaces.
    """
    now = dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "brproxy-selfsigned.crt", directory / "brproxy-selfsigned.key"
    names = served_names(host)
    reason = None
    if cert_path.exists() or key_path.exists():
        reason = _unfit_because(cert_path, key_path, names, now)
        if reason is None:
            if key_path.stat().st_mode & 0o077:  # copied or restored with a wider mode: private again
                key_path.chmod(0o600)
            return GeneratedCertificate(cert_path, key_path, created=False)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_whole(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        mode=0o600,
    )
    certificate = _self_signed_leaf(key, names, now)
    _write_whole(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return GeneratedCertificate(cert_path, key_path, created=True, replaced_because=reason)


def ensure_self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, bool]:
    """(certificate, key, written now): `ensure_generated_certificate` without the reason."""
    generated = ensure_generated_certificate(directory, host)
    return generated.cert, generated.key, generated.created


def _self_signed_leaf(
    key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName], now: dt.datetime
) -> x509.Certificate:
    # The host name tells a user which machine's certificate this is; the random part makes the
    # subject this installation's own (see the module's docstring). A common name holds 64 at most.
    label = " ".join(part for part in ("BRProxy", socket.gethostname()[:39], secrets.token_hex(8)) if part)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    not_before = now - _BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SIGNING_ONLY, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _unfit_because(
    cert_path: Path, key_path: Path, names: list[x509.GeneralName], now: dt.datetime
) -> str | None:
    """Why the generated certificate found in the directory must be replaced; None if it is fit."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return "the old one or its key could not be read"
    extensions = certificate.extensions
    not_a_server_certificate = "the old one was not a TLS server certificate"
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return not_a_server_certificate
    if constraints.ca:
        return "the old one was a certificate authority, able to sign certificates for any host"
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
        purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        named = set(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return not_a_server_certificate
    if usage.key_cert_sign or ExtendedKeyUsageOID.SERVER_AUTH not in purposes:
        return not_a_server_certificate
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        return "the old one did not match its key"
    missing = [name for name in names if name not in named]
    if missing:
        return "the old one did not name " + ", ".join(str(name.value) for name in missing)
    if certificate.not_valid_after_utc - certificate.not_valid_before_utc > VALIDITY:
        return f"the old one was valid for more than {VALIDITY.days} days, which Apple platforms refuse"
    if certificate.not_valid_before_utc > now:
        return f"the old one is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if certificate.not_valid_after_utc - now < RENEWAL_MARGIN:
        verb = "expired" if certificate.not_valid_after_utc <= now else "expires"
        return f"the old one {verb} on {certificate.not_valid_after_utc:%Y-%m-%d}"
    return None


def _write_whole(path: Path, content: bytes, *, mode: int) -> None:
    """Replace `path` with `content`: written to a new file created with `mode`, then renamed."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
