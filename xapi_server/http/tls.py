"""The server certificate: made on first start, reused after, replaceable while running;
TLS 1.2+ only.

Files in the cert dir: `server.key` (PKCS#8, 0600) and `server.crt` (the leaf, then any
chain). A replacement is first written whole to `pending.pem` (key + certificates, 0600,
renamed into place: the commit point), then split into the two files; a crash between
the two renames is finished at the next start, so key and certificate never disagree.
"""
from __future__ import annotations

import asyncio
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
from ..certificates import colon_hex

CERT_FILE, KEY_FILE, PENDING_FILE = "server.crt", "server.key", "pending.pem"
# Forward-secret AEAD suites only for TLS 1.2 (TLS 1.3 suites are all modern).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_KEY_END = b"-----END PRIVATE KEY-----\n"


def ensure_certificate(cert_dir: str) -> tuple[str, str, bool]:
    """Return (cert path, key path, created_now)."""
    os.makedirs(cert_dir, mode=0o755, exist_ok=True)
    cert_path, key_path = os.path.join(cert_dir, CERT_FILE), os.path.join(cert_dir, KEY_FILE)
    _finish_pending(cert_dir)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path, False
    write_identity(cert_dir, *make_self_signed())
    return cert_path, key_path, True


def make_self_signed() -> tuple[bytes, bytes]:
    """(PKCS#8 key PEM, certificate PEM): ECDSA P-256, SANs for every name of this host."""
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
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def write_identity(cert_dir: str, key_pem: bytes, cert_pem: bytes):
    """Replace key and certificate files together (see the module docstring). Raises
    ssl.SSLError, leaving the files as they were, if OpenSSL will not serve the pair."""
    pending = os.path.join(cert_dir, PENDING_FILE)
    _write_synced(pending + ".tmp", key_pem + cert_pem, mode=0o600)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pending + ".tmp")
    except ssl.SSLError:
        os.unlink(pending + ".tmp")
        raise
    os.replace(pending + ".tmp", pending)
    _sync_dir(cert_dir)
    _finish_pending(cert_dir)


def _finish_pending(cert_dir: str):
    pending = os.path.join(cert_dir, PENDING_FILE)
    if os.path.exists(pending + ".tmp"):   # never committed: forget it
        os.unlink(pending + ".tmp")
    if not os.path.exists(pending):
        return
    with open(pending, "rb") as f:
        key_pem, _, cert_pem = f.read().partition(_KEY_END)
    key_path = os.path.join(cert_dir, KEY_FILE)
    cert_path = os.path.join(cert_dir, CERT_FILE)
    _write_synced(key_path + ".tmp", key_pem + _KEY_END, mode=0o600)
    _write_synced(cert_path + ".tmp", cert_pem, mode=0o644)
    os.replace(key_path + ".tmp", key_path)
    os.replace(cert_path + ".tmp", cert_path)
    _sync_dir(cert_dir)
    os.unlink(pending)
    _sync_dir(cert_dir)


def _write_synced(path: str, data: bytes, mode: int):
    """Created with its final mode (a key is never readable by others, not even
    briefly) and flushed to disk before it is renamed into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fingerprint(cert_path: str) -> str:
    """SHA-256 of the DER certificate, as colon-separated hex (what xe pins)."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return colon_hex(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.load_cert_chain(cert_path, key_path)
    return context


class TlsIdentity:
    """The certificate files and the SSLContext the HTTPS listener is given.

    Replacing the identity must reach a listener that already holds its context. Loading
    the new pair into that context (load_cert_chain) is not enough: OpenSSL keeps one
    certificate per key type, so after installing an RSA certificate over our ECDSA one
    the old ECDSA certificate would still be served to every client that prefers ECDSA.
    Instead the listener's context picks, in its server-name callback (which OpenSSL runs
    for every ClientHello, with or without SNI), the context of the current identity:
    a new handshake presents the new certificate, open connections keep theirs. Version
    floor and suites are those of the listener's context and stay as set here."""

    def __init__(self, cert_dir: str):
        self.cert_dir = cert_dir
        self.cert_path = os.path.join(cert_dir, CERT_FILE)
        self.key_path = os.path.join(cert_dir, KEY_FILE)
        self._listener: ssl.SSLContext | None = None
        self._current: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    def ensure(self) -> bool:
        """Make a self-signed identity if there is none; True if one was made now."""
        return ensure_certificate(self.cert_dir)[2]

    @property
    def context(self) -> ssl.SSLContext:
        """The context to give the HTTPS listener (made on first use)."""
        if self._listener is None:
            self._current = server_context(self.cert_path, self.key_path)
            listener = server_context(self.cert_path, self.key_path)
            listener.sni_callback = self._select
            self._listener = listener
        return self._listener

    def _select(self, connection, server_name, listener):
        connection.context = self._current
        return None   # go on with the handshake

    async def replace(self, key_pem: bytes, cert_pem: bytes):
        async with self._lock:   # one replacement at a time: files and context agree
            await asyncio.to_thread(write_identity, self.cert_dir, key_pem, cert_pem)
            if self._listener is not None:
                self._current = await asyncio.to_thread(server_context, self.cert_path,
                                                        self.key_path)

    def leaf(self) -> x509.Certificate:
        """The certificate served (the first one in server.crt)."""
        with open(self.cert_path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
