"""Pool HA: the offer a pool gets when its third host joins (README "Pool HA").

xapi's own pool.join takes no options, and its pool.enable_ha is about VM restarts on
a statefile SR, so the offer is what xapi's clients already show: a message on the
pool (XO's notifications, `xe message-list`), raised once, when the pool reaches three
hosts on a database that is not replicated yet. Its body is the exact command to run
on each of the three hosts (scripts/pool-ha-setup.sh with their names and addresses
filled in), then the settings it prints on every host and a restart of the servers:
the coordinator then moves the pool's records into the replicated database
(api/pool_ha_enable.py) and from then on the coordinator is the host of Patroni's
leader (api/pool_ha.py).
"""
from __future__ import annotations

import re

from ..messages import raise_message

MESSAGE = "POOL_DATABASE_HA_AVAILABLE"
PRIORITY_INFO = 5
HOSTS_NEEDED = 3   # an etcd quorum that survives one host


def script_name(label: str, index: int) -> str:
    """A member name the install script takes (letters, digits, - and _)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:32]
    return name or f"host{index}"


def offer_after_join(server):
    """On the coordinator, right after a join: the offer, if this join made three."""
    store = server.store
    hosts = sorted(store.tables["host"], key=lambda h: store.get("host", h, "address"))
    if len(hosts) != HOSTS_NEEDED or store.replicated or server.settings.patroni_url:
        return
    names, members = set(), []
    for i, host in enumerate(hosts, 1):
        name = script_name(store.get("host", host, "name_label"), i)
        name = name if name not in names else f"{name}-{i}"
        names.add(name)
        members.append((name, store.get("host", host, "address")))
    listed = ",".join(f"{n}={a}" for n, a in members)
    steps = "; ".join(
        f"on {a}: scripts/pool-ha-setup.sh --name {n} --address {a} --members {listed} "
        f"--ca-dir /etc/xapi-py/pool-ca{' --new-ca' if i == 0 else ''}"
        for i, (n, a) in enumerate(members))
    raise_message(server, MESSAGE, PRIORITY_INFO, "Pool",
                  store.get("pool", server.pool_ref, "uuid"),
                  "The pool has three hosts: its database can be replicated on them, "
                  "with the coordinator moving automatically when its host dies "
                  f"(README \"Pool HA\"). {steps} (copy /etc/xapi-py/pool-ca from the "
                  "first host to the others before running it there); then set "
                  "patroni_url, patroni_ca_file and ha_database_url as it prints on "
                  "every host and restart the three servers: the coordinator copies the "
                  "pool's records into the replicated database (which must be empty) and "
                  "the host where Patroni's leader runs coordinates from then on.")
