"""VM.clone / copy / snapshot / revert / provision.

The VM record part is done here, with the VIFs (api/vif.copy_vifs: new MACs for a clone
or copy, the same ones for a snapshot and its revert);
disks belong to storage. Storage plugs in through
two seams of the Server's VmComposition (server.py, services/vm/composition.py;
None = VMs without disks):

- `disk_copier`: async fn(ctx, mode, src_vm, new_vm, sr) for mode in "clone", "copy",
  "snapshot", "revert" — duplicate (or, for revert, restore) the source's VBDs/VDIs
  onto the new record. `sr` is the copy target (NULL: the disks' own SRs).
- `provisioner`: async fn(ctx, vm, disks, default_sr) creating the disks described
  by a template's other_config:disks (see templates.py for the format); without
  one, provisioning a template that asks for disks fails with VM_REQUIRES_SR.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from ..datamodel import CLASSES, NULL_REF
from ..dispatch.generic import check_ref
from ..dispatch.registry import implements
from ..errors import ApiError
from .vif import copy_vifs, replace_vifs
from .vm import _hard_shutdown
from .vm_checks import update_allowed_operations, vm_operation
from .vm_config import new_vm

# Runtime and identity fields a copy never inherits (derived "many" sides are kept
# by the store and skipped as well).
_FRESH = {"uuid", "allowed_operations", "current_operations", "power_state", "domid",
          "resident_on", "scheduled_to_be_resident_on", "metrics", "guest_metrics",
          "last_booted_record", "is_a_snapshot", "snapshot_of", "snapshot_time",
          "snapshot_info", "snapshot_metadata", "transportable_snapshot_id", "parent",
          "blobs", "is_default_template", "suspend_VDI", "requires_reboot",
          "reference_label", "memory_overhead"}


def config_of(rec: dict) -> dict:
    return {f.name: rec[f.name] for f in CLASSES["VM"].fields
            if not f.derived_from and f.name not in _FRESH}


async def _run_disk_hooks(ctx, mode, src, new, sr=NULL_REF):
    copier = ctx.server.vm_parts.disk_copier
    if copier is not None:
        await copier(ctx, mode, src, new, sr)


async def _duplicate(ctx, vm, new_name, mode, sr=NULL_REF, **extra) -> str:
    # The source's Row is not kept in a local: held while the copy is linked to it
    # (its children), it would make the store copy that list (store/relations.py).
    fields = config_of(ctx.store.record("VM", vm))
    other = dict(fields["other_config"])
    other.pop("default_template", None)   # a copy of a built-in template is not built in
    fields.update(name_label=new_name, other_config=other, **extra)
    new = new_vm(ctx.store, fields)
    try:
        await _run_disk_hooks(ctx, mode, vm, new, sr)
    except BaseException:
        if ctx.store.exists("VM", new):  # no half-made VM left behind
            metrics = ctx.store.record("VM", new)["metrics"]
            if ctx.store.exists("VM_metrics", metrics):
                ctx.store.delete("VM_metrics", metrics)
            ctx.store.delete("VM", new)
        raise
    copy_vifs(ctx.store, vm, new, keep_macs=(mode == "snapshot"))
    update_allowed_operations(ctx.store, new)
    return new


@implements("VM.clone")
async def clone(ctx, vm, new_name):
    async with vm_operation(ctx, vm, "clone"):
        return await _duplicate(ctx, vm, new_name, "clone", parent=vm)


@implements("VM.copy")
async def copy(ctx, vm, new_name, sr):
    check_ref(ctx, "SR", sr)
    async with vm_operation(ctx, vm, "copy"):
        return await _duplicate(ctx, vm, new_name, "copy", sr)


@implements("VM.snapshot")
async def snapshot(ctx, vm, new_name, ignore_vdis):
    """A snapshot is a template-like record tied to its VM (xapi: is_a_template and
    is_a_snapshot both true); disks are snapshotted by storage through the disk copier."""
    async with vm_operation(ctx, vm, "snapshot"):
        return await _duplicate(
            ctx, vm, new_name, "snapshot", is_a_template=True, is_a_snapshot=True,
            snapshot_of=vm, snapshot_time=datetime.now(timezone.utc), parent=vm)


@implements("VM.revert")
async def revert(ctx, snapshot):
    """Put the VM back into the snapshot's configuration (halting it first)."""
    store = ctx.store
    async with vm_operation(ctx, snapshot, "revert"):
        vm = store.record("VM", snapshot)["snapshot_of"]
        if vm == NULL_REF or not store.exists("VM", vm):
            raise ApiError("VM_REVERT_FAILED", vm, snapshot)
        if store.record("VM", vm)["power_state"] != "Halted":
            await _hard_shutdown(ctx, vm)
        fields = config_of(store.record("VM", snapshot))
        current = store.record("VM", vm)
        # The VM stays itself: its name and template flag are not the snapshot's.
        fields.update(name_label=current["name_label"], is_a_template=False,
                      name_description=current["name_description"])
        store.update("VM", vm, **fields)
        await _run_disk_hooks(ctx, "revert", snapshot, vm)
        replace_vifs(store, vm, snapshot)
        if store.record("VM", vm)["suspend_VDI"] != NULL_REF:
            # A checkpoint: the disk hook gave the VM a copy of its memory image; the
            # VM is left Suspended, as xapi leaves it (VM.resume runs the guest on).
            store.update("VM", vm, power_state="Suspended")
        update_allowed_operations(store, vm)


def parse_disks(text: str) -> list[dict]:
    """other_config:disks → [{"device","size","sr","bootable","type"}, ...]."""
    if not text.strip():
        return []
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        raise ApiError("INVALID_VALUE", "other_config:disks", text) from None
    disks = []
    for disk in root.iter("disk"):
        d = dict(disk.attrib)
        try:
            d["size"] = int(d.get("size", "0"))
        except ValueError:
            raise ApiError("INVALID_VALUE", "other_config:disks", text) from None
        d["bootable"] = d.get("bootable", "false") == "true"
        disks.append(d)
    return disks


@implements("VM.provision")
async def provision(ctx, vm):
    async with vm_operation(ctx, vm, "provision"):
        rec = ctx.store.record("VM", vm)
        disks = parse_disks(rec["other_config"].get("disks", ""))
        if disks:
            default_sr = ctx.store.record("pool", ctx.server.pool_ref)["default_SR"]
            provisioner = ctx.server.vm_parts.provisioner
            if provisioner is None:
                raise ApiError("VM_REQUIRES_SR", vm, default_sr)
            await provisioner(ctx, vm, disks, default_sr)
        other = dict(ctx.store.record("VM", vm)["other_config"])
        other.pop("disks", None)   # provisioned once: a second call creates nothing
        ctx.store.update("VM", vm, other_config=other)
