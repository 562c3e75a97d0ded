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

from . import api  # noqa: F401  (registers every implementation)
from . import bootstrap, messages
from .api.vm_sync import VmRuntime
from .audit import Audit
from .auth import Auth
from .cli.engine import Logins
from .config import Settings, make_data_dir
from .dispatch import Dispatcher
from .events import Registrations
from .http.tls import TlsIdentity
from .ratelimit import RateLimiter
from .services.network.runtime import NetRuntime
from .services.storage import attach
from .services.storage.service import StorageState
from .store import Store
from .tasks import Tasks


class Server:
    def __init__(self, settings: Settings):
        self.settings = settings
        make_data_dir(settings.data_dir)
        self.store = Store(settings.db_path)
        self.auth = Auth(self.store, settings)   # passwords, failed-login throttle
        self.audit = Audit(settings)
        self.tasks = Tasks(self)
        self.registrations = Registrations(self.store)
        self.dispatcher = Dispatcher(self)
        self.limiter = RateLimiter(self)
        self.tls = TlsIdentity(settings.cert_dir)   # certificate files, live TLS context
        self.storage = StorageState()    # per-SR locks, VDI activations, SR-full warnings
        self.cli_logins = Logins()       # xe's cached logins (cli/engine.py)
        self.message_caps: messages.Retention | None = None   # from startup (store open)
        self.pool_ref: str | None = None
        self.host_ref: str | None = None
        # Made by startup: they need the running loop, libvirt or the kernel.
        self.vms: VmRuntime | None = None        # hypervisor connection, VM truth
        self.net: NetRuntime | None = None       # bridges, PIF/VIF refresh
        self.certificate_checker: asyncio.Task | None = None   # daily expiry check
        # Kept so the task is not garbage-collected while it runs.
        self.storage_watcher: asyncio.Task | None = None       # disks follow power state

    async def startup(self):
        loop = asyncio.get_running_loop()
        self.store.open()
        self.pool_ref, self.host_ref = bootstrap.start(self)
        await api.certificate.startup(self)  # Certificate record, expiry check now
        self.certificate_checker = loop.create_task(api.certificate.daily(self))
        self.limiter.start()
        self.message_caps = messages.caps(self.store, self.settings)   # xapi's message GC
        api.sm.sync_sm_records(self.store)
        self.storage_watcher = loop.create_task(attach.watch_power_states(self))
        await api.sm.storage_start(self)  # first start: Local storage SR
        self.vms = VmRuntime(self)
        await self.vms.startup()   # hypervisor connection; VMs reconciled with it
        self.net = NetRuntime(self)
        await api.network.startup(self)   # internal network, PIF scan, kernel refresh
        self.tasks.start_gc()
        await self.store.flush()

    async def shutdown(self):
        self.tasks.stop_gc()
        for task in (self.certificate_checker, self.storage_watcher):
            if task is not None:
                task.cancel()
        if self.net is not None:
            await self.net.stop()
        if self.vms is not None:
            await self.vms.shutdown()
        self.store.close()
