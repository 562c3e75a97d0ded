"""VM export and import as XVA, the records side: which objects go into ova.xml and how
they come back as new VMs, disks, VBDs and VIFs (xapi export.ml / import.ml).

    objects, disks = export_objects(store, vm)      # ova.xml's objects; [(id, VDI ref)]
    imp = Importer(server, sr, task, restore=.., force=..)
    disks = await imp.create(header)                 # [(id, new VDI ref, virtual size)]
    ... stream each disk's bytes (http/vm_transfer.py) ...
    vms = imp.finish()          or      await imp.undo()   # nothing left behind

Export writes complete records (every field, wire encoding) with references to the
exported objects rewritten to `Ref:<n>` ids and all others to OpaqueRef:NULL, and the
fields xapi resets reset. Import is lenient: a missing or malformed field takes the
datamodel default. New objects are made as the API makes them: VDIs through
services/storage/vdiops (the SR's driver), VMs with their VM_metrics and allowed
operations (vm_config.new_vm), VIFs with fresh MACs unless `restore`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..datamodel import CLASSES, NULL_REF
from ..datamodel.types import Map, Ref, Set, TypeMismatch, BadEnum
from ..errors import ApiError
from ..services.storage import vdiops
from ..services.storage.service import uuid_free
from ..services.network.nat import find_network as find_nat_network
from ..services.network.runtime import MTU_RANGE
from .vbd import _userdevice
from .vif import MAX_DEVICE, _check_mac as check_mac, new_mac
from .vm_checks import update_allowed_operations
from .vm_clone import config_of
from .vm_config import new_vm

log = logging.getLogger(__name__)

EXPORT_VSN = 2
# A low version, as XO writes: real xapi refuses files from a newer xapi than itself.
VERSION = {"hostname": "localhost", "date": "2026-12-01", "product_version": "8.2.1",
           "product_brand": "xapi-py", "build_number": "0", "xapi_major": 1,
           "xapi_minor": 20, "export_vsn": EXPORT_VSN}
EPOCH = datetime.fromtimestamp(0, timezone.utc)
_DROP = object()

# Reset on export (xapi export.ml): runtime state that means nothing elsewhere.
_VM_RESET = {"power_state": "Halted", "suspend_VDI": NULL_REF, "current_operations": {},
             "allowed_operations": [], "consoles": [], "crash_dumps": [], "blobs": {},
             "is_a_snapshot": False, "snapshot_of": NULL_REF, "snapshots": [],
             "snapshot_time": EPOCH, "transportable_snapshot_id": "", "parent": NULL_REF,
             "resident_on": NULL_REF, "scheduled_to_be_resident_on": NULL_REF, "domid": -1}
_RESET = {"VM": _VM_RESET,
          "VBD": {"currently_attached": False, "current_operations": {}},
          "VIF": {"currently_attached": False, "current_operations": {}},
          "VDI": {"current_operations": {}},
          "SR": {"PBDs": [], "current_operations": {}},
          "network": {"PIFs": [], "current_operations": {}}}
_VBD_COPIED = ("userdevice", "bootable", "mode", "type", "unpluggable", "empty",
               "other_config", "qos_algorithm_type", "qos_algorithm_params")
_VIF_COPIED = ("device", "MTU", "other_config", "qos_algorithm_type", "qos_algorithm_params",
               "locking_mode", "ipv4_allowed", "ipv6_allowed")
_VDI_COPIED = ("name_label", "name_description", "type", "sharable", "other_config",
               "xenstore_data", "sm_config", "tags", "on_boot", "allow_caching")
# VM fields an import never takes from the file (refs to this pool's objects, runtime)
_VM_LOCAL = {"affinity", "suspend_SR", "protection_policy", "snapshot_schedule",
             "appliance", "VUSBs", "VTPMs", "VGPUs", "attached_PCIs", "groups",
             "is_control_domain", "children", "snapshots"}


# -- export ---------------------------------------------------------------------------

def _rewrite(t, value, ids: dict):
    """`value` of type `t` with every reference replaced by its id (or dropped)."""
    if isinstance(t, Ref):
        return ids.get(value, NULL_REF)
    if isinstance(t, Set) and isinstance(t.elem, Ref):
        return [ids[v] for v in value if v in ids]
    if isinstance(t, Map) and (isinstance(t.key, Ref) or isinstance(t.value, Ref)):
        out = {}
        for k, v in value.items():
            k2 = _rewrite(t.key, k, ids) if isinstance(t.key, Ref) else k
            v2 = _rewrite(t.value, v, ids) if isinstance(t.value, Ref) else v
            if k2 != NULL_REF and v2 != NULL_REF:
                out[k2] = v2
        return out
    return value


# The host goes out blanked but for what names it (xapi export.ml make_host): its
# configuration (auth, licensing, certificates ...) is nothing a VM needs elsewhere.
_HOST_KEPT = {"uuid", "name_label", "name_description", "hostname", "address",
              "API_version_major", "API_version_minor", "API_version_vendor",
              "software_version", "capabilities", "cpu_info"}


def _snapshot(store, cname: str, ref: str, ids: dict, keep=frozenset()) -> dict:
    """The record as ova.xml carries it; the fields in `keep` are not reset."""
    rec = store.record(cname, ref)
    out = {}
    for f in CLASSES[cname].fields:
        if cname == "host" and f.name not in _HOST_KEPT:
            out[f.name] = f.default_value()
        else:
            out[f.name] = _rewrite(f.type, rec[f.name], ids)
    out.update({k: v for k, v in _RESET.get(cname, {}).items() if k not in keep})
    return out


def disk_vdis(store, vm: str) -> list[str]:
    """The VDIs whose bytes an export carries: those of non-CD VBDs outside ISO SRs."""
    out = []
    for vbd in store.record("VM", vm)["VBDs"]:
        rec = store.record("VBD", vbd)
        vdi = rec["VDI"]
        if rec["type"] == "CD" or rec["empty"] or not store.exists("VDI", vdi):
            continue
        if store.get("SR", store.get("VDI", vdi, "SR"), "content_type") == "iso":
            continue
        if vdi not in out:
            out.append(vdi)
    return out


_SNAPSHOT_FIELDS = {"is_a_snapshot", "snapshot_of", "snapshots", "snapshot_time",
                    "transportable_snapshot_id", "parent"}


def export_objects(store, vm, snapshots: bool = False,
                   excluded: frozenset = frozenset()) -> tuple[list, list]:
    """ova.xml's objects for `vm` (a ref, or a list of them for a metadata export of
    several; with `snapshots`: their snapshots too, keeping what ties them together, as
    a metadata export does; `excluded`: device classes left out, "vbd" and "vif"), and
    [(id, VDI ref)] of the first VM's disks to stream, in the order their data follows
    (ids compared as strings, as xapi's for_each_vdi)."""
    chosen = [vm] if isinstance(vm, str) else list(vm)
    vm = chosen[0]
    order = []                              # (class, ref) in xapi's class order

    def add(cname, ref):
        if ref != NULL_REF and store.exists(cname, ref) and (cname, ref) not in order:
            order.append((cname, ref))

    vms = []
    for v in chosen:
        vms += [v] + ([s for s in store.get("VM", v, "snapshots") if store.exists("VM", s)]
                      if snapshots else [])
    for v in chosen:
        rec = store.record("VM", v)
        add("host", rec["resident_on"] if rec["resident_on"] != NULL_REF else rec["affinity"])
    for v in vms:
        add("VM", v)
    for v in vms:
        add("VM_metrics", store.get("VM", v, "metrics"))
        add("VM_guest_metrics", store.get("VM", v, "guest_metrics"))
    vbds = [] if "vbd" in excluded else [
        b for v in vms for b in store.get("VM", v, "VBDs") if store.exists("VBD", b)]
    vifs = [] if "vif" in excluded else [
        i for v in vms for i in store.get("VM", v, "VIFs") if store.exists("VIF", i)]
    for vbd in vbds:
        add("VBD", vbd)
    for vif in vifs:
        add("VIF", vif)
    for vif in vifs:
        add("network", store.get("VIF", vif, "network"))
    vdis = [store.get("VBD", v, "VDI") for v in vbds]
    for vdi in vdis:
        add("VDI", vdi)
    for vdi in vdis:
        if store.exists("VDI", vdi):
            add("SR", store.get("VDI", vdi, "SR"))
    ids = {ref: f"Ref:{n}" for n, (_, ref) in enumerate(order)}
    keep = _SNAPSHOT_FIELDS if snapshots else frozenset()
    objects = [{"class": cname, "id": ids[ref],
                "snapshot": _snapshot(store, cname, ref, ids, keep)}
               for cname, ref in order]
    disks = [] if "vbd" in excluded else sorted(
        ((ids[vdi], vdi) for vdi in disk_vdis(store, vm)), key=lambda d: d[0])
    return objects, disks


def header(objects: list) -> dict:
    return {"version": dict(VERSION), "objects": objects}


# -- import ---------------------------------------------------------------------------

def _field_values(cname: str, snapshot: dict, names) -> dict:
    """The named fields of an imported record in their datamodel types; a missing or
    malformed one takes the default (xapi needs most of them: we are lenient)."""
    fmap = CLASSES[cname].field_map
    out = {}
    for name in names:
        f = fmap[name]
        if name in snapshot:
            try:
                out[name] = f.type.unmarshal(snapshot[name])
                continue
            except (TypeMismatch, BadEnum, ValueError, TypeError):
                log.info("import: %s.%s %r is malformed, using the default",
                         cname, name, snapshot[name])
        out[name] = f.default_value()
    return out


def _ident(value) -> str:
    """An object id from the file; anything but a string names nothing."""
    return value if isinstance(value, str) else NULL_REF


def _ids(value) -> list:
    """A set of object ids from the file (not a list: none)."""
    return value if isinstance(value, list) else []


def _is_ref_type(t) -> bool:
    return isinstance(t, Ref) or (isinstance(t, (Set, Map)) and (
        isinstance(getattr(t, "elem", None), Ref) or isinstance(getattr(t, "key", None), Ref)
        or isinstance(getattr(t, "value", None), Ref)))


class Importer:
    """Creates the objects of one ova.xml and, on failure, removes them again."""

    def __init__(self, server, sr: str, task: str, restore: bool = False,
                 force: bool = False, vdi_map: dict | None = None,
                 vif_map: dict | None = None):
        """`vdi_map` given (even empty): a metadata import, whose disks are VDIs here
        already (found by uuid, or the uuid the map gives for it), not new ones.
        `vif_map`: {VIF uuid in the file: network here} (a cross-pool migration's)."""
        self.server, self.store = server, server.store
        self.sr, self.task = sr, task
        self.restore, self.force = restore, force
        self.vdi_map = vdi_map
        self.vif_map = vif_map or {}
        self.made: list[tuple[str, str]] = []      # (class, ref) in creation order
        self.vms: list[str] = []
        self.new_ids: dict[str, str] = {}          # ova.xml VM id -> the new VM
        self.snapshots: list[str] = []
        self.read_only: list[str] = []             # VDIs to make read-only once written

    def _objects(self, header: dict) -> dict:
        objects = {}
        for obj in header["objects"]:
            if not isinstance(obj, dict) or not isinstance(obj.get("snapshot"), dict) \
                    or not isinstance(obj.get("id"), str) or not isinstance(obj.get("class"), str):
                raise ApiError("IMPORT_ERROR", "an ova.xml object lacks class, id or snapshot")
            objects[obj["id"]] = obj
        return objects

    def _find(self, objects: dict, ident, cname: str) -> dict:
        obj = objects.get(_ident(ident))
        if obj is None or obj["class"] != cname:
            raise ApiError("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", str(ident))
        return obj["snapshot"]

    async def create(self, header: dict) -> list[tuple[str, str, int]]:
        """Make every VM of the file with its devices; returns the disks whose bytes
        follow, [(id, new VDI, virtual size)] in stream order."""
        objects = self._objects(header)
        vm_ids = [i for i, o in objects.items() if o["class"] == "VM"]
        if not vm_ids:
            raise ApiError("IMPORT_ERROR", "ova.xml holds no VM")
        disks: dict[str, tuple[str, int]] = {}
        for vm_id in vm_ids:
            await self._import_vm(objects, vm_id, disks)
        for vm_id in vm_ids:        # snapshots point at their VM once both exist
            of = self.new_ids.get(_ident(objects[vm_id]["snapshot"].get("snapshot_of")))
            if of is not None and vm_id in self.new_ids:
                self.store.update("VM", self.new_ids[vm_id], snapshot_of=of)
        if self.task and self.store.exists("task", self.task):
            other = dict(self.store.record("task", self.task)["other_config"])
            other["object_creation"] = "complete"
            self.store.update("task", self.task, other_config=other)
        await self.store.flush()
        return sorted(((i, vdi, size) for i, (vdi, size) in disks.items()),
                      key=lambda d: d[0])

    async def _import_vm(self, objects, vm_id: str, disks: dict):
        snap = objects[vm_id]["snapshot"]
        fields = {f.name: f.default_value() for f in CLASSES["VM"].fields
                  if not f.derived_from}
        names = [n for n in config_of(fields) if n not in _VM_LOCAL
                 and not _is_ref_type(CLASSES["VM"].field_map[n].type)]
        fields = _field_values("VM", snap, names)
        other = dict(fields.get("other_config", {}))
        other["import_task"] = self.task or ""
        fields["other_config"] = other
        is_snapshot = snap.get("is_a_snapshot") is True
        if is_snapshot:     # a snapshot stays one (metadata exports carry them)
            fields.update(is_a_snapshot=True, is_a_template=True, **_field_values(
                "VM", snap, ["snapshot_time", "transportable_snapshot_id"]))
        if self.restore and isinstance(snap.get("uuid"), str):
            self._assert_uuid_free(snap["uuid"])
            fields["uuid"] = snap["uuid"]
        vm = new_vm(self.store, fields)
        self.made.append(("VM", vm))
        self.new_ids[vm_id] = vm
        self.store.update("VM", vm, current_operations={self.task or vm: "import"})
        (self.snapshots if is_snapshot else self.vms).append(vm)
        for vbd_id in _ids(snap.get("VBDs")):
            await self._import_vbd(objects, vm, self._find(objects, vbd_id, "VBD"), disks)
        for vif_id in _ids(snap.get("VIFs")):
            self._import_vif(objects, vm, self._find(objects, vif_id, "VIF"))
        update_allowed_operations(self.store, vm)

    def _assert_uuid_free(self, uuid: str):
        """A restore keeps the VM's uuid: refused while a VM here has it (xapi
        import.ml: VM_BAD_POWER_STATE when that VM is not halted)."""
        if uuid_free(self.store, "VM", uuid):
            return
        existing = self.store.by_uuid("VM", uuid)
        state = self.store.get("VM", existing, "power_state")
        if state != "Halted":
            raise ApiError("VM_BAD_POWER_STATE", existing, "halted", state.lower())
        raise ApiError("IMPORT_ERROR", f"a VM with uuid {uuid} exists already")

    def check(self, header: dict):
        """A dry run: the refusals creating these objects would meet, nothing made."""
        objects = self._objects(header)
        for obj in objects.values():
            uuid = obj["snapshot"].get("uuid")
            if obj["class"] == "VM" and self.restore and isinstance(uuid, str):
                self._assert_uuid_free(uuid)
            if obj["class"] == "VIF" and isinstance(uuid, str):
                self._mapped_network(uuid)

    def _mapped_network(self, vif_uuid: str) -> str | None:
        network = self.vif_map.get(vif_uuid)
        if network is not None and not self.store.exists("network", network):
            raise ApiError("HANDLE_INVALID", "network", network)
        return network

    async def _import_vbd(self, objects, vm: str, snap: dict, disks: dict):
        fields = _field_values("VBD", snap, _VBD_COPIED)
        vdi_id = _ident(snap.get("VDI", NULL_REF))
        if fields["type"] == "CD":
            vdi = self._local_cd(objects, vdi_id) if vdi_id != NULL_REF else NULL_REF
            fields["empty"] = vdi == NULL_REF
        elif vdi_id == NULL_REF:
            raise ApiError("IMPORT_ERROR", f"disk {fields['userdevice']} has no VDI")
        else:
            # xapi's rule (import.ml non_cdrom_vdis): any VBD but a CD's is a disk whose
            # bytes follow in the archive, whatever its `empty` says
            fields["empty"] = False
            vdi_snap = self._find(objects, vdi_id, "VDI")
            sr_obj = objects.get(_ident(vdi_snap.get("SR")))
            if sr_obj is not None and sr_obj["snapshot"].get("content_type") == "iso":
                vdi = self._local_cd(objects, vdi_id)
                fields["empty"] = vdi == NULL_REF
            elif self.vdi_map is not None:
                vdi = self._existing_disk(vdi_snap)
            elif vdi_id in disks:
                vdi = disks[vdi_id][0]
            else:
                vdi = await self._import_vdi(vdi_snap)
                disks[vdi_id] = (vdi, _field_values("VDI", vdi_snap,
                                                    ["virtual_size"])["virtual_size"])
        # the same device rules as VBD.create (a hostile file cannot make two xvda)
        fields["userdevice"] = _userdevice(self.store, vm, fields["userdevice"] or "autodetect",
                                           fields["type"] == "CD")
        fields.update(VM=vm, VDI=vdi, currently_attached=False)
        if self.restore and isinstance(snap.get("uuid"), str) and \
                uuid_free(self.store, "VBD", snap["uuid"]):
            fields["uuid"] = snap["uuid"]
        self.made.append(("VBD", self.store.create("VBD", fields)))

    def _existing_disk(self, snap: dict) -> str:
        uuid = snap.get("uuid") if isinstance(snap.get("uuid"), str) else ""
        uuid = self.vdi_map.get(uuid, uuid)
        try:
            return self.store.by_uuid("VDI", uuid if isinstance(uuid, str) else "")
        except ApiError:
            raise ApiError("IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND") from None

    def _local_cd(self, objects, vdi_id: str) -> str:
        """A CD's ISO is not in the archive: the same VDI here (by uuid), else empty."""
        obj = objects.get(vdi_id)
        uuid = obj["snapshot"].get("uuid") if obj else None
        if isinstance(uuid, str):
            try:
                return self.store.by_uuid("VDI", uuid)
            except ApiError:
                pass
        return NULL_REF

    async def _import_vdi(self, snap: dict) -> str:
        size = _field_values("VDI", snap, ["virtual_size"])["virtual_size"]
        if size <= 0:
            raise ApiError("IMPORT_ERROR", f"a disk has virtual size {size}")
        fields = _field_values("VDI", snap, _VDI_COPIED)
        vdi = await vdiops.create(self.server, self.sr, size, fields)
        self.made.append(("VDI", vdi))
        if _field_values("VDI", snap, ["read_only"])["read_only"]:
            self.read_only.append(vdi)    # written first, made read-only at the end
        return vdi

    def _import_vif(self, objects, vm: str, snap: dict):
        fields = _field_values("VIF", snap, _VIF_COPIED)
        net_obj = objects.get(_ident(snap.get("network")))
        name = net_obj["snapshot"].get("name_label") if net_obj else None
        uuid = snap.get("uuid")
        network = (isinstance(uuid, str) and self._mapped_network(uuid)) or self._network(name)
        if network == NULL_REF:
            log.warning("import: no network for VIF %s of VM %s: left out",
                        fields["device"], vm)
            return
        fields["device"] = self._vif_device(vm, fields["device"])
        if not MTU_RANGE[0] <= fields["MTU"] <= MTU_RANGE[1]:
            fields["MTU"] = self.store.get("network", network, "MTU")
        mac = snap.get("MAC") if self.restore else None
        if isinstance(mac, str) and mac:
            check_mac(mac)
        fields.update(VM=vm, network=network, currently_attached=False,
                      MAC=mac if isinstance(mac, str) and mac else new_mac(self.store),
                      MAC_autogenerated=not (isinstance(mac, str) and mac))
        if self.restore and isinstance(snap.get("uuid"), str) and \
                uuid_free(self.store, "VIF", snap["uuid"]):
            fields["uuid"] = snap["uuid"]
        vif = self.store.create("VIF", fields)
        self.store.update("VIF", vif, allowed_operations=["attach"])
        self.made.append(("VIF", vif))

    def _vif_device(self, vm: str, device: str) -> str:
        """VIF.create's rules: a number below MAX_DEVICE, once per VM; none given, the
        lowest free one."""
        used = {self.store.get("VIF", v, "device") for v in self.store.get("VM", vm, "VIFs")}
        if device == "":
            device = str(next(n for n in range(MAX_DEVICE + 1) if str(n) not in used))
        if not device.isdigit() or int(device) >= MAX_DEVICE:
            raise ApiError("INVALID_DEVICE", device)
        if str(int(device)) in used:
            raise ApiError("DEVICE_ALREADY_EXISTS", device)
        return str(int(device))

    def _network(self, name) -> str:
        """The network named as the exported one, else the host-internal NAT network
        (where a guest gets an address at once), else the management PIF's, else the
        first network that is not host-internal (by name, for a stable choice)."""
        store = self.store
        if isinstance(name, str) and name:
            found = store.find("network", name_label=name)
            if found:
                return sorted(found)[0]
        nat = find_nat_network(store)
        if nat is not None:
            return nat
        for pif in store.find("PIF", management=True):
            return store.get("PIF", pif, "network")
        candidates = sorted((rec["name_label"], ref) for ref, rec in store.tables["network"].items()
                            if "is_host_internal_management_network" not in rec["other_config"])
        return candidates[0][1] if candidates else NULL_REF

    def finish(self) -> list[str]:
        """The import is complete: release the VMs, set read-only disks; the result."""
        for vdi in self.read_only:
            if self.store.exists("VDI", vdi):
                self.store.update("VDI", vdi, read_only=True)
        for vm in self.vms + self.snapshots:
            if self.store.exists("VM", vm):
                current = dict(self.store.record("VM", vm)["current_operations"])
                current.pop(self.task or vm, None)
                self.store.update("VM", vm, current_operations=current)
                update_allowed_operations(self.store, vm)
        return list(self.vms or self.snapshots)

    async def undo(self):
        """Remove everything made so far, newest first (disks through their driver)."""
        store = self.store
        for cname, ref in reversed(self.made):
            try:
                if not store.exists(cname, ref):
                    continue
                if cname == "VDI":
                    await vdiops.destroy(self.server, ref)
                    continue
                if cname == "VM":
                    metrics = store.record("VM", ref)["metrics"]
                    if store.exists("VM_metrics", metrics):
                        store.delete("VM_metrics", metrics)
                store.delete(cname, ref)
            except Exception:
                log.exception("import: could not remove %s %s", cname, ref)
        self.made.clear()
        await store.flush()
