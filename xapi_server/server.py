"""The Server: one object holding the settings, the store and the services that API
implementations reach through `ctx.server`.

Every service is declared here, typed, and built here; nothing else attaches
attributes to the Server (tests/test_architecture.py checks it). Services that need
the running event loop or the hypervisor are None until `startup`. Runtime state
(locks, counters, caches of this server's objects) lives in objects the Server owns,
never in module globals, so two servers in one process (the fuzz test runs one
beside the test's own) never share any.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from . import api  # noqa: F401  (registers every implementation)
from . import bootstrap, messages
from .api.vm_sync import VmRuntime
from .audit import Audit
from .auth import Auth
from .cli.engine import Logins
from .config import Settings, make_data_dir
from .dispatch import Dispatcher
from .errors import ApiError
from .events import Registrations
from .http.tls import TlsIdentity
from .ratelimit import RateLimiter
from .services import host
from .services.host import HostRuntime
from .services.metrics import MetricsService
from .services.network import guest
from .services.network.runtime import NetRuntime
from .services.pool import role as pool_role
from .services.storage import attach
from .services.vm.composition import VmComposition
from .store import Store
from .tasks import Tasks


class Server:
    def __init__(self, settings: Settings):
        self.settings = settings
        make_data_dir(settings.data_dir)
        # Pools: this host's role, read at start (a change of role restarts the server);
        # it says where the records are (services/pool/role.py: database_location).
        # (Pool HA: a coordinator Patroni's leader left starts as a member: api/pool_ha.py)
        self.role = api.pool_ha.role_at_start(settings, pool_role.load(settings.data_dir))
        # DatabaseUnavailable: cannot start
        self.store = Store(pool_role.database_location(settings, self.role))
        self.auth = Auth(self.store, settings)   # passwords, failed-login throttle
        self.audit = Audit(settings)
        self.tasks = Tasks(self)
        self.registrations = Registrations(self.store)
        # Messages the datamodel forwards run on the pool member owning their object.
        self.dispatcher = Dispatcher(self, forward=api.pool_forward.forward_call)
        self.limiter = RateLimiter(self)
        self.tls = TlsIdentity(settings.cert_dir)   # certificate files, live TLS context
        self.cli_logins = Logins()       # xe's cached logins (cli/engine.py)
        # What storage and network add to a VM, in this order (services/vm/composition.py):
        # at boot the disks are made ready, then the VIFs' bridges; in the domain XML,
        # after the serial console (and graphics, video card and balloon of an emulated
        # machine), the disks and CD drives by userdevice,
        # then the VIFs by device (tests/test_vm_domxml_order.py).
        self.vm_parts = VmComposition(
            start_hooks=(api.vbd.disks_ready, api.vif.vifs_ready),
            devices=(attach.disk_devices, guest.interface_devices),
            disk_copier=api.vbd.copy_disks, provisioner=api.vbd.provision_disks)
        self.message_caps: messages.Retention | None = None   # from startup (store open)
        self.pool_ref: str | None = None
        self.host_ref: str | None = None
        # What acts on each host (hypervisor, bridges, storage attach), by host ref
        # (services/host.py); made by startup, one today: this host's.
        self.runtimes: dict[str, HostRuntime] = {}
        self.certificate_checker: asyncio.Task | None = None   # daily expiry check
        # Kept so the task is not garbage-collected while it runs.
        self.storage_watcher: asyncio.Task | None = None       # disks follow power state
        self.storage_operations: asyncio.Task | None = None    # SR/VDI allowed_operations
        self.metrics: MetricsService | None = None   # samples and archives (from startup)
        # Pools (api/pool_membership.py): the coordinator's last heartbeat from each
        # member (time.monotonic); the heartbeat task (a member's sender, the
        # coordinator's liveness watch); and whether main() starts the server again
        # once stopped.
        self.heard_from: dict[str, float] = {}
        self.vms_missing: dict[str, set] = {}   # a member's VMs its last report lacked
        self.pool_heartbeats: asyncio.Task | None = None
        self.pool_ha: asyncio.Task | None = None   # follows Patroni's leader (api/pool_ha.py)
        # the coordinator restarts a dead host's VMs where safe (api/pool_ha_recovery.py)
        self.ha_recovery: asyncio.Task | None = None
        # the coordinator's periodic copies of the pool database to the members
        self.pool_db_copies: asyncio.Task | None = None
        self.restart_after_stop = False
        # ... in this interpreter, its modules already imported (a take-over, where
        # every second counts: main()), instead of a fresh process image
        self.restart_in_process = False
        self.stop_serving = None   # set by main(): stop as a clean shutdown does
        self.remove_after_stop: list[str] = []

    async def startup(self):
        loop = asyncio.get_running_loop()
        self.store.open()
        api.pool_coordinator.adopt_pool(self)   # a coordinator that took the pool over
        self.pool_ref, self.host_ref = bootstrap.start(self)
        local = self.runtimes[self.host_ref] = HostRuntime(self.host_ref, self)
        await api.certificate.startup(self)  # Certificate record, expiry check now
        self.certificate_checker = loop.create_task(api.certificate.daily(self))
        self.limiter.start()
        self.message_caps = messages.caps(self.store, self.settings)   # xapi's message GC
        api.sm.sync_sm_records(self.store)
        self.storage_watcher = loop.create_task(attach.watch_power_states(self))
        await api.sm.storage_start(self)  # first start: Local storage SR
        self.storage_operations = loop.create_task(api.storage_checks.keep_current(self))
        local.vms = VmRuntime(self)
        await local.vms.startup()   # hypervisor connection; VMs reconciled with it
        local.net = NetRuntime(self)
        await api.network.startup(self)   # internal network, PIF scan, kernel refresh
        self.metrics = MetricsService(self)   # needs the hypervisor: after the VMs
        await self.metrics.start()
        self.pool_heartbeats = loop.create_task(
            api.pool_membership.send_heartbeats(self) if self.role.is_member
            else api.pool_membership.watch_liveness(self))
        if not self.role.is_member:
            self.pool_db_copies = loop.create_task(
                api.pool_emergency.push_copies_periodically(self))
        if self.settings.patroni_url:
            self.pool_ha = loop.create_task(api.pool_ha.follow_patroni(self))
        if not self.role.is_member and api.pool_ha_recovery.enabled(self.settings):
            self.ha_recovery = loop.create_task(api.pool_ha_recovery.watch_dead_hosts(self))
        self.tasks.start_gc()
        await self.store.flush()

    async def shutdown(self):
        self.tasks.stop_gc()
        for task in (self.certificate_checker, self.storage_watcher,
                     self.storage_operations, self.pool_heartbeats, self.pool_ha,
                     self.pool_db_copies, self.ha_recovery):
            if task is not None:
                task.cancel()
        if self.metrics is not None:
            await self.metrics.stop()
        for runtime in self.runtimes.values():
            if runtime.net is not None:
                await runtime.net.stop()
            if runtime.vms is not None:
                await runtime.vms.shutdown()
        self.store.close()
        if self.restart_in_process:
            # Calls still blocked in a worker thread (on a host cut off: until their
            # timeout) end on their own, unheard: the event loop would wait for them
            # before it closes, while the pool has no coordinator.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())

    # -- per-host runtimes: what acts on a host is reached through that host --------------

    def runtime(self, host_ref: str) -> HostRuntime:
        return self.runtimes[host_ref]

    def runtime_of_vm(self, vm_ref: str) -> HostRuntime:
        """The host the VM runs on, else the one that would start it (this host). A VM
        running on a pool member is acted on only by the calls forwarded to it
        (api/pool_forward.py); any other is refused rather than run here."""
        return self._here(host.host_of_vm(self.store, vm_ref, self.host_ref), "VM")

    def runtime_of_sr(self, sr_ref: str) -> HostRuntime:
        """An SR plugged only on pool members is theirs: refused (see _here)."""
        rec = self.store.tables["SR"].get(sr_ref)
        plugged = {self.store.get("PBD", p, "host") for p in rec["PBDs"]} if rec else set()
        if plugged and not plugged & self.runtimes.keys():
            self._here(min(plugged), "SR")
        return self.runtimes[host.host_of_sr(self.store, sr_ref, self.runtimes,
                                             self.host_ref)]

    def runtime_of_network(self, network_ref: str) -> HostRuntime:
        return self.runtimes[host.host_of_network(self.store, network_ref, self.runtimes,
                                                  self.host_ref)]

    def runtime_of_pif(self, pif_ref: str) -> HostRuntime:
        return self._here(self.store.get("PIF", pif_ref, "host"), "PIF")

    def _here(self, owner: str, what: str) -> HostRuntime:
        """The runtime of `owner` if this server acts on that host. A pool member's
        objects are acted on only by the calls forwarded to it (api/pool_forward.py);
        any other call is refused rather than run on this host's machine."""
        if owner not in self.runtimes:
            uuid = self.store.get("host", owner, "uuid") if self.store.exists("host", owner) \
                else owner
            raise ApiError("OPERATION_NOT_ALLOWED", f"the {what} is on pool member {uuid} "
                           "and this call is not forwarded to members yet")
        return self.runtimes[owner]

    # -- a change of pool role takes effect at the next start (services/pool/role.py) --

    def serve_until(self, stop_serving):
        """main(): how to stop serving, as a clean shutdown does."""
        self.stop_serving = stop_serving

    def take_role(self, role: pool_role.PoolRole):
        """A new pool role in effect at once for the calls that come in (a coordinator
        handing the pool over answers HOST_IS_SLAVE from then on); the role file makes
        it last (api/pool_coordinator.py)."""
        self.role = role

    def restart_soon(self, delay: float = 0.5, in_process: bool = False):
        """Stop as on SIGTERM once the current reply is out; main() then starts the
        server again in this process (same pid, same arguments): a fresh process image,
        or, `in_process`, a new Server in this interpreter (no start-up, no imports:
        seconds on a loaded host)."""
        self.restart_after_stop = True
        self.restart_in_process = in_process
        if self.stop_serving is not None:
            asyncio.get_running_loop().call_later(delay, self.stop_serving)

    def restart_then_remove(self, *paths: str):
        """restart_soon, with these files (the local database) removed in between."""
        self.remove_after_stop.extend(paths)
        self.restart_soon()
