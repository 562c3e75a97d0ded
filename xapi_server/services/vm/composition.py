"""What storage and network add to a VM, in one explicit order (issue 13 item 4).

The Server builds one VmComposition (server.py) and the VM code runs its parts in the
order they are given there, so the domain XML and the work done before a boot never
depend on which module happened to be imported first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from .domxml import DeviceContributor

# async fn(ctx, vm): before the domain is defined at boot (activate volumes, make
# bridges ...); it may raise ApiError to refuse the start.
StartHook = Callable[..., Awaitable[None]]
# async fn(ctx, mode, src_vm, new_vm, sr), mode "clone" | "copy" | "snapshot" |
# "revert": the source's disks duplicated (or restored) onto the new VM record.
DiskCopier = Callable[..., Awaitable[None]]
# async fn(ctx, vm, disks, default_sr): the disks a template's other_config:disks asks for.
Provisioner = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class VmComposition:
    start_hooks: tuple[StartHook, ...] = ()
    devices: tuple[DeviceContributor, ...] = ()   # each adds elements to <devices>
    disk_copier: DiskCopier | None = None         # None: VMs are copied without disks
    provisioner: Provisioner | None = None        # None: templates asking for disks fail
