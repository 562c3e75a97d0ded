"""Event tokens never go backwards across a restart on the same database (SQLite and
PostgreSQL): the store keeps a generation ceiling in the database, reserved ahead and
committed before any token above it is handed out, and a server that loads the
database resumes above it, as a new pool coordinator must."""
from pg_server import database_url, store_backend  # noqa: F401 (fixtures: both backends)
from serverproc import ServerProcess


def event_from(x, token, timeout=0.0):
    return getattr(x.event, "from")(["network"], token, timeout)


def generation(token: str) -> int:
    return int(token.partition(",")[0])


def test_tokens_keep_increasing_across_restarts(tmp_path, database_url):  # noqa: F811
    proc = ServerProcess(str(tmp_path / "data"), database_url=database_url).start()
    tokens = []
    try:
        for round in range(2):
            x = proc.session().xenapi
            tokens.append(event_from(x, "")["token"])
            net = x.network.create({"name_label": f"round{round}", "other_config": {}})
            # Changes that are never written (sessions, tasks) move the generation too.
            for _ in range(10):
                proc.session().xenapi.session.logout()
            x.Async.network.create({"name_label": f"async{round}", "other_config": {}})
            reply = event_from(x, tokens[-1])
            assert net in [e["ref"] for e in reply["events"]]
            tokens.append(reply["token"])
            tokens.append(x.event.inject("network", net))
            proc.kill()   # no shutdown: only what the database already holds counts
            proc.start()
        x = proc.session().xenapi
        reply = event_from(x, tokens[-1])
        tokens.append(reply["token"])
        # A token from before the restart still works: everything is sent again.
        assert net in {e["ref"] for e in reply["events"]}
    finally:
        proc.kill()
    seen = [generation(t) for t in tokens]
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
