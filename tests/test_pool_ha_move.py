"""A pool moved into the replicated database (store/pool_move.py, README "Pool HA"): the
refusals, on pg_server.py's real PostgreSQL. The whole path through the servers (three
hosts, Patroni, the hand-over to the leader's host) is tests/test_pool_ha.py's first
test, on the fixture tests/ha_pool.py builds that way.

The source pools are made by real servers (started, then stopped: a live server holds
its database's writer lock, and a move out of it is refused)."""
import psycopg
import pytest

from pg_server import cluster
from serverproc import ServerProcess
from test_store_postgres import start_expecting_exit
from xapi_server.store.pool_move import ALREADY_THERE, COPIED, MOVED_INTO, MoveRefused, \
    move_pool, moved_into
from xapi_server.store.pool_read import copy_ops


@pytest.fixture(scope="module")
def two_pools(tmp_path_factory):
    """Two pools' databases, each written by a server of its own, which is left running
    on the first (stopped by the test that needs it stopped)."""
    urls, servers = [], []
    for name in ("move_a", "move_b"):
        urls.append(cluster().new_database(name))
        servers.append(ServerProcess(str(tmp_path_factory.mktemp(name)),
                                     database_url=urls[-1]))
        servers[-1].start_nowait()
    for server in servers:
        server.wait_started()
    servers[1].stop()
    try:
        yield urls, servers[0]
    finally:
        servers[0].stop()


def rows(url) -> list:
    """Every record, the meta and the ceiling, but the source's mark of the move."""
    return sorted(repr(op) for op in copy_ops(url) if op[:2] != ("meta", MOVED_INTO))


def test_a_database_in_use_is_not_moved(two_pools):
    (source, _), server = two_pools
    empty = cluster().new_database("move_target_busy")
    with pytest.raises(MoveRefused, match="another xapi-py server is the writer"):
        move_pool(source, empty)
    server.stop()


def test_moved_once_then_found_there_never_overwritten(two_pools):
    (source, other), server = two_pools
    server.stop()
    target = cluster().new_database("move_target")
    assert moved_into(source) == ""
    assert move_pool(source, target) == COPIED
    assert rows(target) == rows(source)   # every record, the meta and the ceiling
    assert moved_into(source).startswith("PostgreSQL database 'move_target")
    assert moved_into(target) == ""
    # The host stopped before it switched over: the next start finds its pool there.
    assert move_pool(source, target) == ALREADY_THERE
    # Another pool's records are never written over.
    with pytest.raises(MoveRefused, match="already holds records"):
        move_pool(other, target)
    assert rows(target) == rows(source)
    # Nor a database holding this very pool at a later generation than the source's
    # (the pool went on there): taken as it is, never copied over.
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("UPDATE store_state SET value = value + 100 WHERE name = 'generation'")
    assert move_pool(source, target) == ALREADY_THERE
    assert rows(target) != rows(source)


def test_no_server_starts_on_the_stale_copy_a_move_left(two_pools, tmp_path,
                                                        monkeypatch):
    """A host whose database_url names a database whose pool moved out (the old
    coordinator after pool.eject, its Patroni gone) is told so in one line and does
    not start, instead of serving the pool's records of before the move."""
    (source, _), server = two_pools
    server.stop()
    target = cluster().new_database("move_target_stale")
    move_pool(source, target)
    monkeypatch.setenv("XAPI_PATRONI_URL", "http://127.0.0.1:1")   # nothing answers
    monkeypatch.setenv("XAPI_HA_DATABASE_URL", target)
    done = start_expecting_exit(tmp_path / "data", source)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "moved into the PostgreSQL database 'move_target_stale" in last, last
    assert "point database_url at an empty database" in last
