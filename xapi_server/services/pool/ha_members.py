"""Pool HA membership (README "Pool HA"): hosts entering and leaving the etcd cluster
(Patroni's consensus store) and Patroni's member list, one change at a time.

etcd's own rule for a safe change is one membership change at a time, each waited for:
a new host comes in as a *learner* (it copies the log but does not vote, so a slow or
broken newcomer never costs the quorum) and is promoted once it has caught up; a host
leaving is removed as a learner first if it still is one, else as a voter, and the
next change waits until every remaining member answers healthy. With three voters
and one removed, the two left are a quorum of two (both must agree: the pool keeps
its database, but loses automatic failover until a third host comes back).

Patroni side of a leaving host: its PostgreSQL must not be the primary (a switchover
to another member first), its Patroni is stopped by the host itself, and its member
key in etcd is deleted at once instead of waiting for its lease to end, so the
cluster view and the synchronous standby choice move on.

Everything is blocking HTTP (run it in a thread): etcd's v3 JSON gateway and
Patroni's REST API, over TLS with the host's certificate of the pool CA, as
scripts/pool-ha-setup.sh configures them (or plain HTTP when no pool CA is set, as
services/pool/ha.py reads Patroni: the test harness's cluster). The switchover is ha_switchover's (the REST
password derived from the pool secret), so any host holding the secret can act.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from . import ha_switchover
from .ha import _host_port   # (same package) how a Patroni REST URL names its host

ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
PATRONI_NAMESPACE, PATRONI_SCOPE = "/service", "xapi-pool"   # the install script's
REPLICA_ROLES = ("replica", "sync_standby")


class MembershipError(Exception):
    """etcd or Patroni refused a change, or did not settle in time."""


@dataclass(frozen=True)
class Tls:
    ca: str     # the pool CA
    cert: str   # this host's certificate and key (etcd asks clients for one)
    key: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context


def _post(url: str, body: dict, context, timeout: float):
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            text = reply.read()
    except urllib.error.HTTPError as exc:
        raise MembershipError(f"{url}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except OSError as exc:
        raise MembershipError(f"{url}: {exc}") from None
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {"text": text.decode(errors="replace")}


# -- etcd ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EtcdMember:
    id: str             # uint64, as the gateway writes it (a decimal string)
    name: str           # "" for a learner that has not started yet
    peer_urls: tuple
    client_urls: tuple
    learner: bool


class Etcd:
    """The cluster through the members at `addresses` (the first that answers);
    `tls` None: plain HTTP."""

    def __init__(self, addresses: list[str], tls: Tls | None, timeout: float = 5):
        self.addresses, self.tls, self.timeout = list(addresses), tls, timeout
        self._context = tls.context() if tls else None
        self._scheme = "https" if tls else "http"

    def peer_url(self, address: str) -> str:
        return f"{self._scheme}://{address}:{ETCD_PEER_PORT}"

    def _call(self, path: str, body: dict, address: str | None = None):
        errors = []
        for where in [address] if address else self.addresses:
            try:
                return _post(f"{self._scheme}://{where}:{ETCD_CLIENT_PORT}{path}", body,
                             self._context, self.timeout)
            except MembershipError as exc:
                errors.append(str(exc))
        raise MembershipError("; ".join(errors))

    def members(self) -> list[EtcdMember]:
        reply = self._call("/v3/cluster/member/list", {})
        return [EtcdMember(str(m["ID"]), m.get("name", ""), tuple(m.get("peerURLs", ())),
                           tuple(m.get("clientURLs", ())), bool(m.get("isLearner")))
                for m in reply.get("members", [])]

    def healthy(self, address: str) -> bool:
        """The member at `address` answers and sees a leader (a quorum)."""
        try:
            reply = self._call("/v3/maintenance/status", {}, address)
        except MembershipError:
            return False
        return str(reply.get("leader", "0")) != "0" and not reply.get("errors")

    def add_learner(self, peer_url: str) -> EtcdMember:
        reply = self._call("/v3/cluster/member/add", {"peerURLs": [peer_url],
                                                      "isLearner": True})
        m = reply.get("member") or {}
        return EtcdMember(str(m.get("ID")), "", tuple(m.get("peerURLs", ())), (), True)

    def promote(self, member_id: str):
        self._call("/v3/cluster/member/promote", {"ID": member_id})

    def remove(self, member_id: str):
        self._call("/v3/cluster/member/remove", {"ID": member_id})

    def delete_key(self, key: str):
        self._call("/v3/kv/deleterange", {"key": base64.b64encode(key.encode()).decode()})

    def wait_healthy(self, addresses: list[str], timeout: float = 60):
        """Every member at `addresses` answers with a leader, or MembershipError."""
        deadline = time.monotonic() + timeout
        while not all(self.healthy(a) for a in addresses):
            if time.monotonic() > deadline:
                raise MembershipError(f"etcd not healthy on {addresses} in {timeout}s")
            time.sleep(0.3)


def _of_host(members: list[EtcdMember], address: str) -> list[EtcdMember]:
    """The members whose peer URL names `address` (either scheme)."""
    return [m for m in members
            if any(_host_port(u) == (address, ETCD_PEER_PORT) for u in m.peer_urls)]


def remove_from_etcd(etcd: Etcd, address: str, timeout: float = 60) -> int:
    """Remove every etcd member of the host at `address`, learners first, one change
    at a time, each followed by the remaining members answering healthy. Returns how
    many were removed (0: it was not a member, nothing to do)."""
    removed = 0
    while True:
        mine = sorted(_of_host(etcd.members(), address), key=lambda m: not m.learner)
        if not mine:
            return removed
        others = [a for a in etcd.addresses if a != address]
        etcd.remove(mine[0].id)
        removed += 1
        etcd.addresses = others or etcd.addresses
        etcd.wait_healthy(others, timeout)


def add_to_etcd(etcd: Etcd, address: str, started, timeout: float = 120) -> EtcdMember:
    """The host at `address` joins as a learner; `started()` then starts its etcd
    (configured with the member list `add_learner` returned and cluster state
    "existing", as `pool-ha-setup.sh --join` writes it); once it has caught up it is
    promoted to a voter. A learner not caught up yet is refused promotion by etcd
    itself: that refusal is retried until `timeout`."""
    if _of_host(etcd.members(), address):
        raise MembershipError(f"{address} is already an etcd member")
    learner = etcd.add_learner(etcd.peer_url(address))
    started()
    deadline = time.monotonic() + timeout
    while True:
        try:
            etcd.promote(learner.id)
            break
        except MembershipError as exc:
            if time.monotonic() > deadline:
                raise MembershipError(f"learner {address} not promoted: {exc}") from None
            time.sleep(0.5)
    etcd.addresses.append(address)
    etcd.wait_healthy(etcd.addresses, timeout)
    return learner


# -- Patroni ---------------------------------------------------------------------------

class Patroni:
    """Patroni's REST API of one host, checked against the pool CA (if given); the
    switchover with the REST password derived from the pool secret (ha_switchover)."""

    def __init__(self, url: str, ca_file: str, secret: str, timeout: float = 5):
        self.url, self.ca_file, self.timeout = url.rstrip("/"), ca_file, timeout
        self._secret = secret
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _get(self, path: str) -> dict:
        try:
            with urllib.request.urlopen(self.url + path, timeout=self.timeout,
                                        context=self._context) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:   # 503 on a replica: still its JSON
            try:
                return json.load(exc)
            except ValueError:
                raise MembershipError(f"{self.url}{path}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise MembershipError(f"{self.url}: {exc}") from None

    def members(self) -> list[dict]:
        return self._get("/cluster").get("members", [])

    def scope(self) -> str:
        """The cluster's name, where its keys are in etcd (the script's by default)."""
        patroni = self._get("/patroni").get("patroni")
        return str((patroni or {}).get("scope") or PATRONI_SCOPE)

    def switchover(self, leader: str, candidate: str):
        try:
            ha_switchover.switchover(self.url, self.ca_file, self._secret, leader,
                                     candidate)
        except ha_switchover.SwitchoverRefused as exc:
            raise MembershipError(str(exc)) from None


def move_leader_away(patroni: Patroni, name: str, timeout: float = 90):
    """If `name` leads, a switchover to a running replica (the synchronous standby
    first: it has every acknowledged commit), waited for. Nothing if it does not."""
    members = patroni.members()
    if not any(m["name"] == name and m.get("role") in ("leader", "master", "primary")
               for m in members):
        return
    candidates = sorted((m for m in members if m["name"] != name
                         and m.get("state") in ("running", "streaming")),
                        key=lambda m: m.get("role") != "sync_standby")
    if not candidates:
        raise MembershipError(f"{name} leads and no other member can take over")
    patroni.switchover(name, candidates[0]["name"])
    # Done once another member leads and the old leader runs again as a replica:
    # Patroni restarts its PostgreSQL after the demotion, and a Patroni stopped in the
    # middle of that restart may leave that PostgreSQL running behind it.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(MembershipError):
            members = patroni.members()
            led = any(m["name"] != name and m.get("role") in ("leader", "master", "primary")
                      and m.get("state") == "running" for m in members)
            if led and any(m["name"] == name and m.get("role") in REPLICA_ROLES
                           and m.get("state") in ("running", "streaming") for m in members):
                return
        time.sleep(0.5)
    raise MembershipError(f"the switchover away from {name} did not end in {timeout}s")


def forget_patroni_member(etcd: Etcd, name: str, scope: str = PATRONI_SCOPE):
    """Delete the stopped member's key (Patroni would let its lease run out)."""
    etcd.delete_key(f"{PATRONI_NAMESPACE}/{scope}/members/{name}")


