"""Truth with the hypervisor: the store holds VM configuration, libvirt the runtime.

`VmRuntime` (a host's `HostRuntime.vms`) owns the hypervisor connection and keeps power_state,
domid, resident_on and VM_metrics equal to what the hypervisor reports:
- at startup, every VM is reconciled with the domain list (after a restart the
  records match libvirt, whatever happened while we were down);
- each libvirt lifecycle event re-reads that domain's state (virsh start/destroy,
  a guest powering itself off show up within milliseconds);
- after the connection to the hypervisor was lost and made again (libvirtd
  restarted), everything is re-read: events were missed meanwhile;
- every POLL_INTERVAL a re-read catches anything an event could have missed and
  refreshes the metrics and the host's memory figures. It reads the domains libvirt
  lists and the VMs our records place on a domain (live, suspended, resident here):
  its cost follows what runs, not the number of VM records (a halted VM or a template
  costs nothing per poll, so 10,000 of them do not tax every VM.clone).

Reads race: a state read before a change could be applied after a later one. Each
read takes a ticket before it starts and a record is only overwritten by a read with
a newer ticket, so the last word is always from the most recent observation.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from .. import hostinfo
from ..backends.hypervisor import HALTED, DomainState, open_hypervisor
from ..datamodel import NULL_REF
from ..errors import ApiError
from ..messages import PRIORITY_INFO, PRIORITY_WARNING, raise_message
from ..services.vm import consoles
from .vm_checks import update_allowed_operations

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0          # seconds between full re-reads (events do the fast path)
RESYNC_SLICE = 64            # VMs compared between two turns of the event loop
# xapi's message names for the state a VM reached.
_OUTSIDE_MESSAGES = {"Running": "VM_STARTED", "Halted": "VM_SHUTDOWN",
                     "Suspended": "VM_SUSPENDED", "Paused": "VM_PAUSED"}
_METRIC_STATE = {"Running": ["running"], "Paused": ["paused"], "Suspended": ["suspended"],
                 "Halted": ["halted"]}


def now():
    return datetime.now(timezone.utc)


def tracked(rec: dict) -> bool:
    """VMs that can have a domain: not templates, snapshots or the control domain."""
    return not (rec["is_a_template"] or rec["is_a_snapshot"] or rec["is_control_domain"])


class VmRuntime:
    def __init__(self, server):
        self.server = server
        self.hv = open_hypervisor(server.settings)
        self.boot_records: dict[str, dict] = {}   # VM ref -> record as it booted
        self.reboots: dict[str, int] = {}          # uuid -> guest resets seen
        self._ticket = 0
        self._applied: dict[str, int] = {}         # uuid -> ticket of the last applied read
        self._dirty: set[str] = set()
        self._refreshing: set[str] = set()
        self._changed = asyncio.Condition()
        self._poller: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False  # after the first resync, changes are news for the admin
        self._held: set[str] = set()   # uuids whose domain is being replaced (below)

    @property
    def store(self):
        return self.server.store

    # -- life cycle ---------------------------------------------------------------------

    async def startup(self):
        self._loop = asyncio.get_running_loop()
        self.hv.set_event_handler(self._from_event_thread)
        self._forget_operations()
        try:
            await self.hv.open()
            await self.resync()
        except Exception as exc:
            # The API stays up without a hypervisor; the connection keeps trying and
            # re-reads everything once it is back.
            log.warning("hypervisor %s not available: %s",
                        self.server.settings.libvirt_uri, exc)
        self._poller = self._loop.create_task(self._poll())
        self._started = True

    def _forget_operations(self):
        """Operations of a previous run died with it (its tasks did too: they live in
        memory). Left in current_operations they would block every later call on
        the VM with OTHER_OPERATION_IN_PROGRESS; xapi clears them at start as well."""
        for ref, rec in list(self.store.tables["VM"].items()):
            if rec["current_operations"]:
                self.store.update("VM", ref, current_operations={})
                update_allowed_operations(self.store, ref)

    async def shutdown(self):
        if self._poller:
            self._poller.cancel()
        try:
            await self.hv.close()
        except Exception:
            log.exception("closing the hypervisor connection")

    # -- events -------------------------------------------------------------------------

    def _from_event_thread(self, uuid: str, kind: str):
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event, uuid, kind)

    def _event(self, uuid: str, kind: str):
        if uuid == "*":   # reconnected: anything may have changed
            self._loop.create_task(self._guarded(self.resync()))
            return
        if kind == "reboot":
            self.reboots[uuid] = self.reboots.get(uuid, 0) + 1
        self._dirty.add(uuid)
        if uuid not in self._refreshing:
            self._loop.create_task(self._guarded(self._refresh_loop(uuid)))

    async def _refresh_loop(self, uuid: str):
        """Coalesce a burst of events for one domain into as few reads as needed."""
        self._refreshing.add(uuid)
        try:
            while uuid in self._dirty:
                self._dirty.discard(uuid)
                await self.refresh_uuid(uuid)
        finally:
            self._refreshing.discard(uuid)

    @staticmethod
    async def _guarded(coro):
        try:
            await coro
        except Exception:
            log.exception("hypervisor sync failed")

    # -- reading the hypervisor ---------------------------------------------------------

    def _take_ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    async def refresh(self, vm_ref: str):
        """Re-read one VM's domain now (operations end with this)."""
        await self.refresh_uuid(self.store.record("VM", vm_ref)["uuid"])

    async def refresh_uuid(self, uuid: str):
        ticket = self._take_ticket()
        state = await self.hv.state(uuid)
        self._apply_uuid(uuid, state, ticket)
        await self._settled()

    async def resync(self, every_vm: bool = True):
        """Make the records match libvirt's domain list: every VM record (at start, after
        a reconnection), or (the poll) only those that can differ from it."""
        ticket = self._take_ticket()
        domains = await self.hv.list()
        here = (NULL_REF, self.server.host_ref)   # a pool member's VMs are its own
        refs = list(self.store.tables["VM"]) if every_vm else self._maybe_out_of_date(domains)
        for n, ref in enumerate(refs):
            if n % RESYNC_SLICE == RESYNC_SLICE - 1:
                # Thousands of VMs: let other callers in between (the ticket keeps an
                # event read meanwhile from being undone by this older list).
                await asyncio.sleep(0)
            rec = self.store.tables["VM"].get(ref)
            if rec is not None and tracked(rec) and (rec["resident_on"] in here
                                                     or rec["uuid"] in domains):
                self._apply(ref, domains.get(rec["uuid"], HALTED), ticket)
        self._refresh_host_metrics()
        await self._settled()

    def _maybe_out_of_date(self, domains: dict) -> list[str]:
        """The VMs a poll must compare: those with a domain, and those our records say
        have one or had one (Running, Paused, Suspended, or resident on this host),
        found in the store's indexes. Any other VM is Halted with no domain, which is
        what its record already says (the start-up resync made sure of it; a change
        since came with an event)."""
        store, refs = self.store, {}
        if self.server.host_ref:
            refs.update(dict.fromkeys(store.find("VM", resident_on=self.server.host_ref)))
        for state in ("Running", "Paused", "Suspended"):
            refs.update(dict.fromkeys(store.find("VM", power_state=state)))
        for uuid in domains:
            try:
                refs[store.by_uuid("VM", uuid)] = None
            except ApiError:
                pass   # one of our domains without a VM record (being destroyed)
        return list(refs)

    async def _settled(self):
        await self.store.flush()
        async with self._changed:
            self._changed.notify_all()

    async def _poll(self):
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                await self.resync(every_vm=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hypervisor poll failed: %s", exc)

    # -- writing the records ------------------------------------------------------------

    def _apply_uuid(self, uuid, state, ticket):
        try:
            ref = self.store.by_uuid("VM", uuid)
        except Exception:
            return  # one of our domains without a VM record (e.g. destroyed meanwhile)
        if tracked(self.store.record("VM", ref)):
            self._apply(ref, state, ticket)

    @asynccontextmanager
    async def held(self, uuid: str):
        """While the domain is saved and restored into a new QEMU process
        (VM.restart_device_models) its stop in between is no state of the VM: reads
        are ignored, the domain is read again after."""
        self._held.add(uuid)
        try:
            yield
        finally:
            self._held.discard(uuid)
            self._applied[uuid] = self._ticket   # reads begun while held are stale
            await self.refresh_uuid(uuid)

    def _apply(self, ref: str, state: DomainState, ticket: int):
        rec = self.store.record("VM", ref)
        uuid = rec["uuid"]
        if uuid in self._held:
            return
        if ticket < self._applied.get(uuid, 0):
            return  # an older observation than one already applied
        if state.power_state == "Halted" and rec["resident_on"] not in (
                NULL_REF, self.server.host_ref) and self.store.exists("host", rec["resident_on"]):
            return  # it runs on another host of the pool (migrated): no domain here is news
        self._applied[uuid] = ticket
        if state.power_state == "Halted" and rec["power_state"] == "Suspended" \
                and rec["suspend_VDI"] != NULL_REF:
            state = DomainState("Suspended")   # its memory image is in a VDI (vm_image.py)
        live = state.power_state in ("Running", "Paused")
        changes = {"power_state": state.power_state, "domid": state.domid,
                   "resident_on": self.server.host_ref if live else NULL_REF}
        changes = {k: v for k, v in changes.items() if rec[k] != v}
        if "power_state" in changes and self._started:
            self._tell_admin(rec, state)
        if changes:
            self.store.update("VM", ref, **changes)
        self._update_metrics(ref, rec, state)
        consoles.follow_power_state(self.server, ref, live)   # records while it runs
        if changes:
            update_allowed_operations(self.store, ref)
            if not live:
                self.boot_records.pop(ref, None)

    def _tell_admin(self, rec: dict, state: DomainState):
        """A message when a VM crashed, or its power state changed with no API call
        on it in flight (virsh, the guest powering itself off ...)."""
        if state.crashed:
            name, body = "VM_CRASHED", f"VM {rec['name_label']!r} crashed"
        elif not rec["current_operations"]:
            name = _OUTSIDE_MESSAGES[state.power_state]
            body = (f"VM {rec['name_label']!r} went from {rec['power_state']} to "
                    f"{state.power_state} outside the API")
        else:
            return
        raise_message(self.server, name, PRIORITY_WARNING if state.crashed else PRIORITY_INFO,
                      "VM", rec["uuid"], body)

    def _update_metrics(self, ref, before: dict, state: DomainState):
        metrics = ensure_metrics(self.store, ref)
        m = self.store.record("VM_metrics", metrics)
        live = state.power_state in ("Running", "Paused")
        fields = {"state": _METRIC_STATE[state.power_state],
                  "memory_actual": state.memory_bytes if live else 0,
                  "VCPUs_number": state.vcpus if live else 0, "hvm": live,
                  "current_domain_type": "hvm" if live else "unspecified"}
        was_live = before["power_state"] in ("Running", "Paused")
        if live and not was_live and before["power_state"] != "Suspended":
            fields["start_time"] = now()
        fields = {k: v for k, v in fields.items() if m[k] != v}
        if fields:
            fields["last_updated"] = now()
            self.store.update("VM_metrics", metrics, **fields)

    def _refresh_host_metrics(self):
        host = self.server.host_ref
        if not host or not self.store.exists("host", host):
            return
        metrics = self.store.record("host", host)["metrics"]
        if not self.store.exists("host_metrics", metrics):
            return
        mem = hostinfo.meminfo()
        self.store.update("host_metrics", metrics, memory_total=mem.get("MemTotal", 0),
                          memory_free=mem.get("MemAvailable", mem.get("MemFree", 0)),
                          live=True, last_updated=now())

    # -- waiting --------------------------------------------------------------------------

    async def wait_until(self, predicate, timeout: float, vm_ref: str | None = None,
                         progress=None) -> bool:
        """Wait until predicate() holds, re-reading vm_ref every second in case an
        event is lost; progress(fraction_of_timeout) is called while waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            if progress:
                progress(1 - left / timeout)
            try:
                async with self._changed:
                    await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                if vm_ref is not None and self.store.exists("VM", vm_ref):
                    await self.refresh(vm_ref)
        return True


def ensure_metrics(store, vm_ref: str) -> str:
    """The VM's VM_metrics object, created when missing (clones, old records)."""
    metrics = store.record("VM", vm_ref)["metrics"]
    if metrics != NULL_REF and store.exists("VM_metrics", metrics):
        return metrics
    metrics = store.create("VM_metrics", {"install_time": now(), "last_updated": now(),
                                          "state": ["halted"]})
    store.update("VM", vm_ref, metrics=metrics)
    return metrics

