"""Which SR and VDI operations are allowed now, as xapi's xapi_sr_operations.ml and
xapi_vdi.ml decide (their order; the first failure wins): one pure function per class
gives the error an operation would meet, or None; allowed_operations lists the
operations this server has with no error, and `keep_current` rewrites both records'
lists whenever an SR, PBD, VDI or VBD changes (as xapi's update_allowed_operations).

SR: an operation the SR's driver lacks (SM features, xapi's sm_cap_table) is
SR_OPERATION_NOT_SUPPORTED; scanning, updating and every disk operation need a plugged
PBD (SR_NO_PBDS); destroy and forget need none plugged (SR_HAS_PBD); an operation in
progress blocks the others (OTHER_OPERATION_IN_PROGRESS). VDI: its SR must allow the
matching vdi_* operation; then an attached disk cannot be destroyed, resized offline or
forgotten (VDI_IN_USE).
"""
from __future__ import annotations

from ..datamodel import METHODS
from ..dispatch.registry import IMPLEMENTATIONS
from ..errors import ApiError

# storage_operations -> the message that performs it (None: never offered here).
_SR_MESSAGES = {
    "scan": "SR.scan", "destroy": "SR.destroy", "forget": "SR.forget", "plug": "PBD.plug",
    "unplug": "PBD.unplug", "update": "SR.update", "vdi_create": "VDI.create",
    "vdi_introduce": "VDI.introduce", "vdi_destroy": "VDI.destroy",
    "vdi_resize": "VDI.resize", "vdi_clone": "VDI.clone", "vdi_snapshot": "VDI.snapshot",
    "vdi_mirror": "VDI.pool_migrate", "vdi_enable_cbt": "VDI.enable_cbt",
    "vdi_disable_cbt": "VDI.disable_cbt", "vdi_data_destroy": "VDI.data_destroy",
    "vdi_list_changed_blocks": "VDI.list_changed_blocks",
    "vdi_set_on_boot": "VDI.set_on_boot", "vdi_blocked": None, "vdi_copy": "VDI.copy",
    "vdi_force_unlock": "VDI.force_unlock", "vdi_forget": "VDI.forget",
    "vdi_generate_config": "VDI.generate_config", "vdi_resize_online": "VDI.resize_online",
    "vdi_update": "VDI.update", "vdi_revert": None, "pbd_create": "PBD.create",
    "pbd_destroy": "PBD.destroy",
}
# The SM feature each operation needs (xapi's sm_cap_table; clone checked too: a
# read-only library cannot clone).
_SM_FEATURE = {
    "vdi_create": "VDI_CREATE", "vdi_destroy": "VDI_DELETE", "vdi_resize": "VDI_RESIZE",
    "vdi_introduce": "VDI_INTRODUCE", "vdi_mirror": "VDI_MIRROR",
    "vdi_enable_cbt": "VDI_CONFIGURE_CBT", "vdi_disable_cbt": "VDI_CONFIGURE_CBT",
    "vdi_data_destroy": "VDI_CONFIGURE_CBT", "vdi_list_changed_blocks": "VDI_CONFIGURE_CBT",
    "vdi_set_on_boot": "VDI_RESET_ON_BOOT", "update": "SR_UPDATE",
    "vdi_snapshot": "VDI_SNAPSHOT", "vdi_clone": "VDI_CLONE",
    "vdi_resize_online": "VDI_RESIZE_ONLINE", "vdi_generate_config": "VDI_GENERATE_CONFIG",
}
# vdi_operations -> the SR operation it needs (None: no SR check).
_VDI_SR_OP = {
    "clone": "vdi_clone", "copy": "vdi_copy", "resize": "vdi_resize",
    "resize_online": "vdi_resize_online", "snapshot": "vdi_snapshot", "mirror": "vdi_mirror",
    "destroy": "vdi_destroy", "forget": "vdi_forget", "update": "vdi_update",
    "force_unlock": "vdi_force_unlock", "generate_config": "vdi_generate_config",
    "enable_cbt": "vdi_enable_cbt", "disable_cbt": "vdi_disable_cbt",
    "data_destroy": "vdi_data_destroy", "list_changed_blocks": "vdi_list_changed_blocks",
    "set_on_boot": "vdi_set_on_boot", "blocked": None, "revert_to": None,
    "revert_from": None,
}
_VDI_OP_ALONE = {"blocked", "revert_to", "revert_from"}      # never offered here
_NEEDS_PLUGGED = {"scan", "update", "unplug"} | {op for op in _SR_MESSAGES
                                                  if op.startswith("vdi_")}
