"""The certificate `brproxy up` generates when none is given: the one users are told to trust.

It must vouch for this gateway only (a leaf, never a CA whose key could sign for any host),
name the addresses served, be trusted side by side with another installation's, and an unfit
one left by an earlier version must be replaced at start, saying so (`edge prepare`'s summary
carries the line the supervisor prints), never the user's own certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import socket
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from certificates import LOOPBACK, self_signed, signed_with, tls_server, write_pair
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.settings import Settings
from edge.__main__ import prepare
from edge.tls import ensure_self_signed

APPLE_LIMIT = dt.timedelta(days=825)  # support.apple.com/103769: TLS server certificates


def _prepare(data_dir: Path, **settings: Any) -> dict[str, Any]:
    """`python -m edge prepare` as the supervisor runs it (a deployment's token is required)."""
    return prepare(Settings(data_dir=data_dir, internal_token=secrets.token_hex(32), **settings))


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(certificate: x509.Certificate) -> set[x509.GeneralName]:
    return set(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def _python_ssl_verifies(trusted: Path, port: int, hostname: str, host: str = "127.0.0.1") -> bool:
    """Python's ssl, trusting `trusted` only, with hostname checking: what httpx and the SDKs do."""
    context = ssl.create_default_context(cafile=str(trusted))
    try:
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=hostname),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def test_the_generated_certificate_is_a_tls_server_leaf(tmp_path: Path) -> None:
    cert, key, created = ensure_self_signed(tmp_path)
    assert created
    certificate = _load(cert)
    extensions = certificate.extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert _names(certificate) == LOOPBACK
    assert certificate.issuer == certificate.subject
    certificate.verify_directly_issued_by(certificate)  # self-signed with the key beside it
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc <= APPLE_LIMIT
    assert certificate.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == [cert.name, key.name]  # nothing else kept


def test_its_key_cannot_vouch_for_another_certificate(tmp_path: Path) -> None:
    """Whoever holds the generated key (it leaked) signs a certificate for another host, and one
    for localhost with a key of their own: a client trusting the generated certificate refuses both."""
    cert, key, _ = ensure_self_signed(tmp_path / "gateway")
    issuer = _load(cert)
    issuer_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    for hostname in ("api.anthropic.com", "localhost"):
        forged = signed_with(issuer, issuer_key, hostname, [x509.DNSName(hostname)])
        with tls_server(*write_pair(tmp_path / hostname, *forged)) as port:
            assert not _python_ssl_verifies(cert, port, hostname), f"a forged {hostname} was trusted"
    with tls_server(cert, key) as port:  # the genuine one is trusted: the refusals above mean something
        assert _python_ssl_verifies(cert, port, "localhost")


def test_two_installations_can_be_trusted_side_by_side(tmp_path: Path) -> None:
    """Two stacks' certificates in one bundle: each client finds the right one for each server."""
    pairs = [ensure_self_signed(tmp_path / name)[:2] for name in ("first", "second")]
    first, second = (_load(cert) for cert, _ in pairs)
    assert first.subject != second.subject
    assert first.serial_number != second.serial_number
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(cert.read_bytes() for cert, _ in pairs))
    for cert, key in pairs:
        with tls_server(cert, key) as port:
            assert _python_ssl_verifies(bundle, port, "localhost"), f"{cert.parent.name} not trusted"


