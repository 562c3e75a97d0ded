"""A server in a network namespace of its own with the host-internal NAT network on, and
an "outside" namespace behind a veth that has no route back to the guests' subnet: what
the NAT network tests and the day-one walkthrough share.

    with nat_host(tmp_path_factory, "10.213.50.1/24", guest) as (proc, host_ns, out_ns):
        ...   # proc: a started ServerProcess reachable at proc.host:proc.port

The test reaches the server's API over one veth; the server's host reaches OUTSIDE over
another. Only masquerading can bring an answer from the outside back to a guest."""
import contextlib
import os
import subprocess

from serverproc import ServerProcess
from xapi_server.backends.hypervisor.libvirt_conn import embedded_uri

OUTSIDE = "10.99.0.2"


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


@contextlib.contextmanager
def nat_host(tmp_path_factory, subnet: str, guest: dict, slot: int = 0):
    """`slot` keeps two modules of one run apart (their names and addresses)."""
    tag = f"{os.getpid() % 10000}{slot}"
    host_ns, out_ns = f"xnath{tag}", f"xnato{tag}"
    api_net = 200 + (os.getpid() + 7 * slot) % 50
    sh("ip", "netns", "add", host_ns)
    sh("ip", "netns", "add", out_ns)
    try:
        sh("ip", "-n", host_ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"xnr{tag}", "type", "veth", "peer", "name", f"xnh{tag}",
           "netns", host_ns)
        sh("ip", "addr", "add", f"10.98.{api_net}.1/30", "dev", f"xnr{tag}")
        sh("ip", "link", "set", f"xnr{tag}", "up")
        sh("ip", "-n", host_ns, "addr", "add", f"10.98.{api_net}.2/30", "dev", f"xnh{tag}")
        sh("ip", "-n", host_ns, "link", "set", f"xnh{tag}", "up")
        sh("ip", "-n", host_ns, "link", "add", "uplink", "type", "veth", "peer", "name",
           "wan", "netns", out_ns)
        sh("ip", "-n", host_ns, "addr", "add", "10.99.0.1/24", "dev", "uplink")
        sh("ip", "-n", host_ns, "link", "set", "uplink", "up")
        sh("ip", "-n", out_ns, "addr", "add", f"{OUTSIDE}/24", "dev", "wan")
        sh("ip", "-n", out_ns, "link", "set", "wan", "up")
        sh("ip", "-n", out_ns, "link", "set", "lo", "up")
        data = str(tmp_path_factory.mktemp("xapi-nat"))
        proc = ServerProcess(data, libvirt_uri=embedded_uri(data), netns=host_ns,
                             host=f"10.98.{api_net}.2",
                             env={"XAPI_NAT_NETWORK": subnet,
                                  "XAPI_BOOT_DIRS": os.path.dirname(guest["kernel"])})
        proc.start()
        try:
            yield proc, host_ns, out_ns
        finally:
            proc.remove_vms_and_kill()
    finally:
        sh("ip", "link", "del", f"xnr{tag}", check=False)
        sh("ip", "netns", "del", host_ns, check=False)
        sh("ip", "netns", "del", out_ns, check=False)
