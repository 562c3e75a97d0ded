"""One caller's bad write never fails another caller's write (issue 12, items 6 and 7).

The store's writer commits the changes of many concurrent calls in one transaction
(group commit). A change the database cannot hold (a string that is no valid Unicode)
is refused to its own caller before it joins a batch; the calls beside it succeed and
survive a restart.
"""
import asyncio
import concurrent.futures
import json
import threading

import httpx
import pytest

from serverproc import ServerProcess

VALID, BAD, ROUNDS = 40, 10, 3
LONE_SURROGATE = "bad-\ud800-name"


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    server = ServerProcess(str(tmp_path_factory.mktemp("isolation"))).start()
    yield server
    server.kill()


def jsonrpc(client, method, *params):
    # json.dumps escapes the lone surrogate as "\ud800": valid JSON text, invalid Unicode.
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    reply = client.post("/jsonrpc", content=body.encode(),
                        headers={"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text   # a XenAPI answer, never a bare 500
    return reply.json()


def test_bad_writes_do_not_fail_valid_writes_beside_them(proc):
    x = proc.session().xenapi
    nets = [x.network.create({"name_label": f"net{i}", "other_config": {}})
            for i in range(VALID + BAD)]
    valid, bad = nets[:VALID], nets[VALID:]
    clients = [httpx.Client(base_url=proc.url, verify=False, timeout=30)
               for _ in range(VALID + BAD)]
    sessions = [jsonrpc(c, "session.login_with_password", "root",
                        proc.env["XAPI_ROOT_PASSWORD"], "1.0", "isolation")["result"]
                for c in clients]
    try:
        for round_ in range(ROUNDS):
            start = threading.Barrier(VALID + BAD)

            def write(i):
                net, value = ((valid[i], f"valid-{round_}-{i}") if i < VALID
                              else (bad[i - VALID], LONE_SURROGATE))
                start.wait()
                return jsonrpc(clients[i], "network.set_name_label", sessions[i], net, value)

            with concurrent.futures.ThreadPoolExecutor(VALID + BAD) as pool:
                replies = list(pool.map(write, range(VALID + BAD)))
            failed = [r["error"] for r in replies[:VALID] if "error" in r]
            assert failed == [], f"round {round_}: {len(failed)} valid writes failed: {failed[:3]}"
            for reply in replies[VALID:]:
                assert reply["error"]["message"] == "INVALID_VALUE", reply
    finally:
        for c in clients:
            c.close()
    expected = {net: f"valid-{ROUNDS - 1}-{i}" for i, net in enumerate(valid)}
    expected |= {net: f"net{VALID + i}" for i, net in enumerate(bad)}
    assert {net: x.network.get_name_label(net) for net in nets} == expected

    proc.kill()   # what was acknowledged is on disk: no shutdown needed
    proc.start()
    x = proc.session().xenapi
    assert {net: x.network.get_name_label(net) for net in nets} == expected


# -- the store by itself, without the wire's checks in front of it --------------------

def run_store(path, body):
    """Run `body(store)` on an open Store over the database at `path`."""
    from xapi_server.store import Store

    async def main():
        store = Store(str(path))
        store.open()
        try:
            return await body(store)
        finally:
            store.close()
    return asyncio.run(main())


def test_store_refuses_an_unstorable_value_to_its_own_caller_only(tmp_path):
    from xapi_server.errors import ApiError

    async def body(store):
        refs = [store.create("network", {"name_label": f"n{i}"}) for i in range(20)]
        await store.flush()

        async def valid(i):
            store.update("network", refs[i], name_label=f"valid{i}")
            await store.flush()

        async def bad():
            with pytest.raises(ApiError) as refused:
                store.update("network", refs[0], name_description=LONE_SURROGATE)
            assert refused.value.description[:2] == ["INVALID_VALUE", "network.name_description"]
            await store.flush()   # nothing of this call is pending: no error here

        await asyncio.gather(*(valid(i) for i in range(1, 20)), bad(),
                             *(valid(i) for i in range(0, 1)))
        return refs

    refs = run_store(tmp_path / "db", body)

    async def reread(store):
        return {ref: (store.get("network", ref, "name_label"),
                      store.get("network", ref, "name_description")) for ref in refs}
    assert run_store(tmp_path / "db", reread) == {
        ref: (f"valid{i}", "") for i, ref in enumerate(refs)}


def test_store_refuses_unknown_fields(tmp_path):
    async def body(store):
        vm = store.create("VM", {"name_label": "vm"})
        with pytest.raises(ValueError, match="powerstate"):
            store.update("VM", vm, powerstate="Running")
        with pytest.raises(ValueError, match="colour"):
            store.create("network", {"name_label": "n", "colour": "blue"})
        assert "powerstate" not in store.record("VM", vm)
        assert store.find("network", name_label="n") == []
        await store.flush()
    run_store(tmp_path / "db", body)
