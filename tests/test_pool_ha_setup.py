"""scripts/pool-ha-setup.sh, what the install does on each of the three hosts that hold
the pool database: etcd, Patroni and PostgreSQL 15 from Debian's packages, TLS between
the hosts (a pool CA), passwords derived from the pool secret. Three namespaces
configured by it (tests/ha_harness.py, setup_script=True) must form a cluster with a
synchronous standby that takes only TLS logins and only certified etcd clients."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import ssl
import urllib.request

import psycopg
import pytest

from ha_harness import ETCD_CLIENT
from ha_shared import shared_cluster
from xapi_server.services.pool.ha_switchover import SwitchoverRefused, plan, switchover


# The cluster test_pool_ha_members.py leaves (the three hosts members again), or one
# of its own if that file is not run or failed (tests/ha_shared.py).
cluster = shared_cluster(__name__, name="cluster", slot=5, setup_script=True)


@pytest.fixture(scope="module")
def ha(cluster):
    cluster.wait_sync_standby(120)
    return cluster


def pgpass(node) -> str:
    with open(os.path.join(node.dir, "etc/xapi-py/pool-ha.pgpass")) as f:
        return f.read()


def test_synchronous_cluster_over_tls(ha):
    leader = ha.wait_leader()
    standby = ha.wait_sync_standby()
    assert standby != leader.name
    with ha.connect() as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone()[0] is True
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    # The database URL the script prints for xapi.toml, with its password file.
    url = re.search(r'ha_database_url = "([^"]+)"', ha.setup_output).group(1)
    passfile = re.search(r"PGPASSFILE=(\S+)", ha.setup_output).group(1)
    with ha.connect() as conn:
        conn.execute("CREATE DATABASE xapi_pool")
    with psycopg.connect(url, passfile=passfile, connect_timeout=5) as conn:
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0] is True


def test_no_login_without_tls(ha):
    plain = ha.url().replace(ha.ssl, "") + "&sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption|pg_hba"):
        psycopg.connect(plain).close()


def test_etcd_and_patroni_speak_tls_of_the_pool_ca(ha):
    node = ha.nodes[0]
    ca = ssl.create_default_context(cafile=node.ca)
    # etcd asks for a client certificate of the pool CA: none, no answer.
    version = f"https://{node.address}:{ETCD_CLIENT}/version"
    with pytest.raises(OSError):
        urllib.request.urlopen(version, timeout=5, context=ca).read()
    tls = os.path.dirname(node.ca)
    ca.load_cert_chain(os.path.join(tls, "host.pem"), os.path.join(tls, "host.key"))
    with urllib.request.urlopen(version, timeout=5, context=ca) as reply:
        assert b"etcdserver" in reply.read()
    # Patroni's REST API: a certificate the pool CA signed, for the host's address.
    with node.get("/cluster") as reply:
        assert reply.status == 200
    with pytest.raises(OSError):   # not trusted without the pool CA
        urllib.request.urlopen(f"{node.api}/cluster", timeout=5,
                               context=ssl.create_default_context()).read()


def test_passwords_derived_from_the_pool_secret(ha):
    files = {pgpass(n) for n in ha.nodes}
    assert len(files) == 1   # every host derived the same
    secret = open(os.path.join(os.path.dirname(ha.nodes[0].dir), "pool-secret"), "rb").read()
    expected = hmac.new(secret.strip(), b"xapi-py pool-ha postgres-superuser",
                        hashlib.sha256).hexdigest()
    assert ha.password == expected
    assert secret.strip().decode() not in files.pop()


def test_switchover_asked_with_the_pool_secret(ha):
    """pool.designate_new_master's request to Patroni (services/pool/ha_switchover.py)
    over the script's TLS, with the REST password derived from the pool secret: only
    to the synchronous standby, and a wrong secret is refused."""
    leader, standby = ha.wait_leader(), ha.wait_sync_standby()
    secret = open(os.path.join(os.path.dirname(ha.nodes[0].dir), "pool-secret")).read()
    node = ha.nodes[0]
    third = next(n for n in ha.nodes if n.name not in (leader.name, standby))
    with pytest.raises(SwitchoverRefused, match="synchronous standby"):
        plan(node.api, node.ca, secret, third.address)
    names = plan(node.api, node.ca, secret, ha.node(standby).address)
    assert names == (leader.name, standby)
    with pytest.raises(SwitchoverRefused, match="HTTP 401"):
        switchover(node.api, node.ca, "not the pool secret", *names)
    assert ha.leader() is leader
    switchover(node.api, node.ca, secret, *names)
    assert ha.wait_leader(not_this=leader).name == standby
