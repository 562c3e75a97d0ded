"""The checks xapi makes on a server certificate before it installs one, and the facts a
Certificate record shows.

Order and error parameters follow xapi (ocaml/gencert/lib.ml): the key (readable,
algorithm, RSA size), then the leaf (one PEM certificate, valid now, matching the key,
SHA-2 signed), then the chain (one or more PEM certificates). What is installed is
re-encoded from the parsed objects (key as PKCS#8), so stray text never reaches disk.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from .errors import ApiError

RSA_BITS = (2048, 4096)
# xapi accepts RSA keys only: its TLS front end (stunnel) and its X.509 library were set up
# for RSA, and the certificate it generates itself is RSA. We also take ECDSA on P-256 and
# P-384 because our own self-signed certificate is ECDSA P-256 (a user must be able to put
# back what we generated), our TLS 1.2 suites (ECDHE-ECDSA/RSA with AES-GCM or ChaCha20)
# serve both, and every TLS client in use verifies these curves.
EC_CURVES = {"secp256r1", "secp384r1"}
# xapi takes SHA-256 and SHA-512 signatures; SHA-384 too here, the usual hash for P-384.
SIGNATURE_HASHES = {"sha256", "sha384", "sha512"}

# The name xapi reports for keys its library knows, else the algorithm's OID.
_OTHER_ALGORITHMS = [
    (ed25519.Ed25519PrivateKey, "ed25519"), (ed448.Ed448PrivateKey, "1.3.101.113"),
    (x25519.X25519PrivateKey, "1.3.101.110"), (x448.X448PrivateKey, "1.3.101.111"),
    (dsa.DSAPrivateKey, "1.2.840.10040.4.1"),
]
_CURVE_NAMES = {"secp521r1": "p521"}


@dataclass
class Identity:
    """A checked key and certificate, ready to be written and served."""
    key_pem: bytes          # PKCS#8, unencrypted
    cert_pem: bytes         # the leaf, then the chain
    leaf: x509.Certificate


def xapi_time(when: datetime) -> str:
    """The time format of xapi's certificate errors: 2024-01-31T10:00:00Z."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate(certificate: str, private_key: str, chain: str = "",
             now: datetime | None = None) -> Identity:
    now = now or datetime.now(timezone.utc)
    key = _load_key(private_key)
    leaf = _load_leaf(certificate, now)
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise ApiError("SERVER_CERTIFICATE_KEY_MISMATCH")
    try:
        digest = leaf.signature_hash_algorithm
    except UnsupportedAlgorithm:
        digest = None
    if digest is None or digest.name not in SIGNATURE_HASHES:
        raise ApiError("SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED")
    intermediates = _load_chain(chain) if chain else []
    pem = serialization.Encoding.PEM
    return Identity(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
        b"".join(c.public_bytes(pem) for c in [leaf, *intermediates]), leaf)


def _load_key(text: str):
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Encrypted, not PEM, or an algorithm OpenSSL cannot read. cryptography refuses
        # multi-prime RSA keys outright: tell that case apart as xapi does.
        if _is_multi_prime_rsa(text):
            raise ApiError("SERVER_CERTIFICATE_KEY_RSA_MULTI_NOT_SUPPORTED") from None
        raise ApiError("SERVER_CERTIFICATE_KEY_INVALID") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
            raise ApiError("SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED", key.key_size)
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name in EC_CURVES:
            return key
        raise ApiError("SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED",
                       _CURVE_NAMES.get(key.curve.name, key.curve.name))
    name = next((n for kind, n in _OTHER_ALGORITHMS if isinstance(key, kind)),
                type(key).__name__)
    raise ApiError("SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED", name)


def _load_leaf(text: str, now: datetime) -> x509.Certificate:
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        certs = []
    if len(certs) != 1:  # as xapi: exactly one certificate (the chain has its own param)
        raise ApiError("SERVER_CERTIFICATE_INVALID")
    leaf = certs[0]
    if now < leaf.not_valid_before_utc:
        raise ApiError("SERVER_CERTIFICATE_NOT_VALID_YET", xapi_time(now),
                       xapi_time(leaf.not_valid_before_utc))
    if now > leaf.not_valid_after_utc:
        raise ApiError("SERVER_CERTIFICATE_EXPIRED", xapi_time(now),
                       xapi_time(leaf.not_valid_after_utc))
    return leaf


def _load_chain(text: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ApiError("SERVER_CERTIFICATE_CHAIN_INVALID") from None


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


# -- multi-prime RSA detection: just enough DER to read RSAPrivateKey's version -----------

_RSA_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1, DER body


def _is_multi_prime_rsa(text: str) -> bool:
    """True for an RSA key whose RSAPrivateKey version is 1 (RFC 8017: multi-prime),
    in PKCS#8 (PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) PEM form."""
    found = re.search(r"-----BEGIN (RSA )?PRIVATE KEY-----(.*?)-----END", text, re.S)
    if not found:
        return False
    try:
        der = base64.b64decode("".join(found.group(2).split()), validate=True)
        if found.group(1):                       # PKCS#1: RSAPrivateKey itself
            return _first_integer(_content(der, 0)[0]) == 1
        body = _content(der, 0)[0]               # PrivateKeyInfo
        _, rest = _content(body, 0)              # version
        algorithm, rest = _content(body, rest)   # AlgorithmIdentifier
        if _content(algorithm, 0)[0] != _RSA_OID:
            return False
        octets, _ = _content(body, rest)         # privateKey OCTET STRING
        return _first_integer(_content(octets, 0)[0]) == 1
    except (ValueError, IndexError):
        return False


def _content(der: bytes, at: int) -> tuple[bytes, int]:
    """(content of the TLV at `at`, offset after it)."""
    length, at = der[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, at = int.from_bytes(der[at:at + count], "big"), at + count
    if at + length > len(der):
        raise ValueError("truncated DER")
    return der[at:at + length], at + length


def _first_integer(sequence_body: bytes) -> int:
    return int.from_bytes(_content(sequence_body, 0)[0], "big")


# -- what a Certificate record shows ---------------------------------------------------

def colon_hex(data: bytes) -> str:
    """AB:CD:..., the fingerprint format of xapi and of our startup line."""
    text = data.hex().upper()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def record_fields(cert: x509.Certificate) -> dict:
    der = cert.public_bytes(serialization.Encoding.DER)
    sha256 = colon_hex(hashlib.sha256(der).digest())
    return {"not_before": cert.not_valid_before_utc, "not_after": cert.not_valid_after_utc,
            "fingerprint": sha256, "fingerprint_sha256": sha256,
            "fingerprint_sha1": colon_hex(cert.fingerprint(hashes.SHA1()))}
