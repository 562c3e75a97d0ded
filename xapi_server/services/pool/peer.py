"""Calls between the hosts of a pool: a JSON body POSTed to `/pool_internal` over TLS.

Every call names an operation and its arguments and carries the pool secret in a
header (the join, made before the joiner has the secret, carries a session of the
coordinator's instead). The caller pins the peer's certificate: the SHA-256 of the
certificate the peer serves must be the one exchanged at join, else no byte of the
request is sent. The answer is {"value": ...} or {"error": [code, params...]}: a
XenAPI error the peer raised, which the caller raises as its own.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl

from ...certificates import colon_hex

PATH = "/pool_internal"
SECRET_HEADER = "x-xapi-pool-secret"
SESSION_HEADER = "x-xapi-session"
DEFAULT_PORT = 443
MAX_REPLY = 64 << 20


class Unreachable(Exception):
    """No answer: refused, timed out, cut, or a certificate that is not the pinned one."""


class Refused(Exception):
    """The peer answered with a XenAPI error (its description list)."""

    def __init__(self, description: list):
        super().__init__(description)
        self.description = description


def split_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'10.0.0.1', '10.0.0.1:4443', '[fd00::1]:4443' -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port


def _unverified() -> ssl.SSLContext:
    # Verification is the pin below (a self-signed certificate names no CA to trust).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def fingerprint_of(der: bytes) -> str:
    return colon_hex(hashlib.sha256(der).digest())


def served_fingerprint(address: str, port: int, timeout: float = 10) -> str:
    """The fingerprint of the certificate the peer serves now (trust on first use, the
    first step of a join, as xapi's)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with _unverified().wrap_socket(raw) as tls:
                return fingerprint_of(tls.getpeercert(binary_form=True))
    except (OSError, ssl.SSLError) as exc:
        raise Unreachable(f"{address}:{port}: {exc}") from None


def call(address: str, port: int, op: str, args: dict, *, pinned: str,
         secret: str = "", session: str = "", timeout: float = 10):
    """Blocking: run it in a thread. Raises Unreachable or Refused."""
    conn = http.client.HTTPSConnection(address, port, timeout=timeout,
                                       context=_unverified())
    try:
        conn.connect()
        served = fingerprint_of(conn.sock.getpeercert(binary_form=True))
        if served != pinned:
            raise Unreachable(f"{address}:{port} serves certificate {served}, "
                              f"not the pinned {pinned}")
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[SECRET_HEADER] = secret
        if session:
            headers[SESSION_HEADER] = session
        conn.request("POST", PATH, json.dumps({"op": op, "args": args}), headers)
        reply = conn.getresponse()
        body = reply.read(MAX_REPLY)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise Unreachable(f"{address}:{port}: {exc}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(body)
    except ValueError:
        raise Unreachable(f"{address}:{port}: HTTP {reply.status}, not a pool answer")
    if not isinstance(answer, dict) or ("error" not in answer and "value" not in answer):
        raise Unreachable(f"{address}:{port}: HTTP {reply.status}, not a pool answer")
    if "error" in answer:
        raise Refused([str(x) for x in answer["error"]])
    return answer["value"]
