"""The store on PostgreSQL: what is particular to it (pg_server.py's real cluster).

Start-up refusals (database unreachable, another server writing, a newer schema), a
connection lost under a running server (the write refused and undone, reads still
answered, the next write reconnects), the whole cluster stopped and started again, and
a commit whose answer was lost (memory undone, the database put back in step). Event
tokens across restarts are tested on both backends in test_store_generations.py.
"""
import asyncio
import os
import subprocess
import sys

import psycopg
import pytest
import XenAPI

from pg_server import cluster
from serverproc import ROOT_PASSWORD, ServerProcess
from xapi_server import store as store_module
from xapi_server.errors import ApiError
from xapi_server.store._postgres import PgDatabase

LOST = "database write failed: PostgreSQL unreachable or connection lost"


def start_expecting_exit(data_dir, url, timeout=60):
    """Run the server the way an operator does; it must exit on its own."""
    env = {**os.environ, "XAPI_ROOT_PASSWORD": ROOT_PASSWORD, "XAPI_DATABASE_URL": url,
           "XAPI_LIBVIRT_URI": "test:///default"}
    return subprocess.run([sys.executable, "-m", "xapi_server", "--data-dir", str(data_dir),
                           "--listen", "127.0.0.1", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_unreachable_database_at_start_is_one_clear_line(tmp_path):
    url = f"postgresql://xapi:s3cret@/pool?host={tmp_path}/nowhere&port=5999"
    done = start_expecting_exit(tmp_path / "data", url)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("xapi-server: cannot open the PostgreSQL database 'pool' on "
                           f"{tmp_path}/nowhere:5999: PostgreSQL unreachable"), done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr


@pytest.fixture(scope="module")
def pg_proc(tmp_path_factory):
    url = cluster().new_database("store_postgres")
    proc = ServerProcess(str(tmp_path_factory.mktemp("pg-data")), database_url=url).start()
    try:
        yield proc, url
    finally:
        proc.stop()


def test_a_second_server_on_the_same_database_refuses_to_start(pg_proc, tmp_path):
    _, url = pg_proc
    done = start_expecting_exit(tmp_path / "data", url)
    assert done.returncode == 1
    assert "another xapi-py server is the writer of this database" in done.stderr
    assert "Traceback" not in done.stderr


def writer_pid(url) -> int:
    with cluster().connect("postgres") as conn:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                            "application_name = 'xapi-py'", (name,)).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


def test_connection_lost_refuses_the_write_and_reconnects(pg_proc):
    proc, url = pg_proc
    x = proc.session().xenapi
    kept = x.network.create({"name_label": "kept", "other_config": {}})
    with cluster().connect("postgres") as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (writer_pid(url),))
    with pytest.raises(XenAPI.Failure) as failure:
        x.network.create({"name_label": "refused", "other_config": {}})
    code, reason = failure.value.details
    assert code == "INTERNAL_ERROR" and reason.startswith(LOST), reason
    assert x.network.get_by_name_label("refused") == []     # undone in memory
    assert x.network.get_name_label(kept) == "kept"          # reads answered
    after = x.network.create({"name_label": "after", "other_config": {}})   # reconnected
    proc.kill()
    proc.start()
    x = proc.session().xenapi
    names = {x.network.get_name_label(n) for n in x.network.get_all()}
    assert {"kept", "after"} <= names and "refused" not in names
    assert x.network.get_name_label(after) == "after"


def test_cluster_down_writes_refused_reads_answered_then_back(pg_proc):
    proc, _ = pg_proc
    x = proc.session().xenapi
    net = x.network.create({"name_label": "before", "other_config": {}})
    pg = cluster()
    pg.stop("immediate")
    try:
        for _ in range(2):   # refused each time, never hangs
            with pytest.raises(XenAPI.Failure) as failure:
                x.network.set_name_label(net, "while-down")
            assert failure.value.details[0] == "INTERNAL_ERROR"
            assert failure.value.details[1].startswith(LOST)
        assert x.network.get_name_label(net) == "before"
        assert len(x.VM.get_all_records()) > 0
    finally:
        pg.start()
    x.network.set_name_label(net, "after")
    proc.kill()
    proc.start()
    assert proc.session().xenapi.network.get_name_label(net) == "after"


class AnswerLost(PgDatabase):
    """A commit that lands, whose answer is lost with the connection."""
    lose_next = False

    def _write(self, ops):
        reason = super()._write(ops)
        if reason is None and AnswerLost.lose_next:
            AnswerLost.lose_next = False
            self._disconnect()
            return "PostgreSQL unreachable or connection lost (test: answer lost)"
        return reason


def db_names(url) -> dict:
    with psycopg.connect(url) as conn:
        return {ref: name for ref, name in conn.execute('SELECT ref, name_label FROM network')}


def test_a_commit_whose_answer_was_lost_is_put_back_in_step(monkeypatch):
    url = cluster().new_database("answer_lost")
    monkeypatch.setattr(store_module, "PgDatabase", AnswerLost)

    async def body():
        store = store_module.Store(url)
        store.open()
        try:
            kept = store.create("network", {"name_label": 'kept'})
            await store.flush()
            AnswerLost.lose_next = True
            lost = store.create("network", {"name_label": 'lost'})
            store.update("network", kept, name_label='renamed')
            with pytest.raises(ApiError) as failure:
                await store.flush()
            assert failure.value.args[0] == "INTERNAL_ERROR"
            assert not store.exists("network", lost)
            assert store.get("network", kept, "name_label") == 'kept'
            assert lost in db_names(url)              # the commit landed nonetheless
            third = store.create("network", {"name_label": 'third'})
            await store.flush()                       # memory's state is written first
            return kept, lost, third
        finally:
            store.close()
    kept, lost, third = asyncio.run(body())
    on_disk = db_names(url)
    assert lost not in on_disk
    assert on_disk[kept] == '"kept"' and on_disk[third] == '"third"'   # JSON text


def test_a_database_of_a_newer_schema_is_refused(tmp_path):
    url = cluster().new_database("newer_schema")
    PgDatabase(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE store_state SET value = 99 WHERE name = 'schema_version'")
    done = start_expecting_exit(tmp_path / "data", url)
    assert done.returncode == 1
    assert "written by a newer xapi-py (schema 99, this one knows 1)" in done.stderr
