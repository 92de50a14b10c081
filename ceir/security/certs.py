"""Development certificates: a CA, a server certificate and one client per demo principal.

For tests and trials only: keys are written unencrypted. Production certificates come
from the operator's PKI; they need the same principal encoding (:mod:`ceir.security.principals`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ceir.errors import ConfigError, OutputError
from ceir.security.principals import OPERATOR_URI, ROLE_URI, Principal, Role

DEMO_PRINCIPALS = (
    Principal("telkomsel", Role.OPERATOR, "510-10", via="certificate"),
    Principal("indosat", Role.OPERATOR, "510-01", via="certificate"),
    Principal("nusantara", Role.MANUFACTURER, via="certificate"),
    Principal("customs", Role.CUSTOMS, via="certificate"),
    Principal("kemenperin", Role.MINISTRY, via="certificate"),
    Principal("portal", Role.CONSUMER, via="certificate"),
    Principal("admin", Role.ADMIN, via="certificate"),
    Principal("replica", Role.REPLICA, via="certificate"),
)
_DAYS = 365

__all__ = ["DEMO_PRINCIPALS", "DevCA", "Issued", "check_pair", "read_pem", "write_dev_pki"]


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key, PEM-encoded."""

    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(subject: x509.Name, issuer: x509.Name, public: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_DAYS))
    )


class DevCA:
    """A throw-away certificate authority."""

    def __init__(self, name: str = "ceir development CA") -> None:
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self, common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier
    ) -> Issued:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _builder(subject, self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))

    def server(self, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> Issued:
        """A server certificate valid for *hosts* (names and IP addresses)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(hosts[0], sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, principal: Principal) -> Issued:
        """A client certificate naming *principal*."""
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(ROLE_URI + principal.role.value)
        ]
        if principal.operator_id:
            sans.append(x509.UniformResourceIdentifier(OPERATOR_URI + principal.operator_id))
        return self._issue(principal.name, sans, ExtendedKeyUsageOID.CLIENT_AUTH)


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_dev_pki(
    directory: Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    principals: tuple[Principal, ...] = DEMO_PRINCIPALS,
) -> list[Path]:
    """Write ``ca.pem``, ``server.pem``/``server.key`` and ``<name>.pem``/``<name>.key``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ca = DevCA()
        written = [directory / "ca.pem"]
        _write(written[0], ca.pem, secret=False)
        for name, issued in (
            ("server", ca.server(hosts)),
            *((p.name, ca.client(p)) for p in principals),
        ):
            _write(directory / f"{name}.pem", issued.cert, secret=False)
            _write(directory / f"{name}.key", issued.key, secret=True)
            written += [directory / f"{name}.pem", directory / f"{name}.key"]
    except OSError as exc:
        raise OutputError(f"cannot write {directory}: {exc.strerror}") from exc
    return written


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a certificate or key file; ConfigError naming *what* if unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc}") from exc


def check_pair(cert: bytes, key: bytes, cert_path: Path, key_path: Path) -> None:
    """Fail early, with the file names, when the key does not belong to the certificate."""
    try:
        public = x509.load_pem_x509_certificate(cert).public_key()
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load {cert_path} / {key_path}: {exc}") from exc
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.PEM
    if public.public_bytes(enc, fmt) != private.public_key().public_bytes(enc, fmt):
        raise ConfigError(f"the key {key_path} does not belong to the certificate {cert_path}")
