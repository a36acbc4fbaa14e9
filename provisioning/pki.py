"""The ward's TLS: a site CA, the broker's certificate, and (optionally) client certificates.

Made with ``cryptography`` (EC P-256, SHA-256). The CA's private key stays in the ward's
folder on the installer's desk (``pki/ca.key``, mode 0600); the broker gets its certificate
and key, every node and station user gets ``ca.crt``. Validity: CA 20 years, leaf
certificates 10 years (a pole is not visited to renew a certificate; a retired node is
removed from the broker's password file, which is what locks it out).

Thread: the CLI's. Cost: a few milliseconds per key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import ProvisionError

CA_DAYS, LEAF_DAYS = 20 * 365, 10 * 365


def write_private(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with mode 0600 from the start (never briefly readable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, ward: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"camnode {ward}"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days)))


def create_ca(pki: Path, ward: str) -> None:
    """``pki/ca.key`` (0600) and ``pki/ca.crt``; refuses to replace an existing CA."""
    if (pki / "ca.key").exists():
        raise ProvisionError(f"{pki / 'ca.key'} exists: this ward already has its CA")
    pki.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"camnode {ward} CA", ward)
    cert = (_builder(name, name, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    write_private(pki / "ca.key", _pem_key(key))
    (pki / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(pki: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"the ward's CA in {pki} is unusable: {exc}") from None
    return key, cert  # type: ignore[return-value]


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(pki: Path, cn: str, ward: str, *, server_hosts: list[str] | None = None) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the ward's CA: (certificate PEM, key PEM). With
    ``server_hosts`` it is the broker's (those names/addresses), else a client's (CN = user)."""
    ca_key, ca = _load_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    b = (_builder(_name(cn, ward), ca.subject, key.public_key(), LEAF_DAYS)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    if server_hosts:
        b = b.add_extension(x509.SubjectAlternativeName([_san(h) for h in server_hosts]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def covers(cert_pem: bytes, host: str) -> bool:
    """True when the server certificate names ``host``."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return _san(host) in list(names)
