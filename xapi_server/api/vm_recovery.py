"""Disaster recovery: which SRs a VM needs before it can be recovered into the pool a
session belongs to, and VM.recover; the metadata VDIs xapi reads a lost pool's
database from.

xapi recovers a VM from a foreign pool's database (VDI.open_database on a metadata
VDI) into the pool of `session_to`. This server keeps one database and writes no
metadata VDIs, so the VM always comes from this database and `session_to` is a
session of this same pool: the checks run against it, and VM.recover finds the VM
already there.
"""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError


def _vdis(store, vm: str):
    """The VDIs the VM and its snapshots use (disks, CDs, memory images)."""
    for owner in [vm, *store.get("VM", vm, "snapshots")]:
        for vbd in store.get("VM", owner, "VBDs"):
            rec = store.record("VBD", vbd)
            if not rec["empty"] and rec["VDI"] != NULL_REF and store.exists("VDI", rec["VDI"]):
                yield rec["VDI"]
        memory = store.get("VM", owner, "suspend_VDI")
        if memory != NULL_REF and store.exists("VDI", memory):
            yield memory


def _attached(store, sr: str) -> bool:
    return any(store.get("PBD", p, "currently_attached") for p in store.get("SR", sr, "PBDs"))


def _missing_srs(ctx, vm: str, session_to: str) -> list[str]:
    ctx.server.dispatcher.check_session(session_to)   # SESSION_INVALID
    store = ctx.store
    store.record("VM", vm)
    srs = dict.fromkeys(store.get("VDI", v, "SR") for v in _vdis(store, vm))
    return [sr for sr in srs if not _attached(store, sr)]


@implements("VM.get_SRs_required_for_recovery")
def get_srs_required_for_recovery(ctx, self, session_to):
    return _missing_srs(ctx, self, session_to)


@implements("VM.assert_can_be_recovered")
def assert_can_be_recovered(ctx, self, session_to):
    appliance = ctx.store.get("VM", self, "appliance")
    if appliance != NULL_REF:
        raise ApiError("VM_IS_PART_OF_AN_APPLIANCE", self, appliance)
    for sr in _missing_srs(ctx, self, session_to):
        raise ApiError("VM_REQUIRES_SR", self, sr)


@implements("VM.recover")
def recover(ctx, self, session_to, force):
    assert_can_be_recovered(ctx, self, session_to)
    # The VM's database is the destination's: it is there already, nothing to import.


@implements("VDI.open_database")
def open_database(ctx, self):
    vdi_type = ctx.store.get("VDI", self, "type")
    if vdi_type != "metadata":
        raise ApiError("VDI_INCOMPATIBLE_TYPE", self, vdi_type)
    raise ApiError("COULD_NOT_IMPORT_DATABASE",
                   "this server cannot read a pool database from a metadata VDI")


@implements("VDI.read_database_pool_uuid")
def read_database_pool_uuid(ctx, self):
    ctx.store.record("VDI", self)
    # xapi answers from the cache its SR scans fill with the metadata VDIs they
    # find; no scan here reads one, so no VDI is in it.
    return ""
