"""Certificates and revocation lists the pool trusts (xapi's certificates.ml): PEM
files under <data_dir>/trust/{ca,crl}/<name>, each trusted certificate with its
Certificate record (type ca, or pinned for a peer's own certificate).

Names as xapi checks them: letters, digits, '.', '_', '-', not starting with '.'
(CERTIFICATE_NAME_INVALID / CRL_NAME_INVALID); contents must parse as one PEM
certificate or CRL (CERTIFICATE_CORRUPT / CRL_CORRUPT). A standalone host has no other
host to give them to (certificate_sync) and no other pool to fetch from.
"""
from __future__ import annotations

import os
import re

from cryptography import x509

from .. import certificates
from ..dispatch.registry import implements
from ..errors import ApiError

NULL = "OpaqueRef:NULL"
_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,254}$")


def _refusal(kind: str, what: str, name: str) -> ApiError:
    """xapi's code for a CA certificate's or a CRL's name or contents."""
    crl = kind == "crl"
    if what == "invalid":
        return ApiError("CRL_NAME_INVALID", name) if crl else \
            ApiError("CERTIFICATE_NAME_INVALID", name)
    if what == "exists":
        return ApiError("CRL_ALREADY_EXISTS", name) if crl else \
            ApiError("CERTIFICATE_ALREADY_EXISTS", name)
    if what == "corrupt":
        return ApiError("CRL_CORRUPT", name) if crl else ApiError("CERTIFICATE_CORRUPT", name)
    return ApiError("CRL_DOES_NOT_EXIST", name) if crl else \
        ApiError("CERTIFICATE_DOES_NOT_EXIST", name)


class _Library:
    def __init__(self, kind: str, load):
        self.kind, self.load = kind, load

    def folder(self, ctx) -> str:
        return os.path.join(ctx.server.settings.data_dir, "trust", self.kind)

    def path(self, ctx, name: str) -> str:
        if not _NAME.match(name):
            raise _refusal(self.kind, "invalid", name)
        return os.path.join(self.folder(ctx), name)

    def install(self, ctx, name: str, pem: str):
        path = self.path(ctx, name)
        if os.path.exists(path):
            raise _refusal(self.kind, "exists", name)
        try:
            parsed = self.load(pem.encode())
        except (ValueError, TypeError):
            raise _refusal(self.kind, "corrupt", name) from None
        os.makedirs(self.folder(ctx), mode=0o700, exist_ok=True)
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return parsed

    def uninstall(self, ctx, name: str):
        path = self.path(ctx, name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise _refusal(self.kind, "missing", name) from None

    def names(self, ctx) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.folder(ctx)) if _NAME.match(n))
        except FileNotFoundError:
            return []


CA = _Library("ca", x509.load_pem_x509_certificate)
CRL = _Library("crl", x509.load_pem_x509_crl)


def _trust(ctx, name: str, pem: str, cert_type: str, purpose=()) -> str:
    cert = CA.install(ctx, name, pem)
    return ctx.store.create("Certificate", {
        "name": name, "type": cert_type, "host": NULL, "purpose": list(purpose),
        **certificates.record_fields(cert)})


def _forget(ctx, name: str):
    CA.uninstall(ctx, name)
    for ref in ctx.store.find("Certificate", name=name):
        if ctx.store.get("Certificate", ref, "type") in ("ca", "pinned"):
            ctx.store.delete("Certificate", ref)


@implements("pool.certificate_install")
def certificate_install(ctx, name, cert):
    _trust(ctx, name, cert, "ca")


@implements("pool.install_ca_certificate")
def install_ca_certificate(ctx, name, cert):
    _trust(ctx, name, cert, "ca")


@implements("pool.install_trusted_certificate")
def install_trusted_certificate(ctx, self, ca, cert, purpose):
    """Named by its fingerprint, as xapi names the files of this newer call."""
    ctx.store.record("pool", self)
    try:
        parsed = x509.load_pem_x509_certificate(cert.encode())
    except (ValueError, TypeError):
        raise ApiError("CERTIFICATE_CORRUPT", "") from None
    name = certificates.record_fields(parsed)["fingerprint_sha256"].replace(":", "").lower()
    _trust(ctx, f"{'ca' if ca else 'peer'}-{name}.pem", cert, "ca" if ca else "pinned",
           purpose)


@implements("pool.certificate_uninstall")
def certificate_uninstall(ctx, name):
    _forget(ctx, name)


@implements("pool.uninstall_ca_certificate")
def uninstall_ca_certificate(ctx, name, force):
    _forget(ctx, name)


@implements("pool.uninstall_trusted_certificate")
def uninstall_trusted_certificate(ctx, self, certificate):
    ctx.store.record("pool", self)
    rec = ctx.store.record("Certificate", certificate)
    if rec["type"] not in ("ca", "pinned"):
        raise ApiError("OPERATION_NOT_ALLOWED", "only a trusted (ca or pinned) certificate "
                       "can be uninstalled")
    _forget(ctx, rec["name"])


@implements("pool.certificate_list")
def certificate_list(ctx):
    return CA.names(ctx)


@implements("pool.certificate_sync")
def certificate_sync(ctx):
    """Every host of this pool is this host: its files are the pool's already. What is
    left to do is drop records whose file is gone (removed by hand)."""
    present = set(CA.names(ctx))
    for ref, rec in list(ctx.store.tables["Certificate"].items()):
        if rec["type"] in ("ca", "pinned") and rec["name"] not in present:
            ctx.store.delete("Certificate", ref)


@implements("pool.crl_install")
def crl_install(ctx, name, cert):
    CRL.install(ctx, name, cert)


@implements("pool.crl_uninstall")
def crl_uninstall(ctx, name):
    CRL.uninstall(ctx, name)


@implements("pool.crl_list")
def crl_list(ctx):
    return CRL.names(ctx)


@implements("pool.sync_trusted_certificates_from")
def sync_trusted_certificates_from(ctx, self, remote_pool, remote_session,
                                   remote_certificate, ca):
    """A step of pool.join, which comes with pools: until then there is no pool to
    exchange certificates with."""
    ctx.store.record("pool", self)
    raise ApiError("NOT_IMPLEMENTED", "pool.sync_trusted_certificates_from (pool join)")
