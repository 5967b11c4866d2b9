"""The gateway's own CA: server certificate and per-organisation client certificates.

The organisation id rides in a URI SAN (`urn:custos:org:<id>`); the transport
reads identity from there and nowhere else.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORG_URI_PREFIX = "urn:custos:org:"
PACKET_VKEY = "packet.vkey"  # in an identity bundle: the gateway's packet key, pinned by `packet verify`


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Custos"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def create_ca(cert_path: Path, key_path: Path, days: int = 3650) -> None:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Custos gateway CA")).issuer_name(_name("Custos gateway CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue(ca_cert: Path, ca_key: Path, out_cert: Path, out_key: Path, *, cn: str, dns: list[str] | None = None,
          ips: list[str] | None = None, uris: list[str] | None = None, server: bool = False,
          not_before: datetime | None = None, not_after: datetime | None = None) -> None:
    """Issue a leaf certificate signed by the CA (validity overridable for tests of expiry)."""
    ca, ca_private = _load_ca(ca_cert, ca_key)
    key = _key()
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    sans += [x509.UniformResourceIdentifier(u) for u in uris or []]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    # No names, no extension: an empty SAN list is malformed (RFC 5280 §4.2.1.6), and whether a library
    # will build one changes between releases; a certificate without the extension is valid in all of them.
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_private, hashes.SHA256())
    _write_key(out_key, key)
    out_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def issue_server(ca_cert: Path, ca_key: Path, out_cert: Path, out_key: Path, hostnames: list[str]) -> None:
    """The gateway's certificate: localhost, 127.0.0.1 and ::1, plus the given names and addresses."""
    hosts = ["localhost", *hostnames]
    issue(ca_cert, ca_key, out_cert, out_key, cn="custos-gateway", dns=[h for h in hosts if not _is_ip(h)],
          ips=["127.0.0.1", "::1", *[h for h in hosts if _is_ip(h)]], server=True)


def issue_org_bundle(ca_cert: Path, ca_key: Path, out: Path, org_id: str, packet_vkey: str | None = None) -> None:
    """An organisation's identity bundle in `out` (0700): client.crt, client.key and the CA's certificate.

    With `packet_vkey` (the gateway's packet.vkey text) also packet.vkey: the key
    `custos packet verify --identity` pins, handed over with the certificate so a
    law firm never has to trust the key a packet names for itself.
    """
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    issue(ca_cert, ca_key, out / "client.crt", out / "client.key", cn=org_id, uris=[ORG_URI_PREFIX + org_id])
    (out / "ca.crt").write_bytes(ca_cert.read_bytes())
    if packet_vkey is not None:
        (out / PACKET_VKEY).write_text(packet_vkey.strip() + "\n")


def check_issued(ca_cert: Path, cert_pem: bytes, now: datetime | None = None) -> x509.Certificate:
    """The certificate, if the CA at `ca_cert` signed it and it is valid now; ValueError otherwise."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.issuer != ca.subject:
        raise ValueError("issued by another CA")
    public = ca.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or cert.signature_hash_algorithm is None:
        raise ValueError("unsupported CA key")
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        raise ValueError("signature does not verify") from None
    at = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise ValueError("not valid now")
    return cert


def org_id_of(cert: x509.Certificate) -> str | None:
    """The organisation id of a certificate with exactly one URI SAN, which names an org; otherwise None.

    A second URI SAN of any kind makes the identity ambiguous, so none is taken.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or not uris[0].startswith(ORG_URI_PREFIX):
        return None
    return uris[0][len(ORG_URI_PREFIX):] or None
