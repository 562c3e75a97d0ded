"""The Server: one object holding the settings, the store and the services that API
implementations reach through `ctx.server`."""
from __future__ import annotations

import os

from . import api  # noqa: F401  (registers every implementation)
from . import bootstrap, messages
from .api import vm_sync
from .audit import Audit
from .auth import Auth
from .config import Settings, make_data_dir
from .dispatch import Dispatcher
from .events import Registrations
from .http.tls import TlsIdentity
from .ratelimit import RateLimiter
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
        self.pool_ref = self.host_ref = None

    async def startup(self):
        self.store.open()
        self.pool_ref, self.host_ref = bootstrap.start(self)
        await api.certificate.startup(self)  # Certificate record, daily expiry check
        self.limiter.start()
        messages.start(self.store, self.settings)   # message caps (xapi's message GC)
        await api.sm.storage_start(self)  # SM records, first start: Local storage SR
        await vm_sync.startup(self)   # hypervisor connection; VMs reconciled with it
        await api.network.startup(self)   # internal network, PIF scan, kernel refresh
        self.tasks.start_gc()
        await self.store.flush()

    async def shutdown(self):
        self.tasks.stop_gc()
        await api.certificate.shutdown(self)
        await api.network.shutdown(self)
        await vm_sync.shutdown(self)
        self.store.close()
