"""Consoles end to end (issue 14, Consoles): one tiny guest with a VGA card and a shell on
its serial port, booted once for the module on qemu:///system, reached through the real
server over TLS.

- an RFB 3.3 client of our own (version, security None, FramebufferUpdateRequest, Raw)
  reads the screen through `CONNECT /console`: not blank, and different after the guest
  wrote on its VGA text screen (typed into its serial shell through the vt100 console);
- the same through `GET /console` upgraded to a WebSocket, with xapi's exact 101 reply,
  server frames of at most 1024 bytes, masked and unmasked client frames, and once more
  with the `websockets` library as a strict RFC 6455 client (subprotocol `binary`);
- `xe console` (the real client, stdin a pipe): a typed command runs in the guest and
  its output comes back; Ctrl-] leaves; stdin at its end leaves too;
- console records (rfb first, then vt100, xapi's location) while the VM runs, none once
  it stops; /vncsnapshot is a PNG of the screen; 401/403/500/501/503 as xapi; the idle
  timeout; no TCP port is opened by QEMU.
"""
import base64
import os
import re
import ssl
import subprocess
import sys
import termios
import threading
import time

import pytest

from guest.harness import (guest, guest_vm, real, run_in_guest, sdk, wait_booted,  # noqa: F401
                           wait_for, virsh)
from serverproc import ROOT_PASSWORD, add_local_user

from console_client import (OK_200, Buffered, Rfb, client_frame, colours, connect, http_get,
                            png_size, screens, wait_screen_shows_more_than_the_cursor,
                            WsIO, ws_open)

pytestmark = pytest.mark.slow

XE = os.path.join(os.path.dirname(sys.executable), "xe")


@pytest.fixture(scope="module")
def x(sdk):
    return sdk.xenapi


@pytest.fixture(scope="module")
def ref(sdk):
    """The session's ref, for cookies and queries."""
    return sdk._session


@pytest.fixture(scope="module")
def vm(real, x, guest):
    """The module's guest: running, booted, with a shell on its serial console."""
    vm = guest_vm(x, guest, "console-guest", provision=True, args="guestshell")
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    return vm


@pytest.fixture(scope="module")
def uuid(x, vm):
    return x.VM.get_uuid(vm)


# -- typing into the guest's serial shell through the vt100 console -------------------

def vt100_console(x, vm):
    consoles = x.VM.get_consoles(vm)
    return next(c for c in consoles if x.console.get_protocol(c) == "vt100")


def show_on_screen(real, x, ref, vm, text: str):
    """The guest writes `text` on its VGA text screen (/dev/tty1)."""
    run_in_guest(real, x, ref, vm, f"echo {text} > /dev/tty1; echo wrote-$((1+1))-{text}",
                 f"wrote-2-{text}")


# -- records ---------------------------------------------------------------------------

def test_a_running_vm_has_rfb_then_vt100_consoles(real, x, vm, uuid, ref):
    consoles = x.VM.get_consoles(vm)
    records = [x.console.get_record(c) for c in consoles]
    assert [r["protocol"] for r in records] == ["rfb", "vt100"]
    host = x.host.get_record(x.VM.get_resident_on(vm))
    for ref, rec in zip(consoles, records):
        assert rec["VM"] == vm
        assert rec["location"] == (f"https://{host['address']}:{real.port}"
                                   f"/console?uuid={rec['uuid']}")
    halted = guest_vm(x, None, "console-halted")
    try:
        assert x.VM.get_consoles(halted) == []
    finally:
        x.VM.destroy(halted)


# -- RFB over CONNECT ------------------------------------------------------------------

def test_connect_gives_raw_rfb_and_the_screen_follows_the_guest(real, x, vm, uuid, ref):
    sock, head, rest = connect(real.port, f"/console?uuid={uuid}&session_id={ref}")
    try:
        assert head == OK_200                    # exactly xapi's header block
        rfb = Rfb(Buffered(sock, rest))
        assert (rfb.width, rfb.height) >= (640, 350)
        before = screens(rfb)
        assert colours(before[0]) > 1, "the screen is blank"
        show_on_screen(real, x, ref, vm, "CONNECT-MARKER")
        wait_screen_shows_more_than_the_cursor(rfb, before)
    finally:
        sock.close()


def test_connect_by_console_ref_and_uuid(real, x, vm, ref):
    rfb_console = x.VM.get_consoles(vm)[0]
    for query in (f"ref={rfb_console}", f"ref={vm}",
                  f"uuid={x.console.get_uuid(rfb_console)}"):
        sock, head, rest = connect(real.port, f"/console?{query}", ref)
        try:
            assert head == OK_200, query
            assert Rfb(Buffered(sock, rest)).width > 0
        finally:
            sock.close()


# -- RFB over a WebSocket --------------------------------------------------------------

