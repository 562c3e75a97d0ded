"""Tasks belong to the user who made them (issue 12, item 12), as in xapi: only that
user, or a role with "task.destroy/any" (pool-operator and above), may cancel, destroy
or change a task; a user has a bounded number of pending tasks; progress stays in 0..1.
"""
import json

import httpx
import pytest
import XenAPI

from serverproc import ServerProcess, add_local_user

CAP = 5
DENIED = ["RBAC_PERMISSION_DENIED", "task.destroy/any",
          "No permission in user session. (Roles with this permission: pool-admin, "
          "pool-operator)"]


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    server = ServerProcess(str(tmp_path_factory.mktemp("tasks")),
                           env={"XAPI_MAX_PENDING_TASKS_PER_USER": str(CAP)}).start()
    root = server.session().xenapi
    for user, role in (("reader", "read-only"), ("other", "read-only"),
                       ("operator", "pool-operator")):
        add_local_user(root, user, role, f"{user}-pw")
    yield server
    server.kill()


def login(proc, user):
    return proc.session(user, f"{user}-pw").xenapi


def details(call, *args):
    with pytest.raises(XenAPI.Failure) as failure:
        call(*args)
    return failure.value.details


def test_only_the_owner_or_an_operator_changes_a_task(proc):
    reader, other, operator = (login(proc, u) for u in ("reader", "other", "operator"))
    root = proc.session().xenapi
    mine = reader.task.create("mine", "")
    roots = root.task.create("root's", "")
    for task in (mine, roots):
        for call, args in ((other.task.cancel, ()), (other.task.destroy, ()),
                           (other.task.set_status, ("success",)),
                           (other.task.set_progress, (0.5,)),
                           (other.task.set_result, ("<value>x</value>",)),
                           (other.task.set_error_info, (["FORGED"],)),
                           (other.task.set_other_config, ({"k": "v"},)),
                           (other.task.add_to_other_config, ("k", "v"))):
            assert details(call, task, *args) == DENIED, call
        record = root.task.get_record(task)
        assert (record["status"], record["progress"], record["other_config"]) == \
            ("pending", 0.0, {})
    assert details(reader.task.destroy, roots) == DENIED

    # The owner changes its own task; an operator and root change anyone's.
    reader.task.set_progress(mine, 0.25)
    reader.task.add_to_other_config(mine, "note", "mine")
    operator.task.set_progress(mine, 0.5)
    assert root.task.get_progress(mine) == 0.5
    assert "task.destroy/any" in root.role.get_permissions_name_label(
        root.role.get_by_name_label("pool-operator")[0])
    operator.task.destroy(mine)
    root.task.destroy(roots)
    assert details(reader.task.destroy, mine) == ["HANDLE_INVALID", "task", mine]


def test_async_tasks_belong_to_their_caller(proc):
    root, other = proc.session().xenapi, login(proc, "other")
    task = root.Async.network.create({"name_label": "async-owned", "other_config": {}})
    assert details(other.task.destroy, task) == DENIED
    assert details(other.task.cancel, task) == DENIED
    root.task.destroy(task)


def test_set_progress_only_takes_a_fraction(proc):
    reader = login(proc, "reader")
    task = reader.task.create("progress", "")
    for bad in (1.5, -0.1, 1e308):
        assert details(reader.task.set_progress, task, bad)[:2] == ["INVALID_VALUE", "progress"]
    reader.task.set_progress(task, 1.0)
    session = proc.session("reader", "reader-pw")._session
    with httpx.Client(base_url=proc.url, verify=False, timeout=30) as client:
        body = ('{"jsonrpc": "2.0", "method": "task.set_progress", "id": 1, "params": ['
                + json.dumps(session) + ", " + json.dumps(task) + ", NaN]}")
        reply = client.post("/jsonrpc", content=body.encode(),
                            headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    assert reply.json()["error"]["message"] == "INVALID_VALUE"
    assert reader.task.get_progress(task) == 1.0
    reader.task.destroy(task)


def test_pending_tasks_are_capped_per_user(proc):
    reader, other = login(proc, "reader"), login(proc, "other")
    mine = [reader.task.create(f"t{i}", "") for i in range(CAP)]
    assert details(reader.task.create, "one too many", "") == ["TOO_MANY_PENDING_TASKS"]
    theirs = other.task.create("another user's", "")   # the cap is per user
    reader.task.destroy(mine.pop())
    mine.append(reader.task.create("room again", ""))
    for task in mine:
        reader.task.destroy(task)
    other.task.destroy(theirs)


def test_async_calls_count_against_the_cap(proc):
    operator = login(proc, "operator")
    held = [operator.task.create(f"t{i}", "") for i in range(CAP)]
    assert details(operator.Async.network.create, {"name_label": "n", "other_config": {}}) \
        == ["TOO_MANY_PENDING_TASKS"]
    assert not [n for n in operator.network.get_all_records().values()
                if n["name_label"] == "n"]
    for task in held:
        operator.task.destroy(task)
