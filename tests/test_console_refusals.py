"""Consoles that do not answer (issue 14): on the shared server (libvirt's test driver, whose
domains have no VNC server and no console stream) a running VM has its console records,
but CONNECT gets xapi's 404 header block and `xe console` says what xapi's xe says; a
picture of the screen is still the driver's PNG."""
import os
import subprocess
import sys

import pytest

from serverproc import ROOT_PASSWORD, tls_connect

XE = os.path.join(os.path.dirname(sys.executable), "xe")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n"


@pytest.fixture
def sdk(server):
    session = server.session()
    yield session
    session.xenapi.session.logout()


@pytest.fixture
def running(sdk):
    x = sdk.xenapi
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, "console-refusals")
    x.VM.set_is_a_template(vm, False)
    x.VM.start(vm, False, False)
    yield vm
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)


def request(port, line: str, session: str) -> bytes:
    with tls_connect(port) as sock:
        sock.sendall(f"{line}\r\nCookie: session_id={session}\r\n\r\n".encode())
        data = b""
        while piece := sock.recv(65536):
            data += piece
    return data


def test_connect_to_a_console_nothing_serves_is_404(server, sdk, running):
    x = sdk.xenapi
    rfb, vt100 = x.VM.get_consoles(running)
    for console in (rfb, vt100):
        uuid = x.console.get_uuid(console)
        assert request(server.port, f"CONNECT /console?uuid={uuid} HTTP/1.0",
                       sdk._session) == NOT_FOUND


def test_xe_console_says_the_console_is_not_available(server, running, tmp_path):
    (tmp_path / "cfg").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    done = subprocess.run([XE, "-s", "127.0.0.1", "-p", str(server.port), "-pw", ROOT_PASSWORD,
                           "--no-verify", "console", "vm=console-refusals"], env=env,
                          input=b"", capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"Server replied with HTTP 404: the console is not available" in done.stderr
    assert b"Failed to connect to console." in done.stdout + done.stderr


def test_vncsnapshot_passes_the_drivers_png_on(server, sdk, running):
    uuid = sdk.xenapi.VM.get_uuid(running)
    head, _, body = request(server.port, f"GET /vncsnapshot?uuid={uuid} HTTP/1.0",
                            sdk._session).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-type: image/png" in head.lower()
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