def test_websocket_gives_rfb_in_binary_frames(real, x, vm, uuid, ref):
    # The session in the query, as XO Lite and noVNC send it.
    sock, rest = ws_open(real.port, f"/console?uuid={uuid}&session_id={ref}", None)
    try:
        io = WsIO(sock, rest)
        rfb = Rfb(io)
        before = screens(rfb)
        assert colours(before[0]) > 1
        assert io.largest == 1024                  # a whole screen came in 1 KiB frames
        io.mask = False                            # xapi's proxy takes unmasked frames too
        show_on_screen(real, x, ref, vm, "WEBSOCKET-MARKER")
        wait_screen_shows_more_than_the_cursor(rfb, before)
        sock.sendall(client_frame(b"", True, opcode=8))     # close ends the session
        sock.settimeout(10)
        while sock.recv(65536):
            pass
    finally:
        sock.close()


def test_a_strict_websocket_client_speaks_rfb(real, x, uuid, ref):
    from websockets.sync.client import connect as ws_connect
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"wss://127.0.0.1:{real.port}/console?uuid={uuid}"
    with ws_connect(url, ssl=ctx, subprotocols=["binary"], open_timeout=30,
                    additional_headers={"Cookie": f"session_id={ref}"}) as ws:
        assert ws.subprotocol == "binary"

        class Io:
            buf = bytearray()

            def recv_exact(self, n):
                while len(self.buf) < n:
                    message = ws.recv(timeout=30)
                    assert isinstance(message, bytes)
                    self.buf += message
                data = bytes(self.buf[:n])
                del self.buf[:n]
                return data

            def send(self, data):
                ws.send(data)
        assert colours(Rfb(Io()).screen()) > 1


def test_upgrade_refusals(real, x, vm, uuid, ref):
    sock, head, _ = connect(real.port, f"/console?uuid={uuid}", ref,
                            method="GET", version="1.1")
    sock.close()
    assert head == (b"HTTP/1.0 501 Method Not Implemented\r\nConnection: close\r\n"
                    b"Cache-Control: no-cache, no-store\r\n\r\n")


# -- xe console ------------------------------------------------------------------------

def xe_env(tmp_path):
    (tmp_path / "cfg").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    return env