_NOT_WHILE_ATTACHED = {"destroy", "resize", "forget", "data_destroy"}


def _answered(message: str | None) -> bool:
    if message is None or message not in METHODS:
        return False
    return METHODS[message].kind != "custom" or message in IMPLEMENTATIONS


def _sm_features(store, sr: str) -> dict:
    sms = store.find("SM", type=store.get("SR", sr, "type"))
    return store.get("SM", sms[0], "features") if sms else {}


def sr_operation_error(store, sr: str, op: str) -> ApiError | None:
    rec = store.record("SR", sr)
    feature = _SM_FEATURE.get(op)
    if feature is not None and feature not in _sm_features(store, sr):
        return ApiError("SR_OPERATION_NOT_SUPPORTED", sr)
    plugged = [p for p in rec["PBDs"] if store.get("PBD", p, "currently_attached")]
    if op in _NEEDS_PLUGGED and not plugged:
        return ApiError("SR_NO_PBDS", sr)
    if op in ("destroy", "forget") and plugged:
        return ApiError("SR_HAS_PBD", sr)
    if op in ("plug", "pbd_destroy") and len(plugged) == len(rec["PBDs"]):
        return ApiError("OPERATION_NOT_ALLOWED", "every PBD of the SR is plugged")
    running = [(task, other) for task, other in rec["current_operations"].items()
               if other != "plug"]
    if running:
        return ApiError("OTHER_OPERATION_IN_PROGRESS", "SR", sr, running[0][1], running[0][0])
    return None


def sr_allowed_operations(store, sr: str) -> list[str]:
    return [op for op, message in _SR_MESSAGES.items()
            if _answered(message) and sr_operation_error(store, sr, op) is None]


def vdi_operation_error(store, vdi: str, op: str) -> ApiError | None:
    rec = store.record("VDI", vdi)
    sr_op = _VDI_SR_OP.get(op)
    if sr_op is not None and store.exists("SR", rec["SR"]):
        error = sr_operation_error(store, rec["SR"], sr_op)
        if error is not None:
            return error
    attached = any(store.exists("VBD", v) and store.get("VBD", v, "currently_attached")
                   for v in rec["VBDs"])
    if op in _NOT_WHILE_ATTACHED and attached:
        return ApiError("VDI_IN_USE", vdi, op)
    if rec["current_operations"]:
        task, other = next(iter(rec["current_operations"].items()))
        return ApiError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, other, task)
    return None


def vdi_allowed_operations(store, vdi: str) -> list[str]:
    return [op for op, sr_op in _VDI_SR_OP.items()
            if op not in _VDI_OP_ALONE and _answered(_SR_MESSAGES.get(sr_op))
            and vdi_operation_error(store, vdi, op) is None]


def refresh(store, srs, vdis):
    """Rewrite allowed_operations where it changed (an unchanged list is not written:
    no event, no disk write)."""
    for sr in srs:
        if store.exists("SR", sr):
            allowed = sr_allowed_operations(store, sr)
            if allowed != store.get("SR", sr, "allowed_operations"):
                store.update("SR", sr, allowed_operations=allowed)
    for vdi in vdis:
        if store.exists("VDI", vdi):
            allowed = vdi_allowed_operations(store, vdi)
            if allowed != store.get("VDI", vdi, "allowed_operations"):
                store.update("VDI", vdi, allowed_operations=allowed)


def _owner(store, cls: str, ref: str, field: str):
    return store.get(cls, ref, field) if store.exists(cls, ref) else None


async def keep_current(server) -> None:
    """From the start, and after every change of an SR, PBD, VDI or VBD."""
    store = server.store
    refresh(store, store.refs("SR"), store.refs("VDI"))
    await store.flush()
    seen = store.generation
    while True:
        await store.wait_change(seen, 60.0)
        changed = store.changed_since(seen, "SR", "PBD", "VDI", "VBD")
        seen = store.generation
        srs = set(changed["SR"]) | {_owner(store, "PBD", p, "SR") for p in changed["PBD"]}
        vdis = set(changed["VDI"]) | {_owner(store, "VBD", v, "VDI") for v in changed["VBD"]}
        vdis |= {v for sr in srs if store.exists("SR", sr) for v in store.get("SR", sr, "VDIs")}
        try:
            refresh(store, srs - {None}, vdis - {None})
            await store.flush()
        except Exception:   # the disk refused: the next change retries
            continue
