"""The VMs of a dead pool host (README "Pool HA"): which may be started again on
another host, where, and what the administrator is told about the others.

Starting a VM elsewhere is safe only if its old QEMU cannot still be writing its disks:
a host that stopped answering may be cut off or hung, not dead. The fence here is
libvirt's lock manager: with `lock_manager = "lockd"` (or "sanlock") in qemu.conf each
QEMU runs only while its host's virtlockd holds a lease on each of its disks, kept in a
directory on the shared storage every host sees. While the old host's lease lives, a
start elsewhere is refused by libvirt itself; once the old host is really gone (its
virtlockd died with it) the lease is free. So a VM is restarted only when:

- the dead host ran its VMs under a lock manager (else its QEMU may hold nothing and
  still write: the VM is left for the administrator);
- the new host has one too (its lease protects against the old one coming back);
- the VM is protected (`ha_restart_priority` "restart" or "best-effort", as xapi's HA).

Each host states its lock manager (setting `vm_lock_manager`, matching its qemu.conf);
the coordinator keeps it in the host's `other_config:vm_lock_manager`, written from the
host's own heartbeat, so that a new coordinator after a failover knows it too.
A VM not restarted is set Halted, with the reason in `other_config:ha_recovery`, and a
HA_PROTECTED_VM_RESTART_FAILED message; never started by this code.
"""
from __future__ import annotations

LOCK_MANAGERS = ("lockd", "sanlock")
HOST_KEY = "vm_lock_manager"     # host.other_config: the lock manager the host reported
VM_KEY = "ha_recovery"           # VM.other_config: what became of it after its host died
PROTECTED = ("restart", "best-effort")
RESTART_FAILED = "HA_PROTECTED_VM_RESTART_FAILED"   # xapi's message name
RESTART_FAILED_PRIORITY = 2


def lock_manager(store, host: str) -> str:
    value = store.get("host", host, "other_config").get(HOST_KEY, "")
    return value if value in LOCK_MANAGERS else ""


def record_lock_manager(store, host: str, value: str):
    """What the host reported (its setting), kept in its record when it changed."""
    value = value if value in LOCK_MANAGERS else ""
    other = store.get("host", host, "other_config")
    if other.get(HOST_KEY, "") != value:
        changed = {k: v for k, v in other.items() if k != HOST_KEY}
        if value:
            changed[HOST_KEY] = value
        store.update("host", host, other_config=changed)


def guests_of(store, host: str) -> list[str]:
    """The VMs the pool database says run (or are paused) on the host."""
    return sorted(vm for vm in store.find("VM", resident_on=host)
                  if not store.get("VM", vm, "is_control_domain")
                  and store.get("VM", vm, "power_state") in ("Running", "Paused"))


def why_not_restarted(store, vm: str, dead: str) -> str:
    """"" when the VM may be restarted elsewhere, else the reason for the admin."""
    if store.get("VM", vm, "ha_restart_priority") not in PROTECTED:
        return "not protected (ha_restart_priority is neither restart nor best-effort)"
    if not lock_manager(store, dead):
        return ("its host ran it without a lock manager (no vm_lock_manager): its QEMU "
                "may still run there; check that host, then start it yourself")
    return ""


def fenced_targets(store, candidates: list[str]) -> list[str]:
    """The candidate hosts (live, enabled, in order of preference) that run VMs under
    a lock manager: only they may take a VM of a dead host."""
    return [h for h in candidates if lock_manager(store, h)]


def mark(store, vm: str, outcome: str):
    other = dict(store.get("VM", vm, "other_config"))
    other[VM_KEY] = outcome
    store.update("VM", vm, other_config=other)
