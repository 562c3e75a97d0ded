"""kill -9 under load: 200 concurrent clients make mutating calls, the server gets
SIGKILL mid-flight; after the restart every acknowledged write is there, nothing
destroyed came back, and the database passes the consistency check (which, shown
here too, does catch damage). The kill -9 test runs with the records in SQLite and in
PostgreSQL (pg_server.py)."""
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from crashload import AckLog, compare, run_load, server_records
from pg_server import database_url, store_backend  # noqa: F401 (fixtures: both backends)
from serverproc import ROOT_PASSWORD, ServerProcess
from xapi_server.store.check import check_data_dir, check_database_url, check_records

CLIENTS = 200
KILL_AFTER_ACKS = 2000
NULL = "OpaqueRef:NULL"


def check_cli(data_dir_or_url):
    return subprocess.run([sys.executable, "-m", "xapi_server.store.check", data_dir_or_url],
                          capture_output=True, text=True)


@pytest.mark.slow   # 200 clients, kill -9, restart: the checks below stay in the quick run
def test_kill_9_under_200_clients_loses_no_acknowledged_write(tmp_path,
                                                             database_url):  # noqa: F811
    data = str(tmp_path / "data")
    proc = ServerProcess(data, database_url=database_url).start()
    log = AckLog(str(tmp_path / "acks.jsonl"))
    try:
        failures = run_load(proc.url, ROOT_PASSWORD, CLIENTS, log, proc.kill, KILL_AFTER_ACKS)
    finally:
        proc.kill()
        log.close()
    assert failures == []
    entries = AckLog.read(log.path)
    pending = [e for e in entries if not e["acked"]]
    acked = len(entries) - len(pending)
    print(f"{acked} calls acknowledged, {len(pending)} in flight at the kill")
    assert acked >= KILL_AFTER_ACKS
    assert len(pending) >= CLIENTS // 2           # the kill really hit calls in flight
    assert {e["op"] for e in entries if e["acked"]} == {"create", "set", "map_add", "destroy"}

    result = check_cli(database_url or data)      # the crashed database, as an admin would
    assert result.returncode == 0, result.stdout + result.stderr

    proc.start()
    try:
        x = proc.session().xenapi
        records = server_records(x)
        assert compare(entries, records) == []
        bridges = [r["bridge"] for r in records["network"].values()]
        assert len(bridges) == len(set(bridges))
    finally:
        proc.stop()
    after = check_database_url(database_url) if database_url else check_data_dir(data)
    assert after == []                            # and after the restart's own writes


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A stopped server's data dir holding VMs with disks and VIFs, and the records
    the API gave for them."""
    data = str(tmp_path_factory.mktemp("populated"))
    proc = ServerProcess(data).start()
    try:
        x = proc.session().xenapi
        pool = x.pool.get_all()[0]
        sr = x.pool.get_default_SR(pool)
        template = x.VM.get_by_name_label("Other install media")[0]
        vm = x.VM.clone(template, "checked")
        net = x.network.create({"name_label": "checked", "other_config": {}})
        x.VIF.create({"VM": vm, "network": net, "device": "0", "MAC": "", "MTU": "1500",
                      "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
        vdi = x.VDI.create({"SR": sr, "virtual_size": str(1 << 20), "type": "user",
                            "sharable": False, "read_only": False, "other_config": {},
                            "name_label": "checked"})
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                      "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
        records = {c: getattr(x, c).get_all_records() for c in ("VM", "VBD", "VDI", "VIF",
                                                               "network", "SR")}
    finally:
        proc.stop()
    return data, records


def test_check_passes_on_a_healthy_data_dir(populated):
    data, _ = populated
    result = check_cli(data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "" and "consistent" in result.stderr


def test_check_reports_damage(populated, tmp_path):
    data, records = populated
    copy = str(tmp_path / "copy")
    shutil.copytree(data, copy)
    db = sqlite3.connect(os.path.join(copy, "xapi.db"))
    vbd = next(iter(records["VBD"]))
    vif = next(iter(records["VIF"]))
    vm = next(r for r, rec in records["VM"].items() if rec["name_label"] == "checked")
    net = next(r for r, rec in records["network"].items() if rec["name_label"] == "checked")
    other_net = next(r for r in records["network"] if r != net)
    with db:
        db.execute('UPDATE VBD SET VDI = \'"OpaqueRef:gone"\' WHERE ref = ?', (vbd,))
        db.execute("UPDATE VIF SET device = '5' WHERE ref = ?", (vif,))   # an int, not a string
        db.execute("UPDATE VM SET power_state = '\"Flying\"' WHERE ref = ?", (vm,))
        db.execute("UPDATE VM SET other_config = '{not json' WHERE ref = ?", (vm,))
        db.execute("UPDATE network SET uuid = (SELECT uuid FROM network WHERE ref = ?) "
                   "WHERE ref = ?", (other_net, net))
        db.execute("DELETE FROM meta WHERE key = 'pool_ref'")
    db.close()
    result = check_cli(copy)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    expected = [f"VBD {vbd}: VDI points at VDI OpaqueRef:gone, which does not exist",
                f"VIF {vif}: device: expected string, found 5",
                f"VM {vm}: power_state: 'Flying' is not a valid vm_power_state",
                f"VM {vm}: other_config is not valid JSON: '{{not json'",
                "meta: no pool_ref"]
    for line in expected:
        assert line in lines, result.stdout
    assert any(line.startswith("network ") and "also belongs to" in line for line in lines)
    # The VDI lost its VBD: the relation's other side is derived, so it stays symmetric.
    assert len(lines) == len(expected) + 1, result.stdout
    assert "problems found" in result.stderr


def test_check_reports_a_corrupt_file(populated, tmp_path):
    data, _ = populated
    copy = str(tmp_path / "copy")
    shutil.copytree(data, copy)
    path = os.path.join(copy, "xapi.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # everything into the main file
    db.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:                     # garbage over every page but the first
        f.seek(4096)
        f.write(os.urandom(size - 4096))
    result = check_cli(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sqlite" in result.stdout or "cannot be read" in result.stdout


def test_check_without_a_database(tmp_path):
    result = check_cli(str(tmp_path))
    assert result.returncode == 2 and "no database" in result.stderr


def test_relations_must_be_symmetric(populated):
    """What the live API returns is checked the same way: an owner listing a child
    that points elsewhere, or missing one that points at it, is reported."""
    _, records = populated
    tables = {c: {r: dict(rec) for r, rec in recs.items()} for c, recs in records.items()}
    assert check_records(tables) == []
    vm = next(r for r, rec in tables["VM"].items() if rec["name_label"] == "checked")
    vbd = tables["VM"][vm]["VBDs"][0]
    vdi = tables["VBD"][vbd]["VDI"]
    tables["VM"][vm]["VBDs"] = []                    # VM forgets its VBD
    tables["VDI"][vdi]["VBDs"] = [vbd, vbd]          # VDI lists it twice
    problems = check_records(tables)
    assert f"VM {vm}: VBDs misses VBD {vbd}, whose VM points at it" in problems
    assert f"VDI {vdi}: VBDs lists an object twice" in problems
    tables["VBD"][vbd]["VM"] = NULL                  # and now points nowhere
    tables["VM"][vm]["VBDs"] = [vbd]
    assert f"VM {vm}: VBDs lists VBD {vbd}, whose VM is not {vm}" in check_records(tables)
