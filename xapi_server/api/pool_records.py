"""The records a host brings into a pool when it joins, and what goes when it leaves.

A joining host sends its own objects that must survive the join, as xapi keeps them:
its host record with metrics, CPUs and certificates, its PIFs with their networks,
its local SRs with their PBDs and VDIs, its control domain and its halted VMs with
their disks and VIFs. They keep their refs and uuids in the pool database. A network
the pool already has (the same bridge) is the pool's; a reference to anything that
does not come along (a guest-metrics record, a snapshot) is dropped rather than left
dangling. The records travel as the store's own column texts (store/codec.py), so
every type comes back exactly.
"""
from __future__ import annotations

from ..datamodel import CLASSES, NULL_REF, Ref, Set
from ..store.codec import decode_row, row_values, stored_fields

# In creation order (each class's references mostly point backwards).
MOVED = ("network", "host_metrics", "host", "host_cpu", "Certificate", "PIF_metrics",
         "PIF", "SR", "PBD", "VDI", "VM_metrics", "VM", "VBD", "VIF",
         "console")   # a running VM's, exchanged by forwarded calls (never at join)


def _guest(rec) -> bool:
    return not (rec["is_a_template"] or rec["is_a_snapshot"] or rec["is_control_domain"])


def shared_srs(store) -> list[str]:
    return [ref for ref, rec in store.tables["SR"].items() if rec["shared"]]


def running_vms(store) -> list[str]:
    """Guests that are not halted: a host with any of them cannot join (xapi's rule)."""
    return [ref for ref, rec in store.tables["VM"].items()
            if _guest(rec) and rec["power_state"] != "Halted"]


def local_objects(store, host: str) -> dict:
    """{class: {ref: record}} of what this host brings into the pool."""
    picked: dict[str, dict] = {cname: {} for cname in MOVED}

    def take(cname, ref):
        rec = store.tables[cname].get(ref)
        if rec is not None:
            picked[cname][ref] = rec

    host_rec = store.record("host", host)
    take("host", host)
    take("host_metrics", host_rec["metrics"])
    for ref in store.find("host_cpu", host=host):
        take("host_cpu", ref)
    for ref in store.find("Certificate", host=host):
        take("Certificate", ref)
    for pif in store.find("PIF", host=host):
        take("PIF", pif)
        take("PIF_metrics", store.get("PIF", pif, "metrics"))
        take("network", store.get("PIF", pif, "network"))
    for sr, rec in store.tables["SR"].items():
        take("SR", sr)
        for pbd in rec["PBDs"]:
            take("PBD", pbd)
        for vdi in rec["VDIs"]:
            take("VDI", vdi)
    for vm, rec in store.tables["VM"].items():
        if rec["is_control_domain"] or (_guest(rec) and rec["power_state"] == "Halted"):
            take("VM", vm)
            take("VM_metrics", rec["metrics"])
            for vbd in rec["VBDs"]:
                take("VBD", vbd)
            for vif in rec["VIFs"]:
                take("VIF", vif)
                take("network", store.get("VIF", vif, "network"))
    return picked


def encode(objects: dict) -> dict:
    """{class: {ref: [column texts]}}: JSON-safe."""
    return {cname: {ref: row_values(cname, ref, rec)[1:] for ref, rec in recs.items()}
            for cname, recs in objects.items()}


def decode(wire: dict) -> dict:
    """The inverse of encode, for the classes that may move only; ValueError if the
    texts do not fit the datamodel."""
    objects = {}
    for cname in MOVED:
        fields = stored_fields(CLASSES[cname])
        rows = wire.get(cname) or {}
        if not isinstance(rows, dict):
            raise ValueError(f"{cname}: not a map of records")
        objects[cname] = {}
        for ref, texts in rows.items():
            if not isinstance(texts, list) or len(texts) != len(fields):
                raise ValueError(f"{cname} {ref}: {len(fields)} columns expected")
            objects[cname][ref] = decode_row(fields, texts)
    return objects


def add_to_pool(store, objects: dict, replace: bool = False):
    """Create the joining host's objects in the pool's store (see the module doc);
    with `replace`, objects the store has already take the fields given (a VM's
    records exchanged between the coordinator and the member running it)."""
    mapped = {}   # the joiner's network ref -> the pool's network with its bridge
    for ref, rec in objects["network"].items():
        same = store.find("network", bridge=rec["bridge"])
        if same:
            mapped[ref] = same[0]
    known = {ref for recs in objects.values() for ref in recs}

    def fix(value, ftype):
        if isinstance(ftype, Ref):
            value = mapped.get(value, value)
            return value if value in known or _exists(store, ftype.cls, value) else NULL_REF
        if isinstance(ftype, Set) and isinstance(ftype.elem, Ref):
            return [fix(v, ftype.elem) for v in value if fix(v, ftype.elem) != NULL_REF]
        return value

    for cname in MOVED:
        fields = stored_fields(CLASSES[cname])
        for ref, rec in objects[cname].items():
            if ref in mapped:
                continue
            values = {f.name: fix(rec[f.name], f.type) for f in fields if f.name in rec}
            if not store.exists(cname, ref):
                store.create(cname, values, ref=ref)
            elif replace:
                store.update(cname, ref, **values)


def _exists(store, cname, ref) -> bool:
    return cname in store.tables and ref in store.tables[cname]


def forget_host(store, host: str):
    """Remove a host that left the pool (ejected, or destroyed when dead) and what was
    only its own: metrics, CPUs, certificates, PIFs, PBDs, its control domain, and the
    SRs no other host has a PBD for, with their VDIs and the VBDs of those."""
    rec = store.record("host", host)
    for pif in store.find("PIF", host=host):
        _delete(store, "PIF_metrics", store.get("PIF", pif, "metrics"))
        store.delete("PIF", pif)
    for pbd in list(rec["PBDs"]):
        sr = store.get("PBD", pbd, "SR")
        store.delete("PBD", pbd)
        if store.exists("SR", sr) and not store.get("SR", sr, "PBDs"):
            for vdi in list(store.get("SR", sr, "VDIs")):
                for vbd in list(store.get("VDI", vdi, "VBDs")):
                    store.delete("VBD", vbd)
                store.delete("VDI", vdi)
            store.delete("SR", sr)
    for vm in store.find("VM", is_control_domain=True, resident_on=host):
        _delete(store, "VM_metrics", store.get("VM", vm, "metrics"))
        store.delete("VM", vm)
    for cname in ("host_cpu", "Certificate"):
        for ref in store.find(cname, host=host):
            store.delete(cname, ref)
    _delete(store, "host_metrics", rec["metrics"])
    store.delete("host", host)


def _delete(store, cname, ref):
    if store.exists(cname, ref):
        store.delete(cname, ref)
