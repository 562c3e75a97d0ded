"""xe commands of issue 15's pool/host features (cli/commands/pool_features.py), run
in-process (cli.testing.Harness): a plugin call, editions, HA refusals and planner,
the display, status capabilities, certificate lists."""
import os
import sys

import pytest

from xapi_server.cli.testing import Harness

PLUGIN = f"""#!{sys.executable}
import sys, xmlrpc.client
params, method = xmlrpc.client.loads(sys.argv[1])
value = method + " " + ",".join(f"{{k}}={{v}}" for k, v in sorted(params[1].items()))
print(xmlrpc.client.dumps(({{"Status": "Success", "Value": value}},), methodresponse=True))
"""


@pytest.fixture(scope="module")
def xe(tmp_path_factory):
    base = tmp_path_factory.mktemp("xe-features")
    plugins = base / "plugins"
    plugins.mkdir()
    (plugins / "hello").write_text(PLUGIN)
    os.chmod(plugins / "hello", 0o755)
    h = Harness(str(base / "data"), libvirt_uri="test:///default", plugins_dir=str(plugins))
    yield h
    h.close()


def test_xe_features(xe):
    code, host_uuid, _ = xe.run("host-list", "--minimal")
    assert code == 0
    host_uuid = host_uuid.strip()
    assert xe.run("host-call-plugin", f"host-uuid={host_uuid}", "plugin=hello", "fn=greet",
                  "args:who=admin", "args:n=1") == (0, "greet n=1,who=admin\n", "")
    code, _, err = xe.run("host-call-plugin", f"host-uuid={host_uuid}", "plugin=nope",
                          "fn=x")
    assert code != 0 and "nope" in err
    assert xe.run("pool-apply-edition", "edition=free")[0] == 0
    code, _, err = xe.run("host-apply-edition", "edition=enterprise")
    assert code != 0 and "enterprise" in err
    code, _, err = xe.run("pool-ha-enable")
    assert code != 0 and ("CANNOT_CREATE_STATE_FILE" in err or "statefile" in err.lower())
    assert xe.run("pool-ha-compute-max-host-failures-to-tolerate") == (0, "0\n", "")
    assert xe.run("host-disable-display", f"uuid={host_uuid}") == \
        (0, "disable_on_reboot\n", "")
    assert xe.run("host-enable-display", f"uuid={host_uuid}") == (0, "enabled\n", "")
    code, out, _ = xe.run("host-get-system-status-capabilities", f"uuid={host_uuid}")
    assert code == 0 and "<system-status-capabilities>" in out
    assert xe.run("pool-certificate-list") == (0, "", "")
    assert xe.run("pool-crl-list") == (0, "", "")