def test_a_generated_certificate_authority_is_replaced_with_a_notice_but_never_the_users_own(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    old, old_key = self_signed(ca=True, lifetime=dt.timedelta(days=3650), ends_in=dt.timedelta(days=3000))
    write_pair(data_dir / "tls", old, old_key)
    (data_dir / "tls" / "brproxy-selfsigned.key").chmod(0o644)  # as a copy or a restore may leave it

    summary = _prepare(data_dir)
    cert = data_dir / "tls" / "brproxy-selfsigned.crt"
    assert summary["tls_cert"] == str(cert.resolve())
    notice = summary.get("tls_cert_notice")
    assert notice == (
        "The generated TLS certificate changed (the old one was a certificate authority, able to "
        f"sign certificates for any host): trust the new one on your clients again: {cert.resolve()}"
    )
    assert summary["tls_cert_created"] is True
    new = _load(cert)
    assert new != old and new.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert stat.S_IMODE((data_dir / "tls" / "brproxy-selfsigned.key").stat().st_mode) == 0o600
    assert sorted(path.name for path in (data_dir / "tls").iterdir()) == [
        "brproxy-selfsigned.crt",
        "brproxy-selfsigned.key",
    ]

    (data_dir / "tls" / "brproxy-selfsigned.key").chmod(0o644)
    again = _prepare(data_dir)  # the next start keeps it, silently, and its key private
    assert (again["tls_cert_created"], again.get("tls_cert_notice")) == (False, None)
    assert _load(cert) == new
    assert stat.S_IMODE((data_dir / "tls" / "brproxy-selfsigned.key").stat().st_mode) == 0o600

    # The user's own certificate is theirs to judge: even a CA is served as given, untouched.
    mine = write_pair(tmp_path / "mine", old, old_key)
    before = [path.read_bytes() for path in mine]
    own = _prepare(tmp_path / "own", tls_cert=mine[0], tls_key=mine[1])
    assert own["tls_cert"] == str(mine[0].resolve())
    assert (own["tls_cert_created"], own.get("tls_cert_notice")) == (False, None)
    assert [path.read_bytes() for path in mine] == before
    assert not (tmp_path / "own" / "tls").exists()


def _expiring(directory: Path) -> str:
    certificate, key = self_signed(ca=False, lifetime=dt.timedelta(days=800), ends_in=dt.timedelta(days=10))
    write_pair(directory, certificate, key)
    return f"the old one expires on {certificate.not_valid_after_utc:%Y-%m-%d}"


def _expired(directory: Path) -> str:
    certificate, key = self_signed(ca=False, lifetime=dt.timedelta(days=800), ends_in=-dt.timedelta(days=1))
    write_pair(directory, certificate, key)
    return f"the old one expired on {certificate.not_valid_after_utc:%Y-%m-%d}"


def _too_long(directory: Path) -> str:
    certificate, key = self_signed(
        ca=False, lifetime=dt.timedelta(days=3650), ends_in=dt.timedelta(days=3000)
    )
    write_pair(directory, certificate, key)
    return "the old one was valid for more than 825 days, which Apple platforms refuse"


def _other_key(directory: Path) -> str:
    ensure_self_signed(directory)
    other = ec.generate_private_key(ec.SECP256R1())
    (directory / "brproxy-selfsigned.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return "the old one did not match its key"


def _garbage(directory: Path) -> str:
    ensure_self_signed(directory)
    (directory / "brproxy-selfsigned.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n\x00\xff\n")
    return "the old one or its key could not be read"


def _no_key(directory: Path) -> str:
    ensure_self_signed(directory)
    (directory / "brproxy-selfsigned.key").unlink()
    return "the old one or its key could not be read"


@pytest.mark.parametrize("spoil", [_expiring, _expired, _too_long, _other_key, _garbage, _no_key])
def test_an_unfit_generated_certificate_is_replaced_with_its_reason(tmp_path: Path, spoil: Any) -> None:
    reason = spoil(tmp_path / "tls")
    summary = _prepare(tmp_path)
    cert = tmp_path / "tls" / "brproxy-selfsigned.crt"
    assert summary.get("tls_cert_notice") == (
        f"The generated TLS certificate changed ({reason}): trust the new one on your clients again: "
        f"{cert.resolve()}"
    )
    new = _load(cert)
    assert new.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)
    key = serialization.load_pem_private_key((tmp_path / "tls" / "brproxy-selfsigned.key").read_bytes(), None)
    assert new.public_key() == key.public_key()


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1", None),
        ("0.0.0.0", None),  # every address: no client dials it, so nothing to name
        ("::", None),
        ("192.0.2.7", x509.IPAddress(ipaddress.ip_address("192.0.2.7"))),
        ("2001:db8::7", x509.IPAddress(ipaddress.ip_address("2001:db8::7"))),
    ],
)
def test_the_address_served_is_named(tmp_path: Path, host: str, served: x509.GeneralName | None) -> None:
    _prepare(tmp_path, host=host)
    assert _names(_load(tmp_path / "tls" / "brproxy-selfsigned.crt")) == LOOPBACK | (
        {served} if served else set()
    )


def test_a_new_address_gets_a_certificate_naming_it_that_clients_verify(tmp_path: Path) -> None:
    """`--host 127.0.0.2` after a start on the default address: the certificate is replaced so
    that a client dialling 127.0.0.2 (hostname checking on) accepts it."""
    _prepare(tmp_path)
    summary = _prepare(tmp_path, host="127.0.0.2")
    cert, key = tmp_path / "tls" / "brproxy-selfsigned.crt", tmp_path / "tls" / "brproxy-selfsigned.key"
    assert summary.get("tls_cert_notice") == (
        "The generated TLS certificate changed (the old one did not name 127.0.0.2): trust the new one "
        f"on your clients again: {cert.resolve()}"
    )
    with tls_server(cert, key, host="127.0.0.2") as port:
        assert _python_ssl_verifies(cert, port, "127.0.0.2", host="127.0.0.2")
    back = _prepare(tmp_path)  # back on the default address: the certificate still names it
    assert (back["tls_cert_created"], back.get("tls_cert_notice")) == (False, None)
