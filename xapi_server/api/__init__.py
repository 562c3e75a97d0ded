"""Class-specific behaviour, one module per class or family.

Importing this package registers every implementation with the dispatcher.
"""
from . import certificate, event, host, message, ratelimit, rbac, session, task  # noqa: F401
from . import host_maintenance  # noqa: F401  (disable/enable, evacuate, reboot, logs)
from . import wlb  # noqa: F401  (workload balancing: xapi's answers without an appliance)
from . import metrics  # noqa: F401  (data sources of VM, host, SR)
from . import console, vm, vm_clone, vm_config, vm_memory  # noqa: F401
from . import vm_checkpoint, vm_misc, vdi_misc  # noqa: F401  (checkpoints, the rest)
from . import vm_platform, vm_recovery, vm_url_import  # noqa: F401  (device model, DR)
from . import pbd, sm, sr, vbd, vdi  # noqa: F401  (storage)
from . import network, pif, vif, vlan  # noqa: F401  (networking)
from . import management, pif_config, host_services  # noqa: F401  (host networking, name, log)
from . import blob, ha, licensing, sr_features  # noqa: F401  (issue 15: blobs, HA, licences)
from . import external_auth, host_admin, host_clock, host_info, host_plugins  # noqa: F401
from . import pool_admin, pool_trust, pool_updates  # noqa: F401  (pool-wide settings)
from . import pool_membership, pool_forward  # noqa: F401  (pool.join, eject, placement)
from . import pool_coordinator, pool_emergency  # noqa: F401  (changes of coordinator)
from . import pool_ha  # noqa: F401  (Pool HA: the coordinator follows Patroni's leader)
from . import pool_ha_recovery  # noqa: F401  (Pool HA: a dead host's VMs, where safe)
from . import vm_migrate  # noqa: F401  (VM.pool_migrate, migrate_send, host.migrate_receive)
from . import vm_migrate_cross  # noqa: F401  (VM.migrate_send, assert_can_migrate; other pools)
from . import vdi_migrate  # noqa: F401  (VDI.pool_migrate)
from . import storage_checks  # noqa: F401  (SR and VDI allowed_operations)