def xe_console(real, tmp_path, *selector, **popen):
    return subprocess.Popen([XE, "-s", "127.0.0.1", "-p", str(real.port), "-pw", ROOT_PASSWORD,
                             "--no-verify", "console", *selector], env=xe_env(tmp_path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def test_xe_console_runs_a_typed_command_and_ctrl_bracket_leaves(real, x, vm, tmp_path):
    proc = xe_console(real, tmp_path, "vm=console-guest")
    out = bytearray()
    reader = threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True)
    reader.start()
    try:
        proc.stdin.write(b"echo typed-$((6*7))-back\n")
        proc.stdin.flush()
        wait_for(lambda: b"typed-42-back" in out, 30, "the command's output through xe")
        proc.stdin.write(b"\x1d")                 # Ctrl-]
        proc.stdin.flush()
        assert proc.wait(20) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"typed-$((6*7))-back" in out          # the guest's tty echoed what was typed


def _pump(stream, out: bytearray):
    while data := stream.read1(4096):
        out.extend(data)


def test_xe_console_on_a_terminal_is_raw_and_restores_it(real, x, vm, tmp_path):
    """stdin and stdout a pseudo-terminal, as for a person: Enter sends \\r (raw mode:
    the guest's own tty turns it into a newline), Ctrl-] leaves, the terminal's
    settings are put back."""
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([XE, "-s", "127.0.0.1", "-p", str(real.port), "-pw",
                             ROOT_PASSWORD, "--no-verify", "console", "vm=console-guest"],
                            env=xe_env(tmp_path), stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE)
    out = bytearray()

    def pump():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            out.extend(data)
    threading.Thread(target=pump, daemon=True).start()
    try:
        wait_for(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON, 20,
                 "raw mode on the terminal")
        os.write(master, b"echo tty-$((5*5))-ok\r")
        wait_for(lambda: b"tty-25-ok" in out, 30, "the command's output on the terminal")
        os.write(master, b"\x1d")
        assert proc.wait(20) == 0, proc.stderr.read().decode()
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(slave)
        os.close(master)


def test_xe_console_with_stdin_at_its_end(real, x, vm, uuid, tmp_path):
    proc = xe_console(real, tmp_path, f"uuid={uuid}")
    out, err = proc.communicate(b"echo piped-$((7*6))-out\n", timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"piped-42-out" in out


def test_xe_console_without_a_text_console(real, x, tmp_path):
    halted = guest_vm(x, None, "console-none")
    try:
        proc = xe_console(real, tmp_path, "vm=console-none")
        out, err = proc.communicate(b"", timeout=60)
        assert proc.returncode == 1
        assert b"No text console available" in out + err
    finally:
        x.VM.destroy(halted)


# -- /vncsnapshot ----------------------------------------------------------------------

def test_vncsnapshot_is_a_png_of_the_screen(real, x, vm, uuid, ref):
    head, body = http_get(real.port, f"/vncsnapshot?uuid={uuid}", ref)
    assert head.startswith("HTTP/1.1 200"), head
    assert "content-type: image/png" in head.lower()
    width, height = png_size(body)
    sock, _, rest = connect(real.port, f"/console?uuid={uuid}", ref)
    with sock:
        rfb = Rfb(Buffered(sock, rest))
    assert (width, height) == (rfb.width, rfb.height)


# -- who may connect, and to what -------------------------------------------------------

@pytest.fixture(scope="module")
def readonly(real, x):
    add_local_user(x, "console-ro", "read-only", "ro-password-1")
    s = real.session("console-ro", "ro-password-1")
    yield s._session
    s.xenapi.session.logout()


def test_auth_and_rbac(real, x, vm, uuid, readonly):
    for method, version in (("CONNECT", "1.0"), ("GET", "1.1")):
        sock, head, _ = connect(real.port, f"/console?uuid={uuid}", method=method,
                                version=version)
        sock.close()
        assert head.startswith(b"HTTP/1.1 401") or head.startswith(b"HTTP/1.0 401"), head
        sock, head, _ = connect(real.port, f"/console?uuid={uuid}", readonly, method=method,
                                version=version, headers=("Upgrade: websocket",
                                                          "Sec-WebSocket-Key: eA=="))
        sock.close()
        assert b" 403 " in head.split(b"\r\n")[0], head
    head, _ = http_get(real.port, f"/vncsnapshot?uuid={uuid}", readonly)
    assert " 403 " in head.split("\r\n")[0]
    # vm-operator is the weakest role that may connect; HTTP Basic works too.
    add_local_user(x, "console-op", "vm-operator", "op-password-1")
    basic = base64.b64encode(b"console-op:op-password-1").decode()
    sock, head, rest = connect(real.port, f"/console?uuid={uuid}",
                               headers=(f"Authorization: Basic {basic}",))
    with sock:
        assert head == OK_200
        assert Rfb(Buffered(sock, rest)).width > 0


def test_unknown_or_halted_vm_is_xapis_500(real, x, ref):
    halted = guest_vm(x, None, "console-500")
    try:
        for query in ("uuid=00000000-0000-0000-0000-000000000000", f"ref={halted}",
                      f"uuid={x.VM.get_uuid(halted)}", "nothing=1"):
            sock, head, _ = connect(real.port, f"/console?{query}", ref)
            sock.close()
            assert head.startswith(b"HTTP/1.1 500 Internal Error"), (query, head)
    finally:
        x.VM.destroy(halted)


def test_limit_console_sessions(real, x, vm, uuid, ref):
    pool = x.pool.get_all()[0]
    first, head, _ = connect(real.port, f"/console?uuid={uuid}", ref)
    try:
        assert head == OK_200
        x.pool.set_limit_console_sessions(pool, True)   # counts the one already open
        sock, head, body = connect(real.port, f"/console?uuid={uuid}", ref)
        while b"currently connected" not in body:   # the body may come with the head
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
        sock.close()
        assert head.startswith(b"HTTP/1.0 503 Connection Limit Exceeded\r\n"), head
        assert b"User 'root' is currently connected" in body
        sock, head, _ = connect(real.port, f"/console?uuid={uuid}", ref,
                                method="GET", version="1.1",
                                headers=("Upgrade: websocket", "Sec-WebSocket-Key: eA=="))
        sock.close()
        assert head == (b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n"
                        b"Cache-Control: no-cache, no-store\r\n\r\n")
    finally:
        x.pool.set_limit_console_sessions(pool, False)
        first.close()


def test_idle_sessions_are_closed(real, x, vm, uuid, ref):
    pool = x.pool.get_all()[0]
    x.pool.set_vm_console_idle_timeout(pool, "2")
    try:
        idle, _, rest = connect(real.port, f"/console?uuid={uuid}", ref)
        busy, _, busy_rest = connect(real.port, f"/console?uuid={uuid}", ref)
        with idle, busy:
            idle_rfb, busy_rfb = Rfb(Buffered(idle, rest)), Rfb(Buffered(busy, busy_rest))
            start = time.monotonic()
            idle_rfb.screen()                      # screen updates are no activity
            for _ in range(8):
                busy_rfb.key(0xFFE1)               # Shift: activity, harmless to the guest
                time.sleep(0.5)
            idle.settimeout(10)
            with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
                while True:
                    idle_rfb.io.recv_exact(65536)
            assert time.monotonic() - start < 12
            assert busy_rfb.screen()               # still open after twice the timeout
    finally:
        x.pool.set_vm_console_idle_timeout(pool, "0")


def test_no_vnc_tcp_port_is_open(real, x, uuid):
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    assert "qemu" not in listening, listening
    xml = virsh("dumpxml", f"xapi-{uuid}")
    assert re.search(r"<graphics type='vnc' socket='/[^']+'", xml), xml
    assert "port=" not in re.search(r"<graphics[^>]*>", xml).group(0)
    assert re.search(r"<video>\s*<model type='vga'", xml), xml
    assert re.search(r"<serial type='pty'>.*?<log file='[^']+consoles/" + uuid +
                     r"\.log' append='on'/>", xml, re.S), xml


def test_consoles_go_when_the_vm_stops(real, x, vm, ref):
    consoles = x.VM.get_consoles(vm)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_consoles(vm) == []
    for ref in consoles:
        with pytest.raises(Exception, match="HANDLE_INVALID"):
            x.console.get_record(ref)
