"""Metrics over HTTP on a real server (libvirt's test driver: the host's own figures
from /proc): /rrd_updates in XML and JSON as xapi writes them, the full dumps, and
/metrics scraped by a real Prometheus server and checked by `promtool check metrics`.
The messages: test_metrics.py; guests' figures: test_metrics_guest.py."""
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
import XenAPI

from serverproc import ServerProcess, add_local_user, free_port
from test_metrics import host_uuid, mem_total_kib

TOKEN = "s3cret-scrape-token"
TLS = ssl._create_unverified_context()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # Samples every second (the archives keep xapi's 5 s rows): data comes quicker.
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-metrics")),
                         env={"XAPI_METRICS_INTERVAL": "1",
                              "XAPI_METRICS_BEARER_TOKEN": TOKEN}).start()
    session = proc.session()
    x = session.xenapi
    add_local_user(x, "watcher", "read-only", "watch-pw")
    # Two complete 5 s rows of the host's archive.
    time.sleep(11)
    yield proc, session
    proc.stop()


def get(proc, path, headers=None):
    """(status, headers with lower-case names, body)."""
    req = urllib.request.Request(proc.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def read_only_get(proc, path):
    """GET `path` with the session_id of a read-only user's new session."""
    ro = XenAPI.Session(proc.url, ignore_ssl=True)
    ro.xenapi.login_with_password("watcher", "watch-pw", "1.0", "tests")
    try:
        return get(proc, f"{path}{'&' if '?' in path else '?'}session_id={ro._session}")
    finally:
        ro.xenapi.session.logout()


def test_rrd_updates_xml_as_xapi_writes_it(srv):
    proc, session = srv
    status, headers, body = get(proc, f"/rrd_updates?session_id={session._session}"
                                      "&start=-30&cf=AVERAGE&interval=5&host=true")
    assert status == 200
    assert headers["content-type"] == "text/xml"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["cache-control"] == "no-cache, no-store"
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><xport><meta><start>')
    root = ET.fromstring(body)
    meta = root.find("meta")
    step, end = int(meta.findtext("step")), int(meta.findtext("end"))
    legend = [e.text for e in meta.find("legend")]
    rows = root.find("data").findall("row")
    assert step == 5 and end % 5 == 0
    assert int(meta.findtext("columns")) == len(legend)
    assert int(meta.findtext("rows")) == len(rows) >= 2
    uuid = host_uuid(session)
    for name in ("cpu0", "cpu_avg", "loadavg", "memory_total_kib", "memory_free_kib"):
        assert f"AVERAGE:host:{uuid}:{name}" in legend
    times = [int(r.findtext("t")) for r in rows]
    assert times[0] == end and times == sorted(times, reverse=True)
    assert all(a - b == step for a, b in zip(times, times[1:]))
    assert all(len(r.findall("v")) == len(legend) for r in rows)
    total = legend.index(f"AVERAGE:host:{uuid}:memory_total_kib")
    assert float(rows[0].findall("v")[total].text) == mem_total_kib()
    cpu = float(rows[0].findall("v")[legend.index(f"AVERAGE:host:{uuid}:cpu_avg")].text)
    assert 0.0 <= cpu <= 1.0


def test_rrd_updates_json_numbers_are_strings_and_accept_rule(srv):
    proc, session = srv
    base = f"/rrd_updates?session_id={session._session}&start=-20&host=true"
    status, headers, body = get(proc, base + "&json=true")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"meta", "data"}
    meta = doc["meta"]
    assert all(isinstance(meta[k], str) for k in ("start", "step", "end", "rows", "columns"))
    assert int(meta["rows"]) == len(doc["data"]) and int(meta["columns"]) == len(meta["legend"])
    for row in doc["data"]:
        assert isinstance(row["t"], str)
        assert all(isinstance(v, str) for v in row["values"])
        float(row["values"][0])   # "NaN" or a number
    assert int(doc["data"][0]["t"]) > int(doc["data"][-1]["t"])
    # No `json`: the Accept header decides; equal preference (*/*) is JSON, as xapi.
    for accept, kind in (("*/*", "application/json"), ("application/json", "application/json"),
                         ("text/xml", "text/xml"),
                         ("text/xml, application/json;q=0.5", "text/xml")):
        status, headers, _ = get(proc, base, {"Accept": accept})
        assert (status, headers["content-type"]) == (200, kind), accept
    status, headers, _ = get(proc, base)
    assert headers["content-type"] == "text/xml"


