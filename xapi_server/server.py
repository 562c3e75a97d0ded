"""The Server: one object holding the settings, the store and the services that API
implementations reach through `ctx.server`."""
from __future__ import annotations

import os

from . import api  # noqa: F401  (registers every implementation)
from . import bootstrap
from .api import vm_sync
from .auth import Auth
from .config import Settings
from .dispatch import Dispatcher
from .store import Store
from .tasks import Tasks


class Server:
    def __init__(self, settings: Settings):
        self.settings = settings
        os.makedirs(settings.data_dir, mode=0o700, exist_ok=True)
        self.store = Store(settings.db_path)
        self.auth = Auth(self.store)
        self.tasks = Tasks(self)
        self.dispatcher = Dispatcher(self)
        self.pool_ref = self.host_ref = None

    async def startup(self):
        self.store.open()
        self.pool_ref, self.host_ref = bootstrap.start(self)
        await vm_sync.startup(self)   # hypervisor connection; VMs reconciled with it
        await api.network.startup(self)   # internal network, PIF scan, kernel refresh
        await api.sm.storage_start(self)  # SM records, first start: Local storage SR
        await self.store.flush()

    async def shutdown(self):
        await api.network.shutdown(self)
        await vm_sync.shutdown(self)
        self.store.close()
