"""The web console's Console tab on a real booting guest (tests/guest, QEMU TCG): started
from the UI's Start button, noVNC draws the guest's screen on a canvas whose pixels
change as it boots; the serial view shows the guest's serial port and what is typed in
it runs in the guest; Ctrl-Alt-Del reaches the guest (it reboots); then Shut down from
the UI while an `xe` rename shows live. Last, the New VM wizard makes a VM that really
boots its install media: the tiny guest on a bootable ISO (guest/boot_iso.py) in an
ISO SR, through the BIOS, drawn on the Console tab the wizard opens."""
import re
import time

import pytest

from guest.boot_iso import install_iso, missing_tools
from guest.harness import MARK, console, guest, make_vm, real, wait_booted, wait_for
from serverproc import logged_in
from webui_harness import browser, built_ui, checked_page, login, new_vm_dialog, screenshot, xe

__all__ = ["browser", "built_ui", "guest", "real"]   # fixtures

pytestmark = pytest.mark.slow

# The canvas's pixels as a short digest (and how many colours it shows), read in the page.
CANVAS_STATE = """() => {
  const c = document.querySelector('.vnc-screen canvas');
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    h = (h * 31 + d[i] + (d[i + 1] << 8) + (d[i + 2] << 16)) | 0;
    if (i % 64 === 0) colours.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
  }
  return [h, colours.size, c.width, c.height];
}"""


@pytest.fixture(scope="module")
def x(real):
    yield from logged_in(real.session())


@pytest.fixture(scope="module")
def page(browser, real):
    yield from checked_page(browser, real)


@pytest.fixture(scope="module")
def vm(x, guest):
    vm = make_vm(x, guest, "web-console-guest")
    x.VM.set_PV_args(vm, f"{guest['cmdline']} guestshell")
    return vm


def canvas_states(p, seconds: float) -> list:
    states, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        state = p.evaluate(CANVAS_STATE)
        if state and (not states or state[0] != states[-1][0]):
            states.append(state)
        time.sleep(0.2)
    return states


def serial_run(p, command: str, expect: str, timeout: float = 20) -> str:
    """Type `command` into the serial view; the view's text once `expect` matches."""
    view = p.locator(".serial-view")
    view.focus()
    p.keyboard.type(command)
    p.keyboard.press("Enter")
    wait_for(lambda: re.search(expect, view.inner_text()), timeout, f"{expect!r} in the view")
    return view.inner_text()


def test_console_tab_shows_the_booting_screen_and_the_serial_port(page, real, x, vm):
    p = login(page)
    p.get_by_role("treeitem", name="web-console-guest", exact=True).click()
    p.get_by_role("button", name="Start", exact=True).click()
    p.get_by_role("tab", name="Console").click()
    p.get_by_role("status").filter(has_text="Connected").wait_for(timeout=30000)
    states = canvas_states(p, 4)
    wait_booted(real, x, vm)
    states += canvas_states(p, 2)
    assert len(states) >= 2, f"the canvas never changed: {states}"
    assert max(s[1] for s in states) > 1, "the screen stayed one colour"
    assert states[-1][2] >= 640 and states[-1][3] >= 350
    screenshot(p, "vm-console")
    p.get_by_role("radio", name="Serial console").click()
    p.get_by_text("Serial console: Connected").wait_for(timeout=15000)
    text = serial_run(p, "echo typed-$((6*7))", r"typed-42")
    assert "typed-42" in text.split("echo typed-")[-1]   # the guest's answer, not the echo
    screenshot(p, "vm-serial")
    # Ctrl-Alt-Del reaches the guest's keyboard: the tiny guest's kernel reboots on it
    # (its init leaves Ctrl-Alt-Del to the kernel), so it boots a second time.
    p.get_by_role("radio", name="Graphical console").click()
    p.get_by_role("status").filter(has_text="Connected").wait_for(timeout=30000)
    p.get_by_role("button", name="Ctrl-Alt-Del").click()
    wait_booted(real, x, vm, count=2)


def test_performance_tab_draws_the_guests_metrics(page, real, x, vm):
    """CPU, memory, disk and network charts from /rrd_updates, with the guest's own
    series (cpu0, memory) drawn on uPlot's canvases."""
    p = page.page
    p.get_by_role("tab", name="Performance").click()
    for title in ("CPU", "Memory", "Disk", "Network"):
        p.get_by_role("figure").filter(has_text=title).first.wait_for(timeout=30000)
    legend = p.locator(".chart").filter(has_text="CPU").locator(".u-legend")
    legend.filter(has_text="cpu0").wait_for(timeout=30000)
    assert p.locator(".chart").filter(has_text="Memory").locator(".u-legend") \
        .filter(has_text="memory").count() == 1
    assert p.locator(".chart").filter(has_text="CPU").locator("canvas").count() == 1
    # the tiny guest boots from a kernel with no disk or NIC: those charts say so
    for title in ("Disk", "Network"):
        assert p.locator(".chart").filter(has_text=title).filter(
            has_text="No data sources.").count() == 1
    screenshot(p, "vm-performance")


def test_shut_down_from_the_ui_while_xe_renames_it(page, real, x, vm):
    p = page.page
    p.get_by_role("tab", name="General").click()
    p.get_by_role("button", name="Shut down", exact=True).click()
    xe(real, "vm-param-set", f"uuid={x.VM.get_uuid(vm)}", "name-label=web-console-renamed")
    p.get_by_role("treeitem", name="web-console-renamed", exact=True).wait_for(timeout=5000)
    # a clean shutdown of the tiny guest may not be honoured: then Force shut down
    try:
        p.get_by_role("status").filter(has_text="Halted").wait_for(timeout=20000)
    except Exception:
        p.get_by_role("button", name="Force shut down", exact=True).click()
        p.get_by_role("status").filter(has_text="Halted").wait_for(timeout=20000)
    assert x.VM.get_power_state(vm) == "Halted"
    assert p.get_by_role("heading", name="web-console-renamed").is_visible()


@pytest.fixture
def fresh_page(browser, real):
    yield from checked_page(browser, real)


def test_wizard_vm_boots_from_its_install_iso(fresh_page, real, x, guest, tmp_path):
    why = missing_tools()
    if why:
        pytest.skip(why)
    library = tmp_path / "isos"
    library.mkdir()
    install_iso(guest, library, "tiny-installer.iso", args="")
    host = x.host.get_all()[0]
    x.SR.create(host, {"location": str(library)}, "0", "Guest ISOs", "", "iso", "iso", False, {})
    p = login(fresh_page)
    dialog = new_vm_dialog(p, "web-wizard-guest", Memory="128",
                           Install_media="tiny-installer.iso", Disk_size="0", Network="None")
    dialog.get_by_role("button", name="Create").click()
    # the wizard opens the new VM's Console tab
    p.get_by_role("heading", name="web-wizard-guest").wait_for(timeout=60000)
    vm = x.VM.get_by_name_label("web-wizard-guest")[0]
    assert x.VM.get_power_state(vm) == "Running" and x.VM.get_PV_kernel(vm) == ""
    p.get_by_role("status").filter(has_text="Connected").wait_for(timeout=30000)
    states = canvas_states(p, 3)
    wait_booted(real, x, vm, timeout=120)
    states += canvas_states(p, 2)
    assert len(states) >= 2, f"the canvas never changed: {states}"
    text = console(real, x, vm)
    # isolinux started the ISO's kernel, and the guest found its CD
    assert "BOOT_IMAGE=/vmlinuz" in text and MARK + "MEDIA sr0" in text, text[-2000:]
    screenshot(p, "wizard-guest-console")
    x.VM.hard_shutdown(vm)
