"""What a host does about Patroni's view of the pool database (services/pool/ha.py):
the coordinator is the host of Patroni's leader, and nobody moves during an election."""
from __future__ import annotations

from xapi_server.services.pool.ha import (FOLLOW, STAY, TAKE_OVER, PatroniView, decide,
                                          leader_first)

LEADER_HERE = PatroniView(me="h1", my_address="10.0.0.1", leader="h1", leader_address="10.0.0.1")
LEADER_THERE = PatroniView(me="h1", my_address="10.0.0.1", leader="h2", leader_address="10.0.0.2")
ELECTION = PatroniView(me="h1", my_address="10.0.0.1", leader="", leader_address="")


def coordinator(view, deposed=False, on_pool_database=True):
    return decide(view, is_member=False, master_address="",
                  on_pool_database=on_pool_database, deposed=deposed)


def member(view, master="10.0.0.2"):
    return decide(view, is_member=True, master_address=master, on_pool_database=False,
                  deposed=False)


def test_the_leaders_host_coordinates():
    assert coordinator(LEADER_HERE) == (STAY, "")
    assert member(LEADER_HERE) == (TAKE_OVER, "10.0.0.1")
    # Refused by the database, yet still the leader (a blip): open it again.
    assert coordinator(LEADER_HERE, deposed=True) == (TAKE_OVER, "10.0.0.1")


def test_a_coordinator_the_leader_left_follows_it():
    assert coordinator(LEADER_THERE) == (FOLLOW, "10.0.0.2")
    assert coordinator(LEADER_THERE, deposed=True) == (FOLLOW, "10.0.0.2")


def test_members_follow_the_leaders_host():
    assert member(LEADER_THERE, master="10.0.0.2") == (STAY, "")
    assert member(LEADER_THERE, master="10.0.0.2:443") == (STAY, "")
    assert member(LEADER_THERE, master="10.0.0.3") == (FOLLOW, "10.0.0.2")


def test_nobody_moves_during_an_election_or_outside_the_pool():
    assert coordinator(ELECTION, deposed=True) == (STAY, "")
    assert member(ELECTION) == (STAY, "")
    # A standalone host (its own SQLite file) that runs a Patroni is not in the pool.
    assert coordinator(LEADER_THERE, on_pool_database=False) == (STAY, "")


def test_the_leaders_host_is_tried_first():
    url = ("postgresql://postgres@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5432/xapi_pool"
           "?target_session_attrs=read-write")
    assert leader_first(url, "10.0.0.2") == (
        "postgresql://postgres@10.0.0.2:5432,10.0.0.1:5432,10.0.0.3:5432/xapi_pool"
        "?target_session_attrs=read-write")
    assert leader_first(url, "10.0.0.9") == url      # not listed: unchanged
    assert leader_first("/var/lib/xapi.db", "10.0.0.1") == "/var/lib/xapi.db"
