"""Pool HA (README "Pool HA"): the coordinator is the host where Patroni's leader runs.

Each host runs an etcd member and a Patroni managing its PostgreSQL; the pool database
is replicated with synchronous commit. This module reads Patroni's REST API on this
host (`patroni_url`, GET /cluster: the members, their roles, which one holds the
leader key) and decides what the server must do about it:

- this host coordinates, but the database deposed its writer (store/_postgres.py: a
  write refused as read-only, or the primary lost) or Patroni's leader runs elsewhere:
  stop serving as coordinator and follow the leader's host (HOST_IS_SLAVE with its
  address);
- this host is a member and Patroni's leader runs here: take the pool over (load the
  records from the database, become pool.master);
- a member whose coordinator is not the leader's host: follow the leader's host.

While no member holds the leader key (an election), nothing changes: a deposed
coordinator cannot write anyway, and members keep naming the last coordinator.
A host's address in the pool is the address its PostgreSQL is reached at (Patroni's
`connect_address`), as the install script sets it up (scripts/pool-ha-setup.sh).
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .peer import split_address


@dataclass(frozen=True)
class PatroniView:
    me: str                # this host's Patroni member name ("" if not listed)
    my_address: str        # its host address
    leader: str            # the member holding the leader key and running, "" if none
    leader_address: str    # that member's host address

    @property
    def leader_is_me(self) -> bool:
        return bool(self.leader) and self.leader == self.me


class PatroniUnreachable(Exception):
    """This host's Patroni did not answer (or not with a cluster view)."""


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "", parts.port


def _get(url: str, context, timeout: float):
    """A JSON body (Patroni answers 503 with one on a replica), or raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        try:
            return json.load(exc)
        except ValueError:
            raise OSError(f"HTTP {exc.code}") from None
    except ValueError as exc:
        raise OSError(f"not JSON: {exc}") from None


def _state(api_url: str, context, timeout: float):
    """A member's own view (GET its /patroni), None if it does not answer (not a
    leader anyone can use)."""
    try:
        return _get(api_url, context, timeout)
    except OSError:
        return None


def read_view(patroni_url: str, ca_file: str = "", timeout: float = 2) -> PatroniView:
    """Blocking (run it in a thread), over https checked against `ca_file` (the pool
    CA) when given. The members come from GET {patroni_url}/cluster; this host is the
    one whose REST address is `patroni_url`'s. The leader is not taken from that list:
    it comes from the consensus store's view, which a host back from a hang can hold
    stale for a while. It is the member whose own Patroni says its PostgreSQL runs as
    primary, on the newest timeline (a woken old primary, not yet demoted, is on an
    older one); none, or two on the same timeline, is an election."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        members = _get(patroni_url.rstrip("/") + "/cluster", context, timeout).get("members")
    except (OSError, AttributeError) as exc:
        raise PatroniUnreachable(f"{patroni_url}: {exc}") from None
    if not isinstance(members, list):
        raise PatroniUnreachable(f"{patroni_url}: no member list")
    mine = _host_port(patroni_url)
    me = my_address = ""
    members = [m for m in members if isinstance(m, dict)]
    # Asked all at once: a member cut off or hung costs one timeout, not one each.
    with ThreadPoolExecutor(max(1, len(members))) as pool:
        states = list(pool.map(lambda m: _state(str(m.get("api_url", "")), context,
                                                timeout), members))
    primaries: list[tuple[int, str, str]] = []
    for member, state in zip(members, states):
        name, host = str(member.get("name", "")), str(member.get("host", ""))
        if _host_port(str(member.get("api_url", ""))) == mine:
            me, my_address = name, host
        if isinstance(state, dict) and state.get("role") in ("master", "primary") \
                and state.get("state") == "running":
            primaries.append((int(state.get("timeline") or 0), name, host))
    primaries.sort(reverse=True)
    if not primaries or (len(primaries) > 1 and primaries[0][0] == primaries[1][0]):
        return PatroniView(me, my_address, "", "")
    _, leader, leader_address = primaries[0]
    return PatroniView(me, my_address, leader, leader_address)


# What the server does about a view (decide): nothing, follow the leader's host
# (an address), or take the pool over.
STAY, FOLLOW, TAKE_OVER = "stay", "follow", "take_over"


def decide(view: PatroniView, *, is_member: bool, master_address: str,
           on_pool_database: bool, deposed: bool) -> tuple[str, str]:
    """(action, address) for this host, given Patroni's view and the server's state:
    `master_address` is the coordinator a member follows; `on_pool_database` whether
    this coordinator's records are in the replicated pool database (not a standalone
    host's own file); `deposed` whether that database refused its writes."""
    if not view.leader:
        return STAY, ""                      # an election: wait for its outcome
    if not is_member and not on_pool_database:
        return STAY, ""                      # standalone: not in the pool (yet)
    if view.leader_is_me:
        if is_member or deposed:             # the database is ours: load it and lead
            return TAKE_OVER, view.leader_address
        return STAY, ""
    if not is_member or split_address(master_address)[0] != view.leader_address:
        return FOLLOW, view.leader_address   # the leader's host coordinates
    return STAY, ""


def leader_first(url: str, address: str) -> str:
    """The multi-host pool database URL with the host at `address` (Patroni's leader)
    listed first. libpq tries the hosts in order, each up to connect_timeout: a host
    cut off or dead ahead of the leader costs every new connection that long."""
    scheme, found, rest = url.partition("://")
    if not found:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    entries = hosts.split(",")
    first = [e for e in entries if e.rsplit(":", 1)[0].strip("[]") == address]
    if not first:
        return url
    ordered = first + [e for e in entries if e not in first]
    return f"{scheme}://{userinfo}{at}{','.join(ordered)}{slash}{tail}"