def test_rrd_updates_archive_choice_and_bad_input(srv):
    proc, session = srv
    sid = session._session
    now = int(time.time())
    _, _, body = get(proc, f"/rrd_updates?session_id={sid}&host=true&json&start={now - 600}"
                           "&interval=60")
    doc = json.loads(body)
    assert doc["meta"]["step"] == "60"
    # Older than the 1 h archive's week: the coarsest (1 day) archive, from its oldest row.
    _, _, body = get(proc, f"/rrd_updates?session_id={sid}&host=true&json&start=0")
    doc = json.loads(body)
    assert doc["meta"]["step"] == "86400" and int(doc["meta"]["rows"]) <= 366
    assert get(proc, f"/rrd_updates?session_id={sid}&host=true")[0] == 400
    assert get(proc, f"/rrd_updates?session_id={sid}&host=true&start=abc")[0] == 400
    assert get(proc, "/rrd_updates?start=-10&host=true")[0] == 401
    # A vm_uuid that has no archive and no host: nothing to export.
    assert get(proc, f"/rrd_updates?session_id={sid}&start=-10&vm_uuid=nope")[0] == 404


def test_recorded_source_joins_the_updates_and_leaves_when_forgotten(srv):
    proc, session = srv
    x = session.xenapi
    host = x.host.get_all()[0]
    extra = next(d["name_label"] for d in x.host.get_data_sources(host)
                 if d["name_label"].endswith("_rx_errors"))
    legend = lambda: json.loads(get(proc, f"/rrd_updates?session_id={session._session}"
                                          "&start=-10&host=true&json")[2])["meta"]["legend"]
    assert not any(e.endswith(":" + extra) for e in legend())
    x.host.record_data_source(host, extra)
    assert any(e.endswith(":" + extra) for e in legend())
    x.host.forget_data_source_archives(host, extra)
    assert not any(e.endswith(":" + extra) for e in legend())


def test_sr_rrd(srv):
    proc, session = srv
    x = session.xenapi
    sr = next(sr for sr in x.SR.get_all()
              if any(x.PBD.get_currently_attached(p) for p in x.SR.get_PBDs(sr)))
    status, _, body = get(proc, f"/sr_rrd?session_id={session._session}"
                                f"&uuid={x.SR.get_uuid(sr)}")
    assert status == 200
    names = [ds.findtext("name") for ds in ET.fromstring(body).findall("ds")]
    assert {"read", "write", "physical_size"} <= set(names)
    assert get(proc, f"/sr_rrd?session_id={session._session}")[0] == 400


def test_read_only_session_may_poll(srv):
    proc, session = srv
    assert read_only_get(proc, "/rrd_updates?start=-10&host=true")[0] == 200


def test_rrd_updates_completes_the_clients_task(srv):
    proc, session = srv
    x = session.xenapi
    task = x.task.create("poll", "")
    status, _, _ = get(proc, f"/rrd_updates?session_id={session._session}&start=-10"
                             f"&host=true&json&task_id={task}")
    assert status == 200
    # The task settles once the reply is out (as xapi's): clients watch it, so do we.
    deadline = time.monotonic() + 10
    while x.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert x.task.get_status(task) == "success"
    assert x.task.get_progress(task) == 1.0
    x.task.destroy(task)


