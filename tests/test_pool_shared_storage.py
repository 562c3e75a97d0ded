"""The `nfs` SR type (backends/storage/nfs.py): xapi's device_config (server,
serverpath, nfsversion, options) and its numbered failures.

What this cannot cover here: the development machines' kernel has no NFS client (no
`nfs` in /proc/filesystems, no mount.nfs), so no export can be mounted and an SR on
one is never created or plugged in these tests; the mount, the SR directory on the
export and the unmount are written for real hosts. A shared `file` SR on a directory
every host mounts, with a PBD per host, and live migration over it are tested in
tests/test_pool_migrate.py."""
import pytest

from inprocess import xapi_in_process  # noqa: F401 (xapi: the server in this process)
from sdk_failures import failure


def _no_kernel_nfs() -> bool:
    with open("/proc/filesystems") as f:
        return "nfs" not in f.read().split()


def _create(x, config):
    host = x.host.get_all()[0]
    return failure(x.SR.create, host, config, "0", "nfs", "", "nfs", "user", True, {})


def test_nfs_is_a_supported_type(xapi):
    assert "nfs" in xapi.SR.get_supported_types()


def test_missing_server_or_path(xapi):
    assert _create(xapi, {"serverpath": "/export"})[:3] == \
        ["SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter"]
    assert _create(xapi, {"server": "10.0.0.9"})[:3] == \
        ["SR_BACKEND_FAILURE_101", "", "The request is missing the serverpath parameter"]
    assert _create(xapi, {"server": "10.0.0.9", "serverpath": "/x", "nfsversion": "2"})[:2] \
        == ["SR_BACKEND_FAILURE", "EINVAL"]
    assert _create(xapi, {"server": "-o exec", "serverpath": "/x"})[:2] == \
        ["SR_BACKEND_FAILURE", "EINVAL"]   # no option smuggled into mount's arguments


@pytest.mark.skipif(not _no_kernel_nfs(), reason="this kernel has an NFS client: the "
                    "refusal below is what a kernel without one answers")
def test_mount_fails_without_kernel_nfs(xapi):
    """No NFS client in this kernel: the mount fails, xapi's NFSMount error (73), and
    nothing is left (no SR record, no mount point)."""
    before = set(xapi.SR.get_all())
    error = _create(xapi, {"server": "127.0.0.1", "serverpath": "/export"})
    assert error[:3] == ["SR_BACKEND_FAILURE_73", "", "NFS mount error"]
    assert set(xapi.SR.get_all()) == before
    host = xapi.host.get_all()[0]
    assert failure(xapi.SR.probe, host, {"server": "127.0.0.1", "serverpath": "/export"},
                   "nfs", {})[0] == "SR_BACKEND_FAILURE_73"
