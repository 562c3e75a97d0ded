"""`xe vm-export` and `xe vm-import` through the real xe client against the real server
(HttpGet / HttpPut orders of the thin-CLI protocol, the task the CLI waits on)."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ROOT_PASSWORD  # noqa: E402
from xva_server import destroy_vm, make_vm, network, sr, srv, x  # noqa: E402,F401

XE = os.path.join(os.path.dirname(sys.executable), "xe")
MiB = 1024 * 1024


def xe(srv, home, *argv):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"))
    return subprocess.run([XE, "-s", "127.0.0.1", "-p", str(srv.port), "-pw", ROOT_PASSWORD,
                           *argv], env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(home))


@pytest.fixture(scope="module")
def vm(x, sr, network):
    return make_vm(x, sr, network, "xe export", [(2 * MiB + 512, ["write -P 0x61 1M 4k"])])


@pytest.mark.parametrize("compress", ["false", "zstd", "true"])
def test_xe_vm_export_then_import(x, srv, sr, vm, tmp_path, compress):
    (tmp_path / "cfg").mkdir()
    target = tmp_path / "vm.xva"
    uuid = x.VM.get_uuid(vm)
    r = xe(srv, tmp_path, "vm-export", f"vm={uuid}", f"filename={target}",
           f"compress={compress}")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    magic = target.read_bytes()[:4]
    assert magic[:2] == {"false": b"ov", "zstd": b"\x28\xb5", "true": b"\x1f\x8b"}[compress]
    r = xe(srv, tmp_path, "vm-import", f"filename={target}", f"sr-uuid={x.SR.get_uuid(sr[0])}")
    assert r.returncode == 0, r.stderr
    new = x.VM.get_by_uuid(r.stdout.strip())
    assert x.VM.get_name_label(new) == "xe export"
    assert x.VM.get_other_config(new)["import_task"].startswith("OpaqueRef:")
    destroy_vm(x, new)
    # xe never overwrites a file; the VM is not left locked by the refused export
    r = xe(srv, tmp_path, "vm-export", f"vm={uuid}", f"filename={target}")
    assert r.returncode == 1
    assert x.VM.get_current_operations(vm) == {}


def test_xe_vm_import_of_garbage_says_why(x, srv, sr, tmp_path):
    (tmp_path / "cfg").mkdir()
    bad = tmp_path / "bad.xva"
    bad.write_bytes(b"\0" * 100 + b"not an xva" * 1000)
    before = len(x.VM.get_all())
    r = xe(srv, tmp_path, "vm-import", f"filename={bad}", f"sr-uuid={x.SR.get_uuid(sr[0])}")
    assert r.returncode == 1
    assert "IMPORT_ERROR" in r.stderr or "import" in r.stderr.lower(), r.stderr
    assert len(x.VM.get_all()) == before


def test_xe_metadata_export(x, srv, vm, tmp_path):
    (tmp_path / "cfg").mkdir()
    target = tmp_path / "meta.xva"
    r = xe(srv, tmp_path, "vm-export", f"vm={x.VM.get_uuid(vm)}", f"filename={target}",
           "metadata=true")
    assert r.returncode == 0, r.stderr
    data = target.read_bytes()
    assert data[:7] == b"ova.xml" and data[-1024:] == bytes(1024)
