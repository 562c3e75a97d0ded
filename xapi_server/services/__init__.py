"""Services: the store-aware layer between the API and the drivers.

An API implementation calls a service; the service reads and writes XenAPI records
and drives the pure drivers in `backends/` (which never touch the store), turning
their typed errors into XenAPI errors. Layers: wire -> dispatch -> api -> services ->
backends / store.

  storage/   SRs and VDIs on their drivers (service), VDI operations (vdiops), VM disk
             copies (vmdisks), disks in guests (attach)
  network/   bridges and the refresh of PIF/VIF records (runtime), VIFs in guests (guest),
             client-chosen interface names (names)
  vm/        the domain XML built from a VM record (domxml), files QEMU's user must
             reach (reachable)
"""
