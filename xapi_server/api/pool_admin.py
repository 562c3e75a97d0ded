"""Pool-wide settings (xapi_pool.ml): the guest agent's settings, ssh and console
timeouts on every host, plain HTTP (https_only: the redirect port answers nothing),
TLS checks between hosts, UEFI certificates for Secure Boot guests, and a test POST.
What xapi removed (ssl_legacy on, VM protection archives) answers MESSAGE_REMOVED.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request

from ..dispatch.registry import implements
from ..errors import ApiError
from .host_admin import set_ssh

MAX_SSH_TIMEOUT = 2 * 24 * 3600      # xapi's bound on ssh_enabled_timeout (seconds)
TEST_POST_TIMEOUT = 30.0
_GUEST_AGENT_KEYS = ("auto_update_enabled", "auto_update_url")
_UEFI_FILES = ("PK.auth", "KEK.auth", "db.auth")


def _hosts(ctx, pool: str) -> list[str]:
    ctx.store.record("pool", pool)
    return ctx.store.refs("host")


@implements("pool.add_to_guest_agent_config")
def add_to_guest_agent_config(ctx, self, key, value):
    """xapi's checks: auto_update_enabled is a bool, auto_update_url an http(s) URL."""
    ctx.store.record("pool", self)
    if key not in _GUEST_AGENT_KEYS:
        raise ApiError("INVALID_VALUE", key, value)
    if key == "auto_update_enabled" and value.lower() not in ("true", "false"):
        raise ApiError("INVALID_VALUE", key, value)
    if key == "auto_update_url":
        split = urllib.parse.urlsplit(value)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ApiError("INVALID_VALUE", key, value)
    config = ctx.store.get("pool", self, "guest_agent_config")
    ctx.store.update("pool", self, guest_agent_config={**config, key: value})


@implements("pool.remove_from_guest_agent_config")
def remove_from_guest_agent_config(ctx, self, key):
    ctx.store.record("pool", self)
    config = ctx.store.get("pool", self, "guest_agent_config")
    ctx.store.update("pool", self, guest_agent_config={k: v for k, v in config.items()
                                                       if k != key})


@implements("pool.enable_ssh")
async def pool_enable_ssh(ctx, self):
    for host in _hosts(ctx, self):
        await set_ssh(ctx, host, True)


@implements("pool.disable_ssh")
async def pool_disable_ssh(ctx, self):
    for host in _hosts(ctx, self):
        await set_ssh(ctx, host, False)


@implements("pool.set_ssh_enabled_timeout")
def set_ssh_enabled_timeout(ctx, self, value):
    if not 0 <= value <= MAX_SSH_TIMEOUT:
        raise ApiError("INVALID_VALUE", "ssh_enabled_timeout", str(value))
    for host in _hosts(ctx, self):
        ctx.store.update("host", host, ssh_enabled_timeout=value)


@implements("pool.set_ssh_auto_mode")
def set_ssh_auto_mode(ctx, self, value):
    for host in _hosts(ctx, self):
        ctx.store.update("host", host, ssh_auto_mode=value)


def _write_profile(path: str, seconds: int):
    """TMOUT for login shells: bash logs an idle shell out after that many seconds."""
    if not path:
        return
    if seconds == 0:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(f"# written by xapi-py (pool.set_console_idle_timeout)\n"
                f"TMOUT={seconds}\nreadonly TMOUT\nexport TMOUT\n")
    os.replace(tmp, path)


@implements("pool.set_console_idle_timeout")
async def set_console_idle_timeout(ctx, self, value):
    if value < 0:
        raise ApiError("INVALID_VALUE", "console_idle_timeout", str(value))
    hosts = _hosts(ctx, self)
    try:
        await asyncio.to_thread(_write_profile, ctx.server.settings.console_timeout_profile,
                                value)
    except OSError as exc:
        raise ApiError("INTERNAL_ERROR", f"console timeout profile: {exc}") from None
    for host in hosts:
        ctx.store.update("host", host, console_idle_timeout=value)


@implements("pool.set_https_only")
def set_https_only(ctx, self, value):
    for host in _hosts(ctx, self):
        ctx.store.update("host", host, https_only=value)


@implements("pool.enable_ssl_legacy")
def enable_ssl_legacy(ctx, self):
    ctx.store.record("pool", self)
    raise ApiError("MESSAGE_REMOVED")


@implements("pool.disable_ssl_legacy")
def disable_ssl_legacy(ctx, self):
    """The server speaks TLS 1.2 and later only: the hosts say so."""
    for host in _hosts(ctx, self):
        ctx.store.update("host", host, ssl_legacy=False)


@implements("pool.enable_tls_verification")
def enable_tls_verification(ctx):
    ctx.store.update("pool", ctx.server.pool_ref, tls_verification_enabled=True)
    for host in ctx.store.refs("host"):
        ctx.store.update("host", host, tls_verification_enabled=True)


@implements("pool.enable_client_certificate_auth")
def enable_client_certificate_auth(ctx, self, name):
    ctx.store.record("pool", self)
    raise ApiError("NOT_IMPLEMENTED", "pool.enable_client_certificate_auth: the TLS "
                   "listener does not ask for client certificates")


@implements("pool.disable_client_certificate_auth")
def disable_client_certificate_auth(ctx, self):
    ctx.store.record("pool", self)
    ctx.store.update("pool", self, client_certificate_auth_enabled=False,
                     client_certificate_auth_name="")


def secureboot_readiness(certificates_b64: str) -> str:
    """The UEFI variables a Secure Boot guest needs, from the pool's certificates (a
    base64 tar of PK.auth, KEK.auth, db.auth and dbx.auth)."""
    try:
        data = base64.b64decode(certificates_b64, validate=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = {os.path.basename(n) for n in tar.getnames()}
    except (binascii.Error, ValueError, tarfile.TarError):
        return "not_ready"
    if not all(f in names for f in _UEFI_FILES):
        return "not_ready"
    return "ready" if "dbx.auth" in names else "ready_no_dbx"


@implements("pool.get_guest_secureboot_readiness")
def get_guest_secureboot_readiness(ctx, self):
    rec = ctx.store.record("pool", self)
    return secureboot_readiness(rec["custom_uefi_certificates"] or rec["uefi_certificates"])


def _post(host: str, port: int, body: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # a TLS probe
    request = urllib.request.Request(f"https://{host}:{port}/", data=body.encode(),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TEST_POST_TIMEOUT,
                                    context=context) as reply:
            return reply.read(1 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.read(1 << 20).decode("utf-8", "replace")


@implements("pool.send_test_post")
async def send_test_post(ctx, host, port, body):
    if not 0 < port < 65536 or not host or "/" in host:
        raise ApiError("INVALID_VALUE", "host:port", f"{host}:{port}")
    try:
        return await asyncio.to_thread(_post, host, port, body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ApiError("INTERNAL_ERROR", f"POST to {host}:{port}: {exc}") from None


@implements("pool.test_archive_target")
def test_archive_target(ctx, self, config):
    ctx.store.record("pool", self)
    raise ApiError("MESSAGE_REMOVED")


@implements("pool.initialize_wlb")
def initialize_wlb(ctx, wlb_url, wlb_username, wlb_password, xenserver_username,
                   xenserver_password):
    """xapi checks the URL (host:port) first, then talks to the appliance, which this
    server has no client for."""
    host, sep, port = wlb_url.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ApiError("WLB_URL_INVALID", wlb_url)
    raise ApiError("NOT_IMPLEMENTED", "pool.initialize_wlb: no workload-balancing client")
