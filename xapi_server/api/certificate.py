"""host's server certificate: install, reset, read; the Certificate record describing it;
the daily expiry check (xapi's design "User-installable host certificates").

The files and the live TLS context are `server.tls` (http/tls.py TlsIdentity): a new
certificate is served to new connections as soon as the call returns, no restart.
"""
from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timezone

from cryptography.hazmat.primitives.serialization import Encoding

from .. import certificates
from ..datamodel.types import format_datetime
from ..dispatch.registry import implements
from ..http.tls import make_self_signed
from ..messages import raise_message

log = logging.getLogger(__name__)

EXPIRY_CHECK_INTERVAL = 24 * 3600.0
EXPIRING, EXPIRED = "HOST_SERVER_CERTIFICATE_EXPIRING", "HOST_SERVER_CERTIFICATE_EXPIRED"


@implements("host.install_server_certificate")
async def install_server_certificate(ctx, host, certificate, private_key, certificate_chain):
    ctx.store.record("host", host)
    # Parsing and checking an RSA-4096 key takes milliseconds: not on the event loop.
    identity = await asyncio.to_thread(certificates.validate, certificate, private_key,
                                       certificate_chain)
    await _serve(ctx.server, identity.key_pem, identity.cert_pem)


@implements("host.reset_server_certificate")
async def reset_server_certificate(ctx, host):
    ctx.store.record("host", host)
    await _serve(ctx.server, *await asyncio.to_thread(make_self_signed))


@implements("host.emergency_reset_server_certificate")
async def emergency_reset_server_certificate(ctx):
    await _serve(ctx.server, *await asyncio.to_thread(make_self_signed))


@implements("host.get_server_certificate")
def get_server_certificate(ctx, host):
    ctx.store.record("host", host)
    return ctx.server.tls.leaf().public_bytes(Encoding.PEM).decode()


async def _serve(server, key_pem: bytes, cert_pem: bytes):
    await server.tls.replace(key_pem, cert_pem)
    sync_record(server)
    check_expiry(server)
    log.info("server certificate replaced; SHA-256 fingerprint %s",
             certificates.record_fields(server.tls.leaf())["fingerprint_sha256"])


def sync_record(server):
    """Exactly one Certificate of type host for this host, describing the served one."""
    store, host = server.store, server.host_ref
    facts = certificates.record_fields(server.tls.leaf())
    mine = [ref for ref in store.find("Certificate", host=host)
            if store.get("Certificate", ref, "type") == "host"]
    current = [ref for ref in mine
               if store.get("Certificate", ref, "fingerprint_sha256") == facts["fingerprint_sha256"]]
    for ref in mine:
        if ref not in current[:1]:
            store.delete("Certificate", ref)
    if not current:
        store.create("Certificate", {"host": host, "type": "host", **facts})


def expiry_alert(not_after: datetime, now: datetime) -> tuple[str, int, str] | None:
    """(message name, priority, body) as xapi's certificate_check, or None when the
    certificate has more than 30 days left."""
    seconds = (not_after - now).total_seconds()
    days = -1 if seconds < 0 else math.ceil(seconds / 86400)
    if days > 30:
        return None
    if days < 0:
        name, priority, text = EXPIRED, 1, "The TLS server certificate has expired."
    else:
        text = "The TLS server certificate is expiring soon."
        name, priority = ((f"{EXPIRING}_07", 1) if days < 8 else
                          (f"{EXPIRING}_14", 2) if days < 15 else (f"{EXPIRING}_30", 3))
    body = (f"<body><message>{text}</message>"
            f"<date>{format_datetime(not_after)}</date></body>")
    return name, priority, body


def check_expiry(server, now: datetime | None = None):
    """Raise the alert the served certificate calls for. Older expiry messages about
    this host go when a different one is due; an identical one is kept (same uuid);
    none is dismissed automatically (as xapi)."""
    store = server.store
    now = now or datetime.now(timezone.utc)
    host_uuid = store.get("host", server.host_ref, "uuid")
    for ref in store.find("Certificate", host=server.host_ref):
        cert = store.record("Certificate", ref)
        alert = expiry_alert(cert["not_after"], now) if cert["type"] == "host" else None
        if alert is None:
            continue
        previous = [(m, rec) for m, rec in store.tables["message"].items()
                    if rec["obj_uuid"] == host_uuid and rec["name"].startswith((EXPIRING, EXPIRED))]
        same = [m for m, rec in previous if (rec["name"], rec["priority"], rec["body"]) == alert]
        for m, _ in previous:
            if m not in same:
                store.delete("message", m)
        if not same:
            name, priority, body = alert
            raise_message(server, name, priority, "Host", host_uuid, body)


async def startup(server):
    """At every start: the record follows the files (replaced by hand, or by a restart
    finishing an interrupted install); then the expiry check. Server.startup then runs
    `daily` as its `certificate_checker` task (cancelled at shutdown)."""
    server.tls.ensure()
    sync_record(server)
    check_expiry(server)


async def daily(server):
    """The expiry check once a day, for as long as the server runs."""
    while True:
        await asyncio.sleep(EXPIRY_CHECK_INTERVAL)
        try:
            check_expiry(server)
            await server.store.flush()
        except Exception:   # a failed check must not end the daily loop
            log.exception("server certificate expiry check failed")

