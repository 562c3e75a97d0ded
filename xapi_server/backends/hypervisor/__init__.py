"""Hypervisor drivers: the contract they fulfil (contract.py) and the factory that opens
one. Drivers import the contract module, never this package, so the factory can import
them without an import cycle."""
from __future__ import annotations

from .contract import (CPU_PERIOD_US, HALTED, IOTUNE_NAMES, METADATA_NS, METADATA_PREFIX,
                       Capabilities, ConsoleStream, DomainState, EventHandler, Hypervisor,
                       HypervisorError, MigrationAborted, MigrationPlan)

__all__ = ["CPU_PERIOD_US", "HALTED", "IOTUNE_NAMES", "METADATA_NS", "METADATA_PREFIX",
           "Capabilities", "ConsoleStream", "DomainState", "EventHandler", "Hypervisor",
           "HypervisorError", "MigrationAborted", "MigrationPlan", "open_hypervisor"]


def open_hypervisor(settings) -> Hypervisor:
    """The backend for settings.libvirt_uri (libvirt is the only one so far)."""
    from .libvirt_hv import LibvirtHypervisor   # libvirt's bindings load only when needed
    return LibvirtHypervisor(settings)
