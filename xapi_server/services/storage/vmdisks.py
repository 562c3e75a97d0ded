"""The disks side of VM.clone, VM.copy and VM.snapshot.

    new_vbds = await copy_vm_disks(server, src_vm, dst_vm, "clone")   # or "snapshot",
                                                                       # "copy" (+ sr)
Each disk VDI of `src_vm` is cloned / snapshotted / copied and a VBD like the
original is made for `dst_vm`; CD drives keep pointing at the same ISO. On failure
everything made so far is destroyed again and the error propagates.
"""
from __future__ import annotations

from . import vdiops
from .service import NULL

_VBD_FIELDS = ("userdevice", "bootable", "mode", "type", "unpluggable", "empty",
               "other_config", "qos_algorithm_type", "qos_algorithm_params")


async def copy_vm_disks(server, src_vm: str, dst_vm: str, how: str, sr: str = NULL,
                        ignore_vdis=(), progress=None) -> list[str]:
    store = server.store
    vbds = list(store.get("VM", src_vm, "VBDs"))
    made_vdis, made_vbds = [], []
    try:
        for i, vbd in enumerate(vbds):
            rec = store.record("VBD", vbd)
            vdi = rec["VDI"]
            if vdi in ignore_vdis:
                continue
            if rec["type"] != "CD" and not rec["empty"] and vdi != NULL:
                if how == "copy":
                    vdi = await vdiops.copy(server, vdi, sr)
                else:
                    vdi = await vdiops.clone(server, vdi, snapshot=(how == "snapshot"))
                made_vdis.append(vdi)
            fields = {k: rec[k] for k in _VBD_FIELDS}
            made_vbds.append(store.create("VBD", {**fields, "VM": dst_vm, "VDI": vdi,
                                                   "currently_attached": False}))
            if progress is not None:
                progress((i + 1) / len(vbds))
    except BaseException:
        for vbd in made_vbds:
            if store.exists("VBD", vbd):
                store.delete("VBD", vbd)
        for vdi in made_vdis:
            if store.exists("VDI", vdi):
                await vdiops.destroy(server, vdi)
        raise
    return made_vbds
