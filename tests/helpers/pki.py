"""Certificates for the TLS tests, made with ``cryptography``: one CA, servers for every bad case, a client.

Everything is EC P-256 (fast) and written as PEM files into one directory:

==================  =====================================================================
file                what it is
==================  =====================================================================
``ca.pem``          the CA every good certificate chains to
``other-ca.pem``    an unrelated CA (the "wrong CA" case)
``ip.pem``          server, subjectAltName ``IP:127.0.0.1`` only (what a Service IP gets)
``dns.pem``         server, subjectAltName ``DNS:localhost`` only
``wrong.pem``       server, subjectAltName ``DNS:db.example`` (wrong host)
``expired.pem``     server for ``IP:127.0.0.1``, expired yesterday
``foreign.pem``     server for ``IP:127.0.0.1``, signed by ``other-ca.pem``
``qpid.pem``        server for 127.0.0.1 as python-qpid checks it: ``DNS:127.0.0.1`` and CN
``client.crt/.key`` a client certificate from ``ca.pem``, certificate and key apart
``stranger.crt/.key`` a client certificate from ``other-ca.pem`` (the "foreign client" case)
==================  =====================================================================

Server files hold the certificate and its key (what the fake servers and RabbitMQ's
``certfile``+``keyfile`` want: RabbitMQ gets ``<name>.crt``/``<name>.key`` as well).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    directory: Path

    def __getattr__(self, name: str) -> Path:  # pki.ca → ca.pem, pki.ip → ip.pem
        return self.directory / f"{name.replace('_', '-')}.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 2 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    sans: list[x509.GeneralName],
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    client: bool = False,
    expired: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - 3 * DAY, now - DAY) if expired else (now - DAY, now + 2 * DAY)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def issue_client(directory: Path, name: str, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A client certificate for ``name`` signed by the CA of ``ca_cert``/``ca_key`` (PEM files, any key
    type: Pulp's CA from ``pulpinit pki init`` is RSA), written into ``directory``: ``(certificate, key)``."""
    ca = (
        x509.load_pem_x509_certificate(ca_cert.read_bytes()),
        serialization.load_pem_private_key(ca_key.read_bytes(), password=None),
    )
    cert, key = _leaf(name, [], ca, client=True)  # type: ignore[arg-type]  # an RSA CA key signs as well
    paths = directory / f"{name}.crt", directory / f"{name}.key"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(_pem_key(key))
    return paths


def make_pki(directory: Path) -> Pki:
    """Write every file of the table above into ``directory`` (~50 ms)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = _ca("pulpinit test CA"), _ca("some other CA")
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    for name, cert_key in (("ca", ca), ("other-ca", other)):
        (directory / f"{name}.pem").write_bytes(cert_key[0].public_bytes(serialization.Encoding.PEM))
    servers = {
        "ip": _leaf("pulp-broker", [loopback], ca),
        "dns": _leaf("pulp-broker", [x509.DNSName("localhost")], ca),
        "wrong": _leaf("db.example", [x509.DNSName("db.example")], ca),
        "expired": _leaf("pulp-broker", [loopback], ca, expired=True),
        "foreign": _leaf("pulp-broker", [loopback], other),
        "qpid": _leaf("127.0.0.1", [x509.DNSName("127.0.0.1"), loopback], ca),
    }
    for name, (cert, key) in servers.items():
        cert_pem, key_pem = cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)
        (directory / f"{name}.pem").write_bytes(cert_pem + key_pem)
        (directory / f"{name}.crt").write_bytes(cert_pem)
        (directory / f"{name}.key").write_bytes(key_pem)
    for name, issuer in (("client", ca), ("stranger", other)):
        cert, key = _leaf("pulp", [x509.DNSName("pulp")], issuer, client=True)
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(_pem_key(key))
    return Pki(directory)
