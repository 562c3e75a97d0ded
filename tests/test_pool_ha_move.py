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
from xapi_server.store.pool_move import ALREADY_THERE, COPIED, MoveRefused, move_pool
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
    return sorted(map(repr, copy_ops(url)))


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
    assert move_pool(source, target) == COPIED
    assert rows(target) == rows(source)   # every record, the meta and the ceiling
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
