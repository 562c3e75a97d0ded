"""Every acknowledged write survives SIGKILL; refs and uuids are stable across restarts
(records in SQLite, and in PostgreSQL: pg_server.py)."""
import concurrent.futures
import threading

from pg_server import database_url, store_backend  # noqa: F401 (fixtures: both backends)
from serverproc import ServerProcess

N = 200


def test_acknowledged_writes_survive_sigkill(tmp_path, database_url):  # noqa: F811
    proc = ServerProcess(str(tmp_path / "data"), database_url=database_url).start()
    try:
        session = proc.session()
        x = session.xenapi
        pool = x.pool.get_all()[0]
        host = x.pool.get_master(pool)
        host_uuid = x.host.get_uuid(host)

        # One client (SDK session, connection) per writer thread, 16 writing at once: a
        # login per write cost as much time as the writes, and logins are not what is
        # checked here.
        writers = threading.local()

        def write(i):
            if not hasattr(writers, "xenapi"):
                writers.xenapi = proc.session().xenapi
            writers.xenapi.pool.add_to_other_config(pool, f"key{i}", f"value{i}")
            net = writers.xenapi.network.create({"name_label": f"net{i}", "other_config": {}})
            return i, net

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            acknowledged = dict(ex.map(write, range(N)))
        x.pool.set_name_label(pool, "survivor")
    finally:
        proc.kill()  # no shutdown: what was acknowledged must already be on disk

    proc.start()
    try:
        x = proc.session().xenapi
        assert x.pool.get_all() == [pool]
        assert x.pool.get_name_label(pool) == "survivor"
        assert x.pool.get_master(pool) == host and x.host.get_uuid(host) == host_uuid
        other = x.pool.get_other_config(pool)
        for i, net in acknowledged.items():
            assert other[f"key{i}"] == f"value{i}"
            assert x.network.get_name_label(net) == f"net{i}"
    finally:
        proc.stop()


def test_async_create_returns_task_with_xml_result(xapi):
    import time
    task = xapi.Async.network.create({"name_label": "async-net", "other_config": {}})
    assert task.startswith("OpaqueRef:")
    for _ in range(100):
        record = xapi.task.get_record(task)
        if record["status"] != "pending":
            break
        time.sleep(0.05)
    assert record["status"] == "success" and record["progress"] == 1.0
    ref = record["result"].removeprefix("<value>").removesuffix("</value>")
    assert xapi.network.get_name_label(ref) == "async-net"
    failed = xapi.Async.network.destroy("OpaqueRef:nothing")
    for _ in range(100):
        record = xapi.task.get_record(failed)
        if record["status"] != "pending":
            break
        time.sleep(0.05)
    assert record["status"] == "failure"
    assert record["error_info"] == ["HANDLE_INVALID", "network", "OpaqueRef:nothing"]
