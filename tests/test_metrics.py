"""Metrics on a real server (libvirt's test driver: the host's own figures from /proc,
its SR's): the data-source messages of host and SR through the SDK and through xe.
The HTTP side (/rrd_updates, dumps, /metrics, Prometheus): test_metrics_http.py;
guests' figures: test_metrics_guest.py."""
import os
import re
import subprocess
import sys
import time

import pytest
import XenAPI

from serverproc import ROOT_PASSWORD, ServerProcess, add_local_user

XE = os.path.join(os.path.dirname(sys.executable), "xe")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # Samples every second (the archives keep xapi's 5 s rows): data comes quicker.
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-metrics")),
                         env={"XAPI_METRICS_INTERVAL": "1"}).start()
    session = proc.session()
    x = session.xenapi
    add_local_user(x, "watcher", "read-only", "watch-pw")
    # Two samples: rates (cpu, interfaces) need a previous reading.
    time.sleep(3)
    yield proc, session
    proc.stop()


def mem_total_kib() -> float:
    with open("/proc/meminfo") as f:
        return float(f.readline().split()[1])


def host_uuid(session):
    x = session.xenapi
    return x.host.get_uuid(x.host.get_all()[0])


def test_read_only_session_may_read_and_not_record(srv):
    proc, session = srv
    ro = XenAPI.Session(proc.url, ignore_ssl=True)
    ro.xenapi.login_with_password("watcher", "watch-pw", "1.0", "tests")
    try:
        host = ro.xenapi.host.get_all()[0]
        assert ro.xenapi.host.query_data_source(host, "memory_total_kib") == mem_total_kib()
        with pytest.raises(XenAPI.Failure) as err:
            ro.xenapi.host.record_data_source(host, "cpu0")
        assert err.value.details[0] == "RBAC_PERMISSION_DENIED"
    finally:
        ro.xenapi.session.logout()


def test_host_data_source_messages(srv):
    proc, session = srv
    x = session.xenapi
    host = x.host.get_all()[0]
    sources = {d["name_label"]: d for d in x.host.get_data_sources(host)}
    for name in ("cpu0", "cpu_avg", "memory_total_kib", "memory_free_kib", "loadavg"):
        assert sources[name]["enabled"] and sources[name]["standard"]
    assert sources["cpu0"]["units"] == "(fraction)" and sources["cpu0"]["max"] == 1.0
    assert sources["memory_total_kib"]["units"] == "KiB"
    assert sources["memory_total_kib"]["value"] == mem_total_kib()
    assert x.host.query_data_source(host, "memory_total_kib") == mem_total_kib()
    with pytest.raises(XenAPI.Failure) as err:
        x.host.query_data_source(host, "no_such_source")
    assert err.value.details == ["INTERNAL_ERROR", "Invalid data source: no_such_source"]
    # An error counter is not recorded until asked for, then it is, then it is forgotten.
    extra = next(n for n, d in sources.items() if n.endswith("_rx_errors"))
    assert not sources[extra]["enabled"] and not sources[extra]["standard"]
    enabled = lambda: {d["name_label"]: d for d in x.host.get_data_sources(host)}[extra][
        "enabled"]
    x.host.record_data_source(host, extra)
    assert enabled()
    x.host.forget_data_source_archives(host, extra)
    assert not enabled()
    with pytest.raises(XenAPI.Failure) as err:
        x.host.record_data_source(host, "no_such_source")
    assert err.value.details[0] == "INTERNAL_ERROR"
    with pytest.raises(XenAPI.Failure) as err:
        x.host.query_data_source("OpaqueRef:nope", "cpu0")
    assert err.value.details[0] == "HANDLE_INVALID"


def test_sr_data_sources(srv):
    proc, session = srv
    x = session.xenapi
    srs = [sr for sr in x.SR.get_all()
           if any(x.PBD.get_currently_attached(p) for p in x.SR.get_PBDs(sr))]
    sr = srs[0]
    names = {d["name_label"] for d in x.SR.get_data_sources(sr)}
    assert {"read", "write", "physical_utilisation", "physical_size"} <= names
    assert x.SR.query_data_source(sr, "physical_size") == float(x.SR.get_physical_size(sr))


def xe(proc, tmp_path, *argv):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    return subprocess.run([XE, "-s", "127.0.0.1", "-p", str(proc.port), "-pw", ROOT_PASSWORD,
                           *argv], env=env, capture_output=True, text=True, timeout=60)


def test_xe_host_and_sr_data_source_commands(srv, tmp_path):
    proc, session = srv
    x = session.xenapi
    uuid = host_uuid(session)
    r = xe(proc, tmp_path, "host-data-source-list", f"uuid={uuid}")
    assert r.returncode == 0, r.stderr
    assert re.search(r"name_label *: memory_total_kib\n", r.stdout)
    assert re.search(r"units *: KiB\n", r.stdout) and re.search(r"max *: inf\n", r.stdout)
    r = xe(proc, tmp_path, "host-data-source-query", f"uuid={uuid}",
           "data-source=memory_total_kib")
    assert r.returncode == 0 and float(r.stdout) == mem_total_kib()
    r = xe(proc, tmp_path, "host-data-source-query", f"uuid={uuid}", "data-source=nope")
    assert r.returncode == 1 and "nope" in r.stdout + r.stderr
    extra = next(d["name_label"] for d in x.host.get_data_sources(x.host.get_all()[0])
                 if d["name_label"].endswith("_tx_errors"))
    assert xe(proc, tmp_path, "host-data-source-record", f"uuid={uuid}",
              f"data-source={extra}").returncode == 0
    listed = xe(proc, tmp_path, "host-data-source-list", f"uuid={uuid}").stdout
    block = re.split(rf"name_label *: {extra}\n", listed)[1].split("\n\n")[0]
    assert re.search(r"enabled *: true\n", block)
    assert xe(proc, tmp_path, "host-data-source-forget", f"uuid={uuid}",
              f"data-source={extra}").returncode == 0
    sr = next(sr for sr in x.SR.get_all()
              if any(x.PBD.get_currently_attached(p) for p in x.SR.get_PBDs(sr)))
    r = xe(proc, tmp_path, "sr-data-source-query", f"uuid={x.SR.get_uuid(sr)}",
           "data-source=physical_size")
    assert r.returncode == 0 and float(r.stdout) == float(x.SR.get_physical_size(sr))
