"""The server certificate: made on first start, reused after, TLS 1.2+ only."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .. import hostinfo

CERT_FILE, KEY_FILE = "server.crt", "server.key"
# Forward-secret AEAD suites only for TLS 1.2 (TLS 1.3 suites are all modern).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def ensure_certificate(cert_dir: str) -> tuple[str, str, bool]:
    """Return (cert path, key path, created_now)."""
    os.makedirs(cert_dir, mode=0o755, exist_ok=True)
    cert_path, key_path = os.path.join(cert_dir, CERT_FILE), os.path.join(cert_dir, KEY_FILE)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = hostinfo.hostname()
    alt = [x509.DNSName(name), x509.DNSName("localhost"),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for addr in hostinfo.addresses():
        try:
            ip = x509.IPAddress(ipaddress.ip_address(addr))
        except ValueError:
            continue
        if ip not in alt:
            alt.append(ip)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    # The key is written with 0600 from the start: never world-readable, not even briefly.
    fd = os.open(key_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(key_path + ".tmp", key_path)
    with open(cert_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(cert_path + ".tmp", cert_path)
    return cert_path, key_path, True


def fingerprint(cert_path: str) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex (what xe pins)."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.load_cert_chain(cert_path, key_path)
    return context
