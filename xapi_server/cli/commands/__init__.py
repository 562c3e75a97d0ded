"""Hand-written CLI commands, one module per family; importing registers them."""
from . import console, event, help, host, network, storage, task, transfer, user, vm  # noqa: F401
from . import vmdevices  # noqa: F401
from . import snapshot  # noqa: F401  (snapshot-*, vm-checkpoint)
from . import metrics  # noqa: F401  (data sources of VM, host, SR)
from . import pool_features  # noqa: F401  (plugins, editions, HA, display ...)
from . import pool_members  # noqa: F401  (pool-join, pool-eject, host-forget)
from . import vm_migrate  # noqa: F401  (vm-migrate)
