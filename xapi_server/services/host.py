"""Per-host runtimes: everything that acts on one host, reached through that host.

A `HostRuntime` groups what a host owns at run time: its hypervisor connection and
VM truth (`vms`, api/vm_sync.VmRuntime), its bridges and PIF/VIF refresh (`net`,
services/network/runtime.NetRuntime) and its storage attach state (`storage`: SR
locks, VDI activations, SR-full warnings). The Server keeps one per host in
`server.runtimes` and finds the right one from the object a call acts on (a VM from
the host it runs on, an SR from its PBD, a PIF from its host), so a pool can hold
several hosts. Today there is one: the local host's (`server.host_ref`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .storage.rawio import HostStorage
from .vm.consoles import ConsoleSessions

if TYPE_CHECKING:   # annotations only: the runtimes are built by the Server
    from ..api.vm_sync import VmRuntime
    from .network.runtime import NetRuntime

NULL = "OpaqueRef:NULL"


class HostRuntime:
    def __init__(self, host_ref: str, server):
        self.host_ref = host_ref
        self.storage = HostStorage(server)   # SR locks, VDI activations, raw views
        self.consoles = ConsoleSessions()   # open console connections (http/console.py)
        self.jobs: set = set()   # background work of the host's own (a delayed reboot)
        # Made by Server.startup: they need the running loop, libvirt or the kernel.
        self.vms: VmRuntime | None = None
        self.net: NetRuntime | None = None


def host_of_vm(store, vm_ref: str, default: str) -> str:
    """Where the VM runs; a VM that runs nowhere is acted on by the host that would
    start it (`default`: the local host while a pool has one host)."""
    host = store.get("VM", vm_ref, "resident_on")
    return default if host == NULL else host


def host_of_sr(store, sr_ref: str, runtimes: dict, default: str) -> str:
    """The host of the SR's PBD that this server runs, else `default`: an SR being
    created has no PBD yet, and a shared SR's PBD for this host is the one to use."""
    return _first_host(store, "SR", sr_ref, "PBDs", "PBD", runtimes, default)


def host_of_network(store, network_ref: str, runtimes: dict, default: str) -> str:
    """A network is on every host; the one this server acts on is the host of one of
    its PIFs here, else `default` (a network without PIFs: the internal one)."""
    return _first_host(store, "network", network_ref, "PIFs", "PIF", runtimes, default)


def _first_host(store, cname, ref, many, child, runtimes, default) -> str:
    rec = store.tables[cname].get(ref)
    for child_ref in rec[many] if rec else ():
        host = store.tables[child].get(child_ref, {}).get("host")
        if host in runtimes:
            return host
    return default
