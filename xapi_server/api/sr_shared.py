"""Shared SRs in a pool: SR.create with shared=true on the coordinator gives the SR a
PBD on every host and plugs each on its own host (xapi does the same), so a VM whose
disks are there can run on, and move live between, any of them.

A member's PBD is plugged by the member itself (`/pool_internal` op "sr_attach"): it
checks that the device is there on its own machine (for a `file` SR, the directory
every host mounts, holding this SR's marker; for `nfs`, the export mounted). A member
that cannot plug it keeps its PBD unplugged, as in xapi, and is not a place for the
SR's VMs (VM_REQUIRES_SR) until PBD.plug succeeds.
"""
from __future__ import annotations

import logging

from ..errors import ApiError
from ..services.storage import service
from .pool_membership import call_member

log = logging.getLogger(__name__)


async def plug_on_members(server, sr: str, device_config: dict):
    store = server.store
    rec = store.record("SR", sr)
    for host in sorted(store.tables["host"]):
        if host == server.host_ref or service.host_pbd(store, sr, host):
            continue
        pbd = store.create("PBD", {"host": host, "SR": sr,
                                   "device_config": dict(device_config),
                                   "currently_attached": False})
        try:
            await call_member(server, host, "sr_attach", {
                "type": rec["type"], "uuid": rec["uuid"], "device_config": device_config})
        except ApiError as exc:
            log.warning("shared SR %s not plugged on host %s: %s", rec["uuid"], host,
                        exc.args)
            continue
        store.update("PBD", pbd, currently_attached=True)


async def attach_here(server, args: dict) -> bool:
    """On a member: the SR's device is reachable from this machine and is that SR."""
    config = args.get("device_config")
    if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
        raise ApiError("INVALID_VALUE", "device_config", repr(config)[:80])
    drv = service.make_driver(str(args.get("type")), str(args.get("uuid")), config)
    with service.errors():
        await drv.attach()
    return True


SHARED_SR_OPS = {"sr_attach": attach_here}
