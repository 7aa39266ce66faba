"""TLS material for the proxy tests, and making the test's Docker engine trust it.

``issue_certificates`` makes a throwaway CA and a server certificate for one IP address
(what nginx serves: ``fullchain.pem``, ``privkey.pem``; what clients trust: ``ca.crt``).
``docker_trusts`` puts the CA where dockerd looks for a registry's CA,
``/etc/docker/certs.d/<host:port>/ca.crt`` (fixed for a rootful dockerd, read on every
connection), and removes it afterwards.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_certificates(dest: Path, address: str) -> Path:
    """Write ``ca.crt``, ``fullchain.pem`` and ``privkey.pem`` for ``address``; return the CA."""
    dest.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Lading test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName("localhost")]
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(address))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (dest / "ca.crt").write_bytes(_pem(ca))
    (dest / "fullchain.pem").write_bytes(_pem(server) + _pem(ca))
    (dest / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # nginx's workers never read it; only the master (root) does, at start.
    (dest / "privkey.pem").chmod(0o600)
    return dest / "ca.crt"


@contextmanager
def docker_trusts(registry: str, ca: Path) -> Iterator[Path]:
    """dockerd verifies ``registry`` (``host:port``) with ``ca`` until the block ends."""
    directory = DOCKER_CERTS_DIR / registry
    if directory.exists():
        raise RuntimeError(f"{directory} exists already; refusing to replace another CA")
    directory.mkdir(parents=True)
    try:
        shutil.copyfile(ca, directory / "ca.crt")
        yield directory / "ca.crt"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
