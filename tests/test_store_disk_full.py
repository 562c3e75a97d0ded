"""Data dir full (issue 8): calls fail with a clear error, nothing is corrupted, the
service resumes when space returns.

The real server runs with its data dir (database, audit log, its own log, the local
file SR) on a 16 MiB tmpfs; a filler file takes every free byte. The database keeps
accepting small writes for a while after that (SQLite reuses the space of its
write-ahead log), so the test writes until the first refusal, and from then on checks
what every kind of call does, then frees the space, then SIGKILLs the server and
reads the database back.
"""
import concurrent.futures
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time

import pytest
import XenAPI

from serverproc import ServerProcess

FULL = ["INTERNAL_ERROR", "database write failed: no space left on device"]
BALLAST = "b" * 65536      # per probing write: the database needs new space quickly
MAX_PROBES = 400           # 25 MiB of ballast: more than the 16 MiB filesystem holds
CALL_LIMIT = 30.0          # seconds: a refused call must answer, not hang


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def fill(mnt) -> str:
    """Take every free byte of the filesystem; return the filler's path."""
    path = os.path.join(mnt, "filler")
    with open(path, "ab", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    assert os.statvfs(mnt).f_bavail == 0
    return path


def refused(call, *args):
    """The XenAPI error details of a call that must fail (quickly)."""
    started = time.monotonic()
    with pytest.raises(XenAPI.Failure) as failure:
        call(*args)
    assert time.monotonic() - started < CALL_LIMIT
    return failure.value.details


def outcome(call, *args):
    """What a call returned, or the details of its XenAPI error."""
    try:
        return call(*args)
    except XenAPI.Failure as e:
        return e.details


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


@contextlib.contextmanager
def writer_held(db_path):
    """Hold SQLite's write lock, so the server's writer waits (its busy timeout is 5 s)
    and the changes it was given stay in memory only, for as long as this lasts."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def write_until_refused(write):
    """Call write(i) until the disk refuses one; return how many were acknowledged."""
    for i in range(MAX_PROBES):
        try:
            write(i)
        except XenAPI.Failure as e:
            assert e.details == FULL
            return i
    pytest.fail(f"{MAX_PROBES} writes on a full disk and none refused")


def test_data_dir_full(small_fs, tmp_path):
    data = str(small_fs / "data")
    db_path = os.path.join(data, "xapi.db")
    proc = ServerProcess(data).start()   # its own log is in the data dir too
    try:
        x = proc.session().xenapi
        pool = x.pool.get_all()[0]
        host = x.pool.get_master(pool)
        local_sr = x.pool.get_default_SR(pool)
        local_dir = os.path.join(data, "sr", "local")
        assert os.path.isdir(local_dir)   # the local SR lives in the data dir
        roomy_dir = str(tmp_path / "roomy-sr")   # an SR on a disk with space
        roomy_sr = x.SR.create(host, {"path": roomy_dir}, 0, "roomy", "", "file", "user",
                               False, {})
        x.pool.set_name_label(pool, "before-full")
        victim = x.network.create({"name_label": "victim", "other_config": {},
                                   "name_description": "original"})
        acknowledged = {}   # network ref -> its name_description

        filler = fill(small_fs)

        def big_write(i):
            net = x.network.create({"name_label": f"probe{i}", "other_config": {},
                                    "name_description": f"{i}{BALLAST}"})
            acknowledged[net] = f"{i}{BALLAST}"
        write_until_refused(big_write)

        # A big change the disk refuses, and a small one made on top of it that would
        # fit: both are refused, memory and disk keep neither, and a client waiting
        # in event.from meanwhile hears only of the victim as it was.
        sessions = [proc.session().xenapi for _ in range(3)]
        token = event_from(x, ["network"], "", 0)["token"]
        with concurrent.futures.ThreadPoolExecutor(3) as pool_of_clients:
            with writer_held(db_path):
                watch = pool_of_clients.submit(event_from, sessions[0], ["network"], token,
                                               20.0)
                time.sleep(0.3)
                grow = pool_of_clients.submit(outcome, sessions[1].network.set_name_description,
                                              victim, 2 * BALLAST)
                time.sleep(0.3)
                drop = pool_of_clients.submit(outcome, sessions[2].network.destroy, victim)
                time.sleep(0.3)
                assert not watch.done()   # nothing durable happened to tell
            assert grow.result(CALL_LIMIT) == FULL and drop.result(CALL_LIMIT) == FULL
            events = watch.result(CALL_LIMIT)["events"]
        assert [(e["ref"], e["operation"], e["snapshot"]["name_description"])
                for e in events] == [(victim, "mod", "original")]
        assert x.network.get_name_description(victim) == "original"

        probe_keys = []

        def small_write(i):
            x.pool.add_to_other_config(pool, f"probe{i}", "1")
            probe_keys.append(f"probe{i}")
        write_until_refused(small_write)

        assert refused(x.pool.set_name_label, pool, "refused-label") == FULL
        assert refused(x.pool.add_to_other_config, pool, "refused-key", "v") == FULL
        assert refused(x.network.create, {"name_label": "refused-net",
                                          "other_config": {}}) == FULL
        assert refused(x.network.destroy, victim) == FULL

        # Reads keep working and show what was there before.
        record = x.pool.get_record(pool)
        assert record["name_label"] == "before-full"
        assert "refused-key" not in record["other_config"]
        names = [r["name_label"] for r in x.network.get_all_records().values()]
        assert "refused-net" not in names and "victim" in names
        assert all(x.network.get_name_description(net) == description
                   for net, description in acknowledged.items())
        # Sessions live in memory only (as in xapi), so a login needs no disk.
        proc.session().xenapi.session.logout()

        # Storage: the local SR (in the data dir) has no room for a disk; an SR whose
        # disk has room makes the image, but the database cannot record it, so the
        # image is removed again; a new SR cannot even be made. No record is left.
        vdis, srs = set(x.VDI.get_all()), set(x.SR.get_all())
        local_files = sorted(os.listdir(local_dir))
        vdi = {"SR": local_sr, "virtual_size": 1 << 20, "name_label": "refused-vdi",
               "type": "user", "sharable": False, "read_only": False, "other_config": {}}
        assert refused(x.VDI.create, vdi)[0] == "SR_FULL"
        assert refused(x.VDI.create, {**vdi, "SR": roomy_sr}) == FULL
        assert not [n for n in os.listdir(roomy_dir) if n.endswith(".qcow2")]
        new_sr_dir = os.path.join(data, "refused-sr")
        error = refused(x.SR.create, host, {"path": new_sr_dir}, 0, "refused-sr", "",
                        "file", "user", False, {})
        assert error[:2] == ["SR_BACKEND_FAILURE", "ENOSPC"], error
        assert not os.path.exists(new_sr_dir)
        assert set(x.VDI.get_all()) == vdis and set(x.SR.get_all()) == srs
        assert sorted(os.listdir(local_dir)) == local_files
        assert proc.proc.poll() is None   # the audit log and the server's log are full too

        # Space returns: writes succeed again, without a restart.
        os.unlink(filler)
        x.pool.set_name_label(pool, "after-full")
        net = x.network.create({"name_label": "after-net", "other_config": {},
                                "name_description": "after"})
        acknowledged[net] = "after"
        local_vdi = x.VDI.create(vdi | {"name_label": "after-vdi"})
        with open(os.path.join(data, "audit.log")) as audit:
            lines = audit.read().splitlines()
        assert all(json.loads(line) for line in lines)   # no torn line
        assert json.loads(lines[-1])["method"] == "VDI.create"
    finally:
        proc.kill()

    # After SIGKILL: the database is sound, every acknowledged write is there, no
    # refused one is.
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "refused-" not in dump and 2 * BALLAST not in dump
    proc.start()
    try:
        x = proc.session().xenapi
        assert x.pool.get_name_label(pool) == "after-full"
        other_config = x.pool.get_other_config(pool)
        assert "refused-key" not in other_config
        assert all(other_config[key] == "1" for key in probe_keys)
        assert all(x.network.get_name_description(net) == description
                   for net, description in acknowledged.items())
        assert x.network.get_name_description(victim) == "original"
        assert x.VDI.get_name_label(local_vdi) == "after-vdi"
        assert x.SR.get_VDIs(roomy_sr) == []
    finally:
        proc.kill()
