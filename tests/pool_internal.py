"""A raw `/pool_internal` call, as one host of a pool makes to another, for tests that
check who may make which (the certificate is not checked: this is the test, not a
host)."""
from __future__ import annotations

import json
import ssl
import urllib.request

SECRET_HEADER = "x-xapi-pool-secret"


def internal(host, op: str, args: dict, secret: str | None = None) -> dict:
    """{"value": ...} or {"error": [code, params...]} from `host` (a PoolHost)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    req = urllib.request.Request(f"https://{host.address}/pool_internal",
                                 json.dumps({"op": op, "args": args}).encode(), headers)
    with urllib.request.urlopen(req, context=ssl._create_unverified_context(),
                                timeout=30) as reply:
        return json.load(reply)
