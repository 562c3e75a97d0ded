"""Pool HA: etcd's leader kept off the coordinator's host (README "Pool HA").

Patroni's leader key lives on an etcd lease. When etcd elects a new leader, the new
leader gives every lease its full TTL again (etcd's lessor does so on promotion, so
that no lease expires for want of a leader). A fault that takes the coordinator's
host while its etcd member leads etcd therefore costs a failover the time of etcd's
election on top of Patroni's TTL: 2-3 s measured. The coordinator asks its own etcd
member to hand its leadership to another voting member whenever it finds it leading
(etcd's MoveLeader, `/v3/maintenance/transfer-leadership` on the JSON gateway, sent
to the leader itself); etcd stays available throughout a transfer.

Blocking HTTP (run it in a thread), over TLS with this host's certificate beside the
pool CA as scripts/pool-ha-setup.sh lays them out, or plain HTTP without a CA file
(the test harness's cluster), as services/pool/ha_members.py speaks to etcd.
"""
from __future__ import annotations

import os

from .ha_members import ETCD_CLIENT_PORT, Etcd, MembershipError, Tls, _post


def move_leadership_away(address: str, ca_file: str = "", timeout: float = 3) -> str:
    """If the etcd member at `address` (this host) leads etcd, hand the leadership to
    another voting member: that member's name, "" when nothing was to be done.
    MembershipError if etcd did not answer or refused."""
    tls_dir = os.path.dirname(ca_file)
    tls = Tls(ca_file, os.path.join(tls_dir, "host.pem"),
              os.path.join(tls_dir, "host.key")) if ca_file else None
    context = tls.context() if tls else None
    url = f"{'https' if tls else 'http'}://{address}:{ETCD_CLIENT_PORT}"
    status = _post(f"{url}/v3/maintenance/status", {}, context, timeout)
    mine = str(status.get("header", {}).get("member_id", ""))
    if not mine or str(status.get("leader", "")) != mine:
        return ""
    members = Etcd([address], tls, timeout).members()
    targets = [m for m in members if m.id != mine and not m.learner and m.name]
    if not targets:
        return ""
    _post(f"{url}/v3/maintenance/transfer-leadership", {"targetID": targets[0].id},
          context, timeout)
    return targets[0].name


__all__ = ["move_leadership_away", "MembershipError"]