def test_full_dumps(srv):
    proc, session = srv
    sid = session._session
    for path in ("/host_rrd", "/host_rrds"):
        status, headers, body = get(proc, f"{path}?session_id={sid}")
        assert status == 200 and headers["content-type"] == "text/xml"
        assert headers["access-control-allow-origin"] == "*"
        root = ET.fromstring(body)
        assert root.findtext("version") == "0003"
        step = int(root.findtext("step"))
        assert int(root.findtext("lastupdate")) > 0
        names = [ds.findtext("name") for ds in root.findall("ds")]
        assert "memory_total_kib" in names and "cpu_avg" in names
        rras = root.findall("rra")
        assert [int(r.findtext("pdp_per_row")) * step for r in rras] == [5, 60, 3600, 86400]
        assert [len(r.find("database").findall("row")) for r in rras] == [120, 120, 168, 366]
        assert all(len(row.findall("v")) == len(names) for row in rras[0].find("database"))
        prep = rras[0].find("cdp_prep").findall("ds")
        assert len(prep) == len(names)
        assert [child.tag for child in prep[0]] == ["primary_value", "secondary_value",
                                                    "value", "unknown_datapoints"]
        # A constant's row in consolidation is the constant (rrdtool's own state).
        total = names.index("memory_total_kib")
        assert float(prep[total].findtext("primary_value")) == mem_total_kib()
        newest = rras[0].find("database").findall("row")[-1]   # oldest first
        assert float(newest.findall("v")[names.index("memory_total_kib")].text) == \
            mem_total_kib()
    status, headers, body = get(proc, f"/host_rrd?session_id={sid}&json")
    doc = json.loads(body)
    assert headers["content-type"] == "application/json"
    assert doc["version"] == "0003" and isinstance(doc["step"], str)
    assert len(doc["rra"]) == 4 and all(isinstance(v, str) for v in doc["rra"][0]["database"][0])
    assert get(proc, f"/vm_rrd?session_id={sid}")[0] == 400
    assert get(proc, f"/vm_rrd?session_id={sid}&uuid=00000000-0000-0000-0000-000000000000")[0] \
        == 404


def test_metrics_endpoint_auth(srv):
    proc, session = srv
    assert get(proc, "/metrics")[0] == 401
    assert get(proc, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, headers, body = get(proc, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    status, _, text = read_only_get(proc, "/metrics")
    assert status == 200
    uuid = host_uuid(session)
    line = next(l for l in text.decode().splitlines()
                if l.startswith("xapi_host_memory_total_kib{"))
    assert f'uuid="{uuid}"' in line and float(line.split()[-1]) == mem_total_kib()
    status, headers, body = get(proc, "/metrics", {"Authorization": f"Bearer {TOKEN}",
                                                   "Accept": "application/openmetrics-text"})
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


@pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                    reason="Debian's prometheus is not installed")
def test_prometheus_scrapes_and_promtool_accepts(srv, tmp_path):
    proc, session = srv
    _, _, body = get(proc, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    check = subprocess.run(["promtool", "check", "metrics"], input=body,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: xapi
    scheme: https
    tls_config:
      insecure_skip_verify: true
    authorization:
      type: Bearer
      credentials: {TOKEN}
    static_configs:
      - targets: ['127.0.0.1:{proc.port}']
""")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        query = urllib.parse.quote("xapi_host_memory_total_kib")
        deadline = time.monotonic() + 60
        result = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={query}",
                                            timeout=5) as r:
                    result = json.loads(r.read())["data"]["result"]
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                continue
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        sample = result[0]
        assert sample["metric"]["uuid"] == host_uuid(session)
        assert float(sample["value"][1]) == mem_total_kib()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.loads(r.read())["data"]["activeTargets"]
        assert targets[0]["health"] == "up", targets
    finally:
        prom.terminate()
        prom.wait(timeout=30)




def test_archives_and_recorded_sources_survive_a_restart(srv):
    """Last in the module: it restarts the server (the module's session ends with it)."""
    proc, session = srv
    x = session.xenapi
    host = x.host.get_all()[0]
    extra = next(d["name_label"] for d in x.host.get_data_sources(host)
                 if d["name_label"].endswith("_tx_errors"))
    x.host.record_data_source(host, extra)

    def known_rows(sid):
        root = ET.fromstring(get(proc, f"/host_rrd?session_id={sid}")[2])
        names = [ds.findtext("name") for ds in root.findall("ds")]
        column = names.index("memory_total_kib")
        rows = root.find("rra").find("database").findall("row")
        return {n for n, row in enumerate(reversed(rows))   # 0: the newest
                if row.findall("v")[column].text != "NaN"}, names
    before, _ = known_rows(session._session)
    proc.stop()
    proc.start()
    again = proc.session()
    try:
        time.sleep(3)
        after, names = known_rows(again._session)
        # The rows from before the restart are still there, a few rows further back.
        assert len(after) >= len(before) >= 2
        assert extra in names
        sources = {d["name_label"]: d for d in again.xenapi.host.get_data_sources(host)}
        assert sources[extra]["enabled"]
    finally:
        again.xenapi.session.logout()
