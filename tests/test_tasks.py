"""Async calls of long operations: progress rises while the work runs, and a cancel
stops it cleanly (no half-made disk, no leftover file)."""
import os
import subprocess
import time

GIB = 1024 ** 3


def wait_status(x, task, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = x.task.get_record(task)
        if record["status"] not in ("pending", "cancelling"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"task still {record['status']}")


def filled_vdi(x, size_mib):
    """A VDI on the local file SR with real data in it, so that copying takes time."""
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(GIB), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "task-source"})
    pbd = x.SR.get_PBDs(sr)[0]
    root = x.PBD.get_device_config(pbd)["path"]
    path = os.path.join(root, x.VDI.get_location(vdi) + ".qcow2")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 7 0 {size_mib}M", path],
                   check=True, capture_output=True)
    return sr, root, vdi


def test_copy_progress_rises_and_finishes(xapi):
    sr, root, vdi = filled_vdi(xapi, 256)
    task = xapi.Async.VDI.copy(vdi, sr)
    seen = []
    while xapi.task.get_status(task) == "pending":
        seen.append(float(xapi.task.get_progress(task)))
        time.sleep(0.02)
    record = wait_status(xapi, task)
    assert record["status"] == "success", record["error_info"]
    copy = record["result"].removeprefix("<value>").removesuffix("</value>")
    assert xapi.VDI.get_virtual_size(copy) == str(GIB)
    assert seen == sorted(seen) and float(record["progress"]) == 1.0
    xapi.VDI.destroy(copy)
    xapi.VDI.destroy(vdi)


def test_cancel_leaves_nothing_behind(xapi):
    sr, root, vdi = filled_vdi(xapi, 900)
    before_vdis = set(xapi.SR.get_VDIs(sr))
    before_files = set(os.listdir(root))
    task = xapi.Async.VDI.copy(vdi, sr)
    deadline = time.monotonic() + 30
    while float(xapi.task.get_progress(task)) <= 0.0 and time.monotonic() < deadline:
        time.sleep(0.01)
    xapi.task.cancel(task)
    record = wait_status(xapi, task)
    if record["status"] == "success":  # the copy won the race: nothing to check
        return
    assert record["status"] == "cancelled"
    assert record["error_info"] == ["TASK_CANCELLED", task]
    assert set(xapi.SR.get_VDIs(sr)) == before_vdis
    assert set(os.listdir(root)) == before_files
    xapi.VDI.destroy(vdi)
