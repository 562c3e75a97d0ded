"""Which host of a pool owns an object, and which records travel with a call about it.

The datamodel says which parameter of a message names the object whose host runs it
(`msg(..., forward="vm")`); this module says, per class, how that host is found, as
xapi's message forwarding does: a running or paused VM is its `resident_on`'s (a VM
suspended by a member's hypervisor stays with that host, `scheduled_to_be_resident_on`,
since its memory is there); a VBD, VIF or console is its VM's; a VDI is its SR's; an SR plugged
on one host only (a local SR) is that host's; a PBD, a PIF and a host are their host's.
Anything else (a halted VM, a shared SR) has no owner: the coordinator runs the call.

A member keeps its own copy of the records it acts on; `scope` is what it needs to run
a call about an object, and what it sends back afterwards.
"""
from __future__ import annotations

from ..datamodel import NULL_REF

LIVE = ("Running", "Paused")


def owner(store, cname: str, ref: str) -> str | None:
    """The host that acts on the object, None when any host may (see the module doc)."""
    rec = store.tables[cname].get(ref) if cname in store.tables else None
    if rec is None:
        return None
    if cname == "host":
        return ref
    if cname == "VM":
        if rec["power_state"] in LIVE:
            host = rec["resident_on"]
        elif rec["power_state"] == "Suspended" and rec["suspend_VDI"] == NULL_REF:
            host = rec["scheduled_to_be_resident_on"]
        else:
            return None
        return host if host != NULL_REF else None
    if cname in ("VBD", "VIF", "console"):
        return owner(store, "VM", rec["VM"])
    if cname == "VDI":
        return owner(store, "SR", rec["SR"])
    if cname == "SR":
        hosts = {store.get("PBD", pbd, "host") for pbd in rec["PBDs"]}
        return hosts.pop() if len(hosts) == 1 else None
    if cname in ("PBD", "PIF"):
        return rec["host"]
    return None


def scope(store, cname: str, ref: str, into: dict | None = None) -> dict:
    """{class: set of refs}: the object and the records a host needs to act on it."""
    into = {} if into is None else into

    def add(c, r) -> dict | None:
        rec = store.tables[c].get(r)
        if rec is not None:
            into.setdefault(c, set()).add(r)
        return rec

    rec = add(cname, ref)
    if rec is None:
        return into
    if cname == "VM":
        add("VM_metrics", rec["metrics"])
        for vbd in rec["VBDs"]:
            vdi = add("VBD", vbd)["VDI"]
            if add("VDI", vdi) is not None:
                _sr(add, store.get("VDI", vdi, "SR"), with_vdis=False)
        for vif in rec["VIFs"]:
            add("network", add("VIF", vif)["network"])
        for console in rec["consoles"]:
            add("console", console)
    elif cname in ("VBD", "VIF", "console"):
        scope(store, "VM", rec["VM"], into)
    elif cname == "VDI":
        _sr(add, rec["SR"], with_vdis=False)
        for vbd in rec["VBDs"]:
            vm = add("VBD", vbd)["VM"]
            if add("VM", vm) is not None:
                add("VM_metrics", store.get("VM", vm, "metrics"))
    elif cname == "SR":
        _sr(add, ref, with_vdis=True)
    elif cname == "PBD":
        _sr(add, rec["SR"], with_vdis=False)
    elif cname == "host":
        add("host_metrics", rec["metrics"])
    elif cname == "PIF":
        add("PIF_metrics", rec["metrics"])
        add("network", rec["network"])
        scope(store, "host", rec["host"], into)
    return into


def _sr(add, sr: str, with_vdis: bool):
    rec = add("SR", sr)
    if rec is None:
        return
    for pbd in rec["PBDs"]:
        add("PBD", pbd)
    for vdi in rec["VDIs"] if with_vdis else ():
        add("VDI", vdi)


def owned_by(store, cname: str, ref: str, host: str) -> bool:
    """Is the object one `host` acts on (its runtime state is that host's to say)?"""
    if cname in ("host_metrics", "host_cpu", "PIF_metrics"):
        return True   # only ever sent along with their host or PIF
    return owner(store, cname, ref) == host
