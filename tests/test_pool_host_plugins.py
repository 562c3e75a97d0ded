"""host.call_plugin, call_extension, has_extension (api/host_plugins.py) through the
real server, with plugins in a folder of the test's own: XenAPIPlugin's protocol (the
methodCall in argv[1], a Status struct on stdout), a plugin's own Failure raised as
is, and XENAPI_MISSING_PLUGIN / XENAPI_PLUGIN_FAILURE for what xapi refuses: a
missing or escaping name, a non-zero exit, garbage output, a timeout, too much output."""
import os
import sys
import time
import xmlrpc.client

import pytest

from sdk_failures import failure
from serverproc import ServerProcess

PLUGIN = f"""#!{sys.executable}
import sys, xmlrpc.client
params, method = xmlrpc.client.loads(sys.argv[1])
session, args = params
if method == "echo":
    answer = {{"Status": "Success", "Value": method + ":" + session[:10] + ":" +
              ",".join(f"{{k}}={{v}}" for k, v in sorted(args.items()))}}
elif method == "refuse":
    answer = {{"Status": "Failure", "ErrorDescription": ["VM_BAD_POWER_STATE", "a", "b"]}}
elif method == "crash":
    sys.stderr.write("it broke")
    sys.exit(3)
elif method == "garbage":
    print("not xml at all")
    sys.exit(0)
elif method == "slow":
    import time; time.sleep(30)
elif method == "flood":
    sys.stdout.write("x" * 100000)
    sys.exit(0)
print(xmlrpc.client.dumps((answer,), methodresponse=True))
"""

EXTENSION = f"""#!{sys.executable}
import sys, xmlrpc.client
params, method = xmlrpc.client.loads(sys.argv[1])
print(xmlrpc.client.dumps(("ext " + method + " " + str(params[0]),), methodresponse=True))
"""


def _install(folder, name, text, mode=0o755):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    base = tmp_path_factory.mktemp("xapi-plugins")
    plugins, extensions = str(base / "plugins"), str(base / "extensions")
    _install(plugins, "testplugin", PLUGIN)
    _install(plugins, "notexec", PLUGIN, mode=0o644)
    _install(extensions, "Ext.hello", EXTENSION)
    p = ServerProcess(str(base / "data"), env={
        "XAPI_PLUGINS_DIR": plugins, "XAPI_EXTENSIONS_DIR": extensions,
        "XAPI_PLUGIN_TIMEOUT": "2", "XAPI_PLUGIN_MAX_OUTPUT": "50000"}).start()
    p.base = base
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    session = proc.session()
    yield session.xenapi
    session.xenapi.session.logout()


def test_call_plugin_protocol(proc):
    session = proc.session()
    x = session.xenapi
    host = x.host.get_all()[0]
    result = x.host.call_plugin(host, "testplugin", "echo", {"b": "2", "a": "1"})
    assert result == f"echo:{session._session[:10]}:a=1,b=2"
    # through Async. too: the task's result is the plugin's string
    task = x.Async.host.call_plugin(host, "testplugin", "echo", {})
    while x.task.get_status(task) == "pending":
        time.sleep(0.1)
    assert x.task.get_status(task) == "success"
    assert "echo:" in xmlrpc.client.loads(
        "<methodResponse><params><param>" + x.task.get_result(task) +
        "</param></params></methodResponse>")[0][0]
    session.xenapi.session.logout()


def test_call_plugin_failures(x):
    host = x.host.get_all()[0]
    assert failure(x.host.call_plugin, host, "testplugin", "refuse", {}) == \
        ["VM_BAD_POWER_STATE", "a", "b"]
    for name in ("nosuch", "notexec", "../plugins/testplugin", ".hidden", ""):
        assert failure(x.host.call_plugin, host, name, "echo", {}) == \
            ["XENAPI_MISSING_PLUGIN", name]
    details = failure(x.host.call_plugin, host, "testplugin", "crash", {})
    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "non-zero exit"] and \
        details[3] == "it broke"
    details = failure(x.host.call_plugin, host, "testplugin", "garbage", {})
    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output"]
    assert details[2].strip() == "not xml at all"
    started = time.monotonic()
    assert failure(x.host.call_plugin, host, "testplugin", "slow", {})[:2] == \
        ["XENAPI_PLUGIN_FAILURE", "timeout"]
    assert time.monotonic() - started < 10
    assert failure(x.host.call_plugin, host, "testplugin", "flood", {})[:2] == \
        ["XENAPI_PLUGIN_FAILURE", "output too long"]
    assert failure(x.host.call_plugin, host, "testplugin", "echo",
                   {"big": "y" * 200000})[:2] == ["XENAPI_PLUGIN_FAILURE",
                                                  "arguments too long"]
    assert failure(x.host.call_plugin, "OpaqueRef:nope", "testplugin", "echo", {})[0] == \
        "HANDLE_INVALID"
    # the server is still fine, and no plugin process is left behind
    assert x.host.call_plugin(host, "testplugin", "echo", {}).startswith("echo:")


def test_extensions(x):
    host, pool = x.host.get_all()[0], x.pool.get_all()[0]
    assert x.host.has_extension(host, "Ext.hello")
    assert x.pool.has_extension(pool, "Ext.hello")
    assert not x.host.has_extension(host, "Ext.missing")
    call = xmlrpc.client.dumps(("arg1",), "Ext.hello")
    answer = x.host.call_extension(host, call)
    assert xmlrpc.client.loads(answer)[0] == ("ext Ext.hello arg1",)
    assert failure(x.host.call_extension, host,
                   xmlrpc.client.dumps((), "Ext.missing")) == \
        ["XENAPI_MISSING_PLUGIN", "Ext.missing"]
    assert failure(x.host.call_extension, host, "<not a call")[:2] == \
        ["XENAPI_PLUGIN_FAILURE", "failed to parse the call"]