def leave(etcd: Etcd, patroni: Patroni, name: str, address: str, stop_patroni,
          timeout: float = 90) -> int:
    """The host `name` at `address` leaves the replicated pool database cleanly:
    its PostgreSQL stops being the primary (switchover), `stop_patroni()` stops its
    Patroni (and its PostgreSQL with it), its member key goes, then its etcd member
    (which makes that etcd stop by itself). `patroni` and `etcd` must reach the
    other hosts. Returns the number of etcd members removed."""
    scope = patroni.scope()
    move_leader_away(patroni, name, timeout)
    stop_patroni()
    forget_patroni_member(etcd, name, scope)
    return remove_from_etcd(etcd, address, timeout)


def leave_host(patroni_url: str, ca_file: str, secret: str, stop_service,
               timeout: float = 90) -> int:
    """This host leaves the replicated pool database (pool.eject of a member of an HA
    pool), from its settings: its Patroni at `patroni_url` names it and the other
    hosts (GET /cluster), its certificate and key lie beside the pool CA `ca_file` (as
    the install script puts them). `stop_service("patroni")` stops its Patroni before
    its etcd member goes, `stop_service("etcd")` keeps its etcd (which stops by itself
    once removed) from being started again. 0 when it is no member (nothing done)."""
    tls_dir = os.path.dirname(ca_file)
    tls = Tls(ca_file, os.path.join(tls_dir, "host.pem"), os.path.join(tls_dir, "host.key")) \
        if ca_file else None
    patroni = Patroni(patroni_url, ca_file, secret)
    members = patroni.members()
    mine = [m for m in members if _host_port(str(m.get("api_url", ""))) ==
            _host_port(patroni_url)]
    if not mine:
        return 0
    name, address = str(mine[0]["name"]), str(mine[0]["host"])
    others = [str(m["host"]) for m in members if m["name"] != name]
    if not others:
        raise MembershipError("the last host of the pool database cannot leave it")
    removed = leave(Etcd(others, tls), patroni, name, address,
                    lambda: stop_service("patroni"), timeout)
    stop_service("etcd")
    return removed
