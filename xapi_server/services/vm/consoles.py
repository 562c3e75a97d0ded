"""A running VM's consoles: its `console` records, and who is connected (for
pool.limit_console_sessions).

As in xapi (the console update of xapi_xenops' VM event handler), console records exist
while the domain does: VmRuntime (api/vm_sync.py) calls `follow_power_state` whenever
it applies a domain's state, so a VM that starts (through the API, virsh, or found
running when the server starts) gets an `rfb` console, then a `vt100` one, and a VM that
stops loses them. Their location is `https://<host address>[:port]/console?uuid=<uuid>`,
the port only when it is not 443; a changed address or port is rewritten the next time
the VM's state is applied (every poll).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PROTOCOLS = ("rfb", "vt100")        # the order clients expect: XO Lite takes the first


def location(store, host_ref: str, port: int, console_uuid: str) -> str:
    address = store.get("host", host_ref, "address") if store.exists("host", host_ref) else ""
    if ":" in address:                       # IPv6 literal
        address = f"[{address}]"
    netloc = address if port == 443 else f"{address}:{port}"
    return f"https://{netloc}/console?uuid={console_uuid}"


def follow_power_state(server, vm_ref: str, live: bool) -> None:
    """Make the VM's console records match its domain: rfb and vt100 while it runs or is
    paused (with the current location), none otherwise."""
    store = server.store
    consoles = list(store.record("VM", vm_ref)["consoles"])
    if not live:
        for ref in consoles:
            store.delete("console", ref)
        return
    have = {store.get("console", ref, "protocol"): ref for ref in consoles}
    for protocol in PROTOCOLS:
        if protocol not in have:
            rec_uuid = str(uuid.uuid4())
            have[protocol] = store.create("console", {
                "uuid": rec_uuid, "protocol": protocol, "VM": vm_ref,
                "location": location(store, server.host_ref, server.settings.port,
                                     rec_uuid)})
    for ref in have.values():
        rec = store.record("console", ref)
        wanted = location(store, server.host_ref, server.settings.port, rec["uuid"])
        if rec["location"] != wanted:
            store.update("console", ref, location=wanted)


@dataclass
class ConsoleSessions:
    """Console connections open on this host, by VM ref: [(user name, session ref)].
    Kept even while the limit is off, so that turning it on counts the ones already
    open (as xapi's Connection_limit)."""
    active: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def try_add(self, vm_ref: str, user: str, session: str, limit: bool) -> bool:
        connections = self.active.setdefault(vm_ref, [])
        if limit and connections:
            return False
        connections.append((user, session))
        return True

    def drop(self, vm_ref: str, user: str, session: str) -> None:
        connections = self.active.get(vm_ref, [])
        if (user, session) in connections:
            connections.remove((user, session))
        if not connections:
            self.active.pop(vm_ref, None)

    def users(self, vm_ref: str) -> list[str]:
        return [user for user, _ in self.active.get(vm_ref, [])]
