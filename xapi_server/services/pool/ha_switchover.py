"""Pool HA: moving the pool database's leader on purpose (README "Pool HA").

`pool.designate_new_master` in a pool whose database Patroni manages is a Patroni
switchover: the leader's PostgreSQL steps down once the chosen replica has every
acknowledged commit, and that replica is promoted. Then every host follows Patroni's
new leader as after a failover (api/pool_ha.py). With synchronous replication Patroni
only switches over to the synchronous standby (the one replica sure to hold every
commit), so that is the one host a planned change can go to.

The REST API's password is derived from the pool secret, as scripts/pool-ha-setup.sh
derives it (HMAC-SHA256 of its purpose under the secret): every host that has the
pool secret can ask, nothing else to hand around.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import urllib.error
import urllib.request

REST_USER = "patroni"
SWITCHOVER_TIMEOUT = 60.0   # Patroni answers once the new leader holds the lock (<= 20 s)


class SwitchoverRefused(Exception):
    """Patroni would not (or could not) switch over; the text says why."""


def derived_password(secret: str, purpose: str) -> str:
    """The password scripts/pool-ha-setup.sh derives for `purpose` from the secret."""
    return hmac.new(secret.strip().encode(), b"xapi-py pool-ha " + purpose.encode(),
                    hashlib.sha256).hexdigest()


def _request(patroni_url: str, path: str, ca_file: str, secret: str, body=None,
             timeout: float = 5):
    """(status, text) of a call to Patroni's REST API, with the pool's credentials."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(patroni_url.rstrip("/") + path, data=data,
                                     method="POST" if data is not None else "GET")
    token = f"{REST_USER}:{derived_password(secret, 'patroni-rest')}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        raise SwitchoverRefused(f"Patroni at {patroni_url} does not answer: {exc}") from None


def plan(patroni_url: str, ca_file: str, secret: str, address: str) -> tuple[str, str]:
    """(leader, candidate): the member names a switchover to the host at `address`
    goes between; SwitchoverRefused when it cannot (no leader, no replica of the pool
    database on that host, or it is not the synchronous standby). Blocking."""
    status, text = _request(patroni_url, "/cluster", ca_file, secret)
    try:
        members = json.loads(text).get("members") if status == 200 else None
    except (ValueError, AttributeError):
        members = None
    if not isinstance(members, list):
        raise SwitchoverRefused(f"no cluster view from Patroni (HTTP {status})")
    members = [m for m in members if isinstance(m, dict)]
    leaders = [m for m in members if m.get("role") in ("leader", "master", "primary")]
    if len(leaders) != 1:
        raise SwitchoverRefused("the pool database has no leader now (an election)")
    chosen = [m for m in members if m.get("host") == address]
    if not chosen:
        raise SwitchoverRefused(f"the host at {address} holds no replica of the pool "
                                "database")
    candidate = chosen[0]
    if candidate.get("role") != "sync_standby" or candidate.get("state") not in \
            ("running", "streaming"):
        sync = [m.get("host") for m in members if m.get("role") == "sync_standby"]
        raise SwitchoverRefused(
            f"the host at {address} is not the synchronous standby of the pool database "
            f"(role {candidate.get('role')}, {candidate.get('state')}): only "
            f"{', '.join(map(str, sync)) or 'no host'} holds every commit now")
    return str(leaders[0]["name"]), str(candidate["name"])


def switchover(patroni_url: str, ca_file: str, secret: str, leader: str,
               candidate: str) -> str:
    """Ask Patroni to hand the leader lock from `leader` to `candidate`; its answer
    once done. Blocking, up to SWITCHOVER_TIMEOUT."""
    status, text = _request(patroni_url, "/switchover", ca_file, secret,
                            {"leader": leader, "candidate": candidate},
                            timeout=SWITCHOVER_TIMEOUT)
    if status != 200 or candidate not in text or "instead" in text:
        raise SwitchoverRefused(f"Patroni: HTTP {status}: {text.strip()[:300]}")
    return text.strip()
