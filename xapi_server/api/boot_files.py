"""Where direct-boot kernels and ramdisks may come from (VM.PV_kernel, VM.PV_ramdisk).

libvirt hands these files to QEMU's user (it chowns them for the guest's lifetime) and
QEMU reads them: a VM admin pointing PV_kernel at /etc/shadow would give the guest the
file. So, as xapi confines boot files to /var/lib/xcp/guest, a path must resolve
(symlinks and `..` followed) into one of the folders the admin allows: <data_dir>/boot,
/var/lib/xcp/guest and the `boot_dirs` setting. Checked when the field is set and again
at every start (a symlink may have been re-pointed since), with xapi's error:
INVALID_VALUE [kernel|ramdisk, path, reason].
"""
from __future__ import annotations

import os

from ..errors import ApiError

XAPI_GUEST_DIR = "/var/lib/xcp/guest"
FIELDS = {"PV_kernel": "kernel", "PV_ramdisk": "ramdisk"}


def allowed_dirs(settings) -> list[str]:
    extra = [d for d in settings.boot_dirs.split(":") if d.strip()]
    dirs = [os.path.join(os.path.abspath(settings.data_dir), "boot"), XAPI_GUEST_DIR, *extra]
    return [os.path.realpath(d) for d in dirs]


def resolve(settings, field: str, path: str, must_exist: bool) -> str:
    """The real path of `path` for VM.<field>; INVALID_VALUE unless it resolves into an
    allowed folder (and, with must_exist, is a regular file). "" stays "" (none)."""
    if not path:
        return ""
    name = FIELDS[field]
    if "\0" in path or not os.path.isabs(path):
        raise ApiError("INVALID_VALUE", name, path, "Is not an absolute path")
    real = os.path.realpath(path)
    dirs = allowed_dirs(settings)
    if not any(real.startswith(d.rstrip("/") + "/") for d in dirs):
        raise ApiError("INVALID_VALUE", name, path, "Is not in any of the allowed kernel "
                       f"directories: [{'; '.join(dirs)}]")
    if must_exist:
        if not os.path.exists(real):
            raise ApiError("INVALID_VALUE", name, path, "File does not exist")
        if not os.path.isfile(real):
            raise ApiError("INVALID_VALUE", name, path, "Is not a regular file")
    return real


def resolve_record(settings, rec: dict, must_exist: bool) -> dict:
    """{field: real path} for the VM record's boot files (what the domain XML names,
    so a symlink re-pointed after this check does not change what QEMU reads)."""
    return {f: resolve(settings, f, rec.get(f, ""), must_exist) for f in FIELDS}
