"""The web console (ui/, served at GET / by http/webui.py) in Debian's Chromium against
the real server on libvirt's test driver: how it is served (CSP, cache headers, gzip, no
escape from ui/dist, a page saying how to build it when it is not), the login page
(labels, the certificate's fingerprint, a wrong password), the live tree (an `xe`
rename shows without reload), the VM view (tabs, lifecycle buttons from
allowed_operations, editable properties), a read-only user, logout and an expired
session. The guest's screen in the Console tab: test_webui_guest.py."""
import asyncio
import os
import re
import subprocess
import time
import types

import httpx
import pytest

from guest.harness import guest_vm
from serverproc import ServerProcess, add_local_user, logged_in, tls_connect
from webui_harness import (Page, browser, built_ui, certificate_fingerprint, checked_page, login,
                          new_vm_dialog, progress_seen, screenshot, slow_uploads, xe)
from xapi_server.config import Settings
from xapi_server.http import webui

__all__ = ["browser", "built_ui"]   # fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("webui"))).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def x(server):
    yield from logged_in(server.session())


@pytest.fixture(scope="module")
def users(x):
    add_local_user(x, "web-reader", "read-only", "reader-pw-1")
    add_local_user(x, "web-admin", "pool-admin", "admin-pw-1")
    return {"reader": ("web-reader", "reader-pw-1"), "admin": ("web-admin", "admin-pw-1")}


@pytest.fixture
def page(browser, server):
    yield from checked_page(browser, server)


def vm_named(x, name):
    return guest_vm(x, None, name)   # a halted VM from "Other install media"


# -- how it is served -------------------------------------------------------------------

def test_index_and_assets_carry_csp_cache_headers_and_the_fingerprint(server, built_ui):
    with httpx.Client(verify=False, timeout=30) as http:
        index = http.get(f"{server.url}/")
        assert index.status_code == 200
        csp = index.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert index.headers["cache-control"] == "no-cache"
        assert index.headers["x-content-type-options"] == "nosniff"
        meta = re.search(r'name="xapi-certificate-sha256" content="([^"]*)"', index.text)
        assert meta and meta.group(1) == certificate_fingerprint(server)
        assert "<script>" not in index.text and "<style" not in index.text   # nothing inline
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in assets:
            plain = http.get(f"{server.url}{asset}", headers={"accept-encoding": "identity"})
            assert plain.status_code == 200
            assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert "content-encoding" not in plain.headers
            kind = "text/javascript" if asset.endswith(".js") else "text/css"
            assert plain.headers["content-type"] == kind
            packed = http.get(f"{server.url}{asset}", headers={"accept-encoding": "gzip"})
            assert packed.headers["content-encoding"] == "gzip"   # the build-time .gz
            assert packed.content == plain.content    # httpx undid the gzip
            assert int(packed.headers["content-length"]) < len(plain.content)
        assert http.get(f"{server.url}/assets/nothing.js").status_code == 404
        assert http.get(f"{server.url}/index.html").status_code == 200


def raw_get(server, path: str) -> bytes:
    sock = tls_connect(server.port)
    try:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out
    finally:
        sock.close()


def test_nothing_outside_ui_dist_and_no_hidden_files(server, built_ui):
    for path in ("/../pyproject.toml", "/assets/../../pyproject.toml",
                 "/%2e%2e/pyproject.toml", "/assets/", "/.vite/manifest.json",
                 "/..%2fpyproject.toml", "/assets/%00index.html"):
        reply = raw_get(server, path)
        assert reply.startswith(b"HTTP/1.1 404"), (path, reply[:80])
        assert b"[project]" not in reply


def test_without_a_build_the_page_says_how_to_build_it(tmp_path):
    """The server runs without ui/dist: GET / says how to build the console, any other
    GET is 404 (and the API never depends on it)."""
    app = types.SimpleNamespace(server=types.SimpleNamespace(
        settings=Settings(web_dir=str(tmp_path / "no-dist")),
        tls=types.SimpleNamespace(cert_path=str(tmp_path / "none.crt"))))
    for path, status in (("/", 200), ("/assets/index.js", 404)):
        sent = []

        async def send(message):
            sent.append(message)
        asyncio.run(webui.get_root(app, {"path": path, "headers": []}, None, send))
        assert sent[0]["status"] == status
        headers = dict(sent[0]["headers"])
        assert b"default-src 'none'" in headers[b"content-security-policy"]
        if status == 200:
            assert b"npm run build" in sent[1]["body"] and b"scripts/setup.sh" in sent[1]["body"]


# -- in the browser ---------------------------------------------------------------------

def test_login_page_shows_labels_fingerprint_and_refuses_a_wrong_password(page, server):
    p = page.goto()
    assert p.get_by_test_id("fingerprint").inner_text() == certificate_fingerprint(server)
    p.get_by_label("Username").fill("root")
    p.get_by_label("Password").fill("not-the-password")
    screenshot(p, "login")
    p.get_by_role("button", name="Log in").click()
    assert "wrong" in p.get_by_role("alert").inner_text()
    assert p.get_by_label("Password").input_value() == ""


def test_tree_shows_vms_by_name_and_follows_an_xe_rename_live(page, server, x):
    vm = vm_named(x, "web-alpha")
    p = login(page)
    item = p.get_by_role("treeitem", name="web-alpha", exact=True)
    item.wait_for()
    assert item.get_attribute("aria-description") == "Halted"   # not by colour only
    for name in ("Templates", "Storage", "Networks"):
        assert p.get_by_role("treeitem", name=name, exact=True).count() == 1
    uuid = x.VM.get_uuid(vm)
    xe(server, "vm-param-set", f"uuid={uuid}", "name-label=web-beta")
    start = time.monotonic()    # xe has returned: the change is committed
    p.get_by_role("treeitem", name="web-beta", exact=True).wait_for(timeout=5000)
    seen_after = time.monotonic() - start
    assert p.get_by_role("treeitem", name="web-alpha", exact=True).count() == 0
    assert seen_after < 1.0, seen_after
    # the session is in the page's memory, never in its storage
    stored = p.evaluate("() => JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert "OpaqueRef" not in stored
    screenshot(p, "tree")
    # the keyboard: arrows move between items, Enter opens one
    p.get_by_role("treeitem", name="web-beta", exact=True).get_by_role("link").focus()
    p.keyboard.press("ArrowUp")
    host = x.host.get_name_label(x.host.get_all()[0])
    assert p.evaluate("() => document.activeElement.textContent.trim()") == "H" + host
    p.keyboard.press("Enter")
    p.get_by_role("heading", name=host).wait_for()


def test_vm_view_tabs_buttons_from_allowed_operations_and_properties(page, server, x):
    vm = vm_named(x, "web-gamma")
    p = login(page)
    p.get_by_role("treeitem", name="web-gamma", exact=True).click()
    tabs = p.get_by_role("tab")
    assert tabs.all_inner_texts() == ["General", "Console", "Storage", "Network", "Snapshots",
                                      "Performance"]
    button = lambda name: p.get_by_role("button", name=name, exact=True)  # noqa: E731
    assert button("Start").is_enabled() and button("Delete").is_enabled()
    for name in ("Shut down", "Force shut down", "Reboot", "Suspend", "Resume", "Pause",
                 "Unpause"):
        assert button(name).is_disabled(), name
    # Export follows allowed_operations: offered for a halted VM, not for a running one
    assert "export" in x.VM.get_allowed_operations(vm)
    p.get_by_role("link", name="Export (XVA)").wait_for()
    screenshot(p, "vm-general")
    button("Start").click()
    p.get_by_role("status").filter(has_text="Running").wait_for()
    assert x.VM.get_power_state(vm) == "Running"
    assert "export" not in x.VM.get_allowed_operations(vm)
    p.get_by_role("button", name="Export (XVA)").wait_for()
    assert button("Export (XVA)").is_disabled()
    assert p.get_by_role("link", name="Export (XVA)").count() == 0
    assert button("Shut down").is_enabled() and button("Force shut down").is_enabled()
    assert button("Start").is_disabled() and button("Delete").is_disabled()
    # General: name, description and tags, saved through the API
    p.get_by_role("main").get_by_label("Name", exact=True).fill("web-gamma-2")
    p.get_by_label("Description").fill("made in a browser")
    p.get_by_label("Tags").fill("web, test")
    p.get_by_role("button", name="Save").click()
    p.get_by_role("status").filter(has_text="Saved.").wait_for()
    assert x.VM.get_name_label(vm) == "web-gamma-2"
    assert x.VM.get_name_description(vm) == "made in a browser"
    assert x.VM.get_tags(vm) == ["web", "test"]
    p.get_by_role("treeitem", name="web-gamma-2", exact=True).wait_for()
    button("Force shut down").click()
    p.get_by_role("status").filter(has_text="Halted").wait_for()
    assert x.VM.get_power_state(vm) == "Halted"
    for tab in ("Storage", "Network", "Snapshots"):
        p.get_by_role("tab", name=tab).click()
        p.get_by_role("table").first.wait_for()
        screenshot(p, f"vm-{tab.lower()}")


def enabled_buttons(p) -> set[str]:
    names = set()
    for button in p.get_by_role("button").all():
        if button.is_visible() and button.is_enabled():
            names.add(button.inner_text().strip())
    return names


def test_a_read_only_user_sees_no_enabled_mutating_control(page, server, x, users):
    vm_named(x, "web-delta")
    p = login(page, *users["reader"])
    p.get_by_role("treeitem", name="web-delta", exact=True).click()
    toolbar = p.get_by_role("toolbar", name="VM actions")
    assert toolbar.get_by_role("button").count() == 10
    assert p.get_by_role("main").get_by_label("Name", exact=True).get_attribute("readonly") is not None
    for tab in ("General", "Storage", "Network", "Snapshots"):
        p.get_by_role("tab", name=tab).click()
        p.get_by_role("tabpanel").wait_for()
        assert enabled_buttons(p) == {"Log out"}, tab
    screenshot(p, "read-only")
    host = x.host.get_name_label(x.host.get_all()[0])
    for item in ("Local storage", host):
        # the item's own link (a host's item also holds its VMs' items)
        p.get_by_role("treeitem", name=item, exact=True).get_by_role("link").first.click()
        p.get_by_role("heading", name=item).wait_for()
        assert enabled_buttons(p) == {"Log out"}, item
    assert p.get_by_role("button", name="New VM").is_disabled()


def test_logout_ends_the_session_and_an_expired_one_is_said(page, server, x, users):
    name, password = users["admin"]
    vm = vm_named(x, "web-epsilon")
    p = login(page, name, password)
    p.get_by_role("button", name="Log out").click()
    p.get_by_role("button", name="Log in").wait_for()
    assert p.get_by_role("alert").count() == 0
    assert x.session.get_all_subject_identifiers().count(f"local:{name}") == 0
    # again, and this time the server ends the session behind the page's back
    login(page, name, password)
    x.session.logout_subject_identifier(f"local:{name}")
    x.VM.set_name_label(vm, "web-epsilon-2")    # the page's event.from wakes and finds out
    alert = p.get_by_role("alert")
    alert.wait_for(timeout=10000)
    assert "session has expired" in alert.inner_text()
    assert p.get_by_role("button", name="Log in").is_visible()
    screenshot(p, "expired")


@pytest.fixture(scope="module")
def iso_sr(x, tmp_path_factory):
    library = tmp_path_factory.mktemp("webui-isos")
    (library / "src").mkdir()
    (library / "src" / "readme.txt").write_text("install me\n")
    subprocess.run(["genisoimage", "-quiet", "-o", str(library / "installer.iso"),
                    str(library / "src")], check=True)
    host = x.host.get_all()[0]
    return x.SR.create(host, {"location": str(library)}, "0", "web ISOs", "", "iso", "iso",
                       False, {})


def test_new_vm_wizard_creates_and_starts_the_vm(page, server, x, iso_sr):
    p = login(page)
    network = x.network.get_all_records()
    first = sorted(network.values(), key=lambda n: n["name_label"])[0]["name_label"]
    dialog = new_vm_dialog(p, "web-wizard", vCPUs="2", Memory="256",
                           Install_media="installer.iso", Disk_size="1",
                           Storage="Local storage", Network=first)
    screenshot(p, "wizard")
    dialog.get_by_role("button", name="Create").click()
    p.get_by_role("heading", name="web-wizard").wait_for(timeout=30000)
    vm = x.VM.get_by_name_label("web-wizard")[0]
    record = x.VM.get_record(vm)
    assert record["power_state"] == "Running" and not record["is_a_template"]
    assert record["VCPUs_max"] == record["VCPUs_at_startup"] == "2"
    assert record["memory_static_max"] == str(256 << 20)
    assert record["HVM_boot_params"]["order"] == "dc"
    vbds = [x.VBD.get_record(v) for v in record["VBDs"]]
    disk = [v for v in vbds if v["type"] == "Disk"]
    cd = [v for v in vbds if v["type"] == "CD"]
    assert len(disk) == 1 and x.VDI.get_virtual_size(disk[0]["VDI"]) == str(1 << 30)
    assert x.SR.get_name_label(x.VDI.get_SR(disk[0]["VDI"])) == "Local storage"
    assert len(cd) == 1 and x.VDI.get_name_label(cd[0]["VDI"]) == "installer.iso"
    vifs = [x.VIF.get_record(v) for v in record["VIFs"]]
    assert [x.network.get_name_label(v["network"]) for v in vifs] == [first]
    x.VM.hard_shutdown(vm)


def test_upload_a_disk_image_into_an_sr_with_progress(page, server, x, tmp_path):
    image = tmp_path / "upload-test.img"
    data = os.urandom(3 << 20)
    image.write_bytes(data)
    p = login(page)
    p.get_by_role("treeitem", name="Local storage", exact=True).click()
    p.get_by_label("Disk image (raw)").set_input_files(str(image))
    slow_uploads(p)
    p.get_by_role("button", name="Upload").click()
    p.get_by_role("status").filter(has_text="Uploaded upload-test.img.").wait_for(timeout=60000)
    bar = p.get_by_role("progressbar", name="Upload progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(len(data))
    # the bar moved through the upload, not only to its end
    assert any(0 < v < len(data) for v in progress_seen(p)), progress_seen(p)
    p.get_by_role("cell", name="upload-test.img").wait_for()
    screenshot(p, "sr-upload")
    vdi = x.VDI.get_by_name_label("upload-test.img")[0]
    assert x.VDI.get_virtual_size(vdi) == str(len(data))
    reader = server.session()
    try:
        with httpx.Client(verify=False, timeout=60) as http:
            back = http.get(f"{server.url}/export_raw_vdi", params={
                "session_id": reader._session, "vdi": vdi, "format": "raw"})
    finally:
        reader.xenapi.session.logout()
    assert back.status_code == 200 and back.content == data


def test_disks_snapshots_and_an_xva_round_trip(page, server, x, tmp_path):
    vm = vm_named(x, "web-zeta")
    p = login(page)
    p.get_by_role("treeitem", name="web-zeta", exact=True).click()
    p.get_by_role("tab", name="Storage").click()
    p.get_by_label("New disk size (GiB)").fill("0.0625")
    p.get_by_role("button", name="Add disk").click()
    p.get_by_role("cell", name="web-zeta disk", exact=True).wait_for()
    vdi = x.VBD.get_VDI([v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"][0])
    assert x.VDI.get_virtual_size(vdi) == str(64 << 20)
    p.get_by_role("button", name="Resize web-zeta disk").click()
    p.get_by_label("New size of web-zeta disk (GiB)").fill("0.125")
    p.get_by_role("button", name="Apply size").click()
    p.get_by_role("cell", name="128 MiB", exact=True).wait_for()
    assert x.VDI.get_virtual_size(vdi) == str(128 << 20)
    screenshot(p, "vm-storage-disk")
    p.get_by_role("button", name="Detach web-zeta disk").click()
    p.get_by_role("cell", name="No disks.").wait_for()
    assert x.VM.get_VBDs(vm) == [] and x.VDI.get_SR(vdi)   # the disk stays in its SR
    vbd = x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": False,
                        "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    p.get_by_role("cell", name="web-zeta disk", exact=True).wait_for()
    # network interfaces: add one, remove it
    p.get_by_role("tab", name="Network").click()
    p.get_by_role("button", name="Add interface").click()
    p.get_by_role("button", name="Remove interface 0").wait_for()
    assert len(x.VM.get_VIFs(vm)) == 1
    p.get_by_role("button", name="Remove interface 0").click()
    p.get_by_role("cell", name="No network interfaces.").wait_for()
    assert x.VM.get_VIFs(vm) == [] and x.VBD.get_VDI(vbd) == vdi
    # snapshots: take one, revert to it, delete it
    p.get_by_role("tab", name="Snapshots").click()
    p.get_by_role("button", name="Take snapshot").click()
    snapshots = lambda: x.VM.get_snapshots(vm)  # noqa: E731
    wait = time.monotonic() + 30
    while not snapshots() and time.monotonic() < wait:
        time.sleep(0.1)
    name = x.VM.get_name_label(snapshots()[0])
    p.get_by_role("button", name=f"Revert to {name}").click()
    p.get_by_role("button", name=f"Delete snapshot {name}").click()
    p.get_by_role("cell", name="No snapshots.").wait_for()
    assert x.VM.get_snapshots(vm) == []
    # export by navigation, then import the file in the pool's page
    p.get_by_role("tab", name="General").click()
    with p.expect_download() as download:
        p.get_by_role("link", name="Export (XVA)").click()
    xva = tmp_path / "web-zeta.xva"
    download.value.save_as(xva)
    assert xva.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"   # the zstd-compressed XVA asked for
    p.get_by_role("treeitem", name=x.pool.get_name_label(x.pool.get_all()[0]) or "Pool",
                  exact=True).get_by_role("link").first.click()
    p.get_by_label("XVA file").set_input_files(str(xva))
    p.get_by_role("button", name="Import").click()
    p.get_by_role("status").filter(has_text="Imported web-zeta.xva").wait_for(timeout=60000)
    assert len(x.VM.get_by_name_label("web-zeta")) == 2
    screenshot(p, "pool-import")


def test_users_and_roles_page_adds_a_local_user_who_can_log_in(page, server, x, browser):
    p = login(page)
    p.get_by_role("link", name="Users").click()
    p.get_by_label("User name", exact=True).fill("web-newcomer")
    p.get_by_label("New password", exact=True).fill("newcomer-pw-1")
    p.get_by_label("Role", exact=True).select_option(label="vm-operator")
    p.get_by_role("button", name="Add user").click()
    p.get_by_role("status").filter(has_text="Added web-newcomer.").wait_for()
    subject = [s for s, r in x.subject.get_all_records().items()
               if r["subject_identifier"] == "local:web-newcomer"][0]
    assert [x.role.get_name_label(r) for r in x.subject.get_roles(subject)] == ["vm-operator"]
    p.get_by_label("Role of web-newcomer").select_option(label="vm-admin")
    p.get_by_label("Role of web-newcomer").filter(has_text="vm-admin").wait_for()
    deadline = time.monotonic() + 10
    while [x.role.get_name_label(r) for r in x.subject.get_roles(subject)] != ["vm-admin"]:
        assert time.monotonic() < deadline, x.subject.get_roles(subject)
        time.sleep(0.1)
    p.get_by_label("New password for web-newcomer").fill("newcomer-pw-2")
    p.get_by_role("button", name="Set the password of web-newcomer").click()
    p.get_by_role("status").filter(has_text="Password of web-newcomer changed.").wait_for()
    screenshot(p, "users")
    other = Page(browser, server)
    try:
        login(other, "web-newcomer", "newcomer-pw-2")
        assert other.page.get_by_role("link", name="Users").count() == 0   # not a pool-admin
    finally:
        other.close()
    p.get_by_role("button", name="Remove web-newcomer").click()
    p.get_by_role("button", name="Remove web-newcomer").wait_for(state="detached")
    assert not [r for r in x.subject.get_all_records().values()
                if r["subject_identifier"] == "local:web-newcomer"]


def test_upload_an_iso_into_an_iso_sr_for_the_wizard(page, server, x, iso_sr, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "boot.txt").write_text("boot me\n")
    iso = tmp_path / "uploaded-installer.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), str(tmp_path / "src")], check=True)
    p = login(page)
    p.get_by_role("treeitem", name="web ISOs", exact=True).click()
    p.get_by_label("ISO image").set_input_files(str(iso))
    p.get_by_role("button", name="Upload").click()
    p.get_by_role("status").filter(has_text="Uploaded uploaded-installer.iso.").wait_for(
        timeout=60000)
    vdis = [v for v in x.SR.get_VDIs(iso_sr)
            if x.VDI.get_name_label(v) == "uploaded-installer.iso"]
    assert len(vdis) == 1 and x.VDI.get_virtual_size(vdis[0]) == str(iso.stat().st_size)
    # the wizard offers it as install media at once
    p.get_by_role("button", name="New VM").click()
    media = p.get_by_role("dialog", name="New VM").get_by_label("Install media")
    assert "uploaded-installer.iso" in media.locator("option").all_inner_texts()


def test_new_vm_wizard_uploads_its_install_iso_with_progress(page, server, x, iso_sr, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "setup.txt").write_bytes(os.urandom(3 << 20))   # 3 MiB: a few progress events
    iso = tmp_path / "wizard-upload.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), str(tmp_path / "src")], check=True)
    p = login(page)
    dialog = new_vm_dialog(p, "web-wizard-upload", Install_media="Upload ISO…")
    media = dialog.get_by_label("Install media")
    assert dialog.get_by_label("ISO storage").input_value() == iso_sr
    dialog.get_by_label("ISO file").set_input_files(str(iso))
    slow_uploads(p)
    dialog.get_by_role("button", name="Upload ISO").click()
    dialog.get_by_role("progressbar", name="Upload progress").wait_for()
    screenshot(p, "wizard-uploading")
    dialog.get_by_role("status").filter(has_text="Uploaded wizard-upload.iso.").wait_for(
        timeout=60000)
    bar = dialog.get_by_role("progressbar", name="Upload progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(iso.stat().st_size)
    assert any(0 < v < iso.stat().st_size for v in progress_seen(p)), progress_seen(p)
    vdi = [v for v in x.SR.get_VDIs(iso_sr) if x.VDI.get_name_label(v) == "wizard-upload.iso"]
    assert len(vdi) == 1
    # the uploaded ISO is now the chosen install media
    eventually_selected = lambda: media.evaluate("s => s.selectedOptions[0]?.textContent")  # noqa: E731
    deadline = time.monotonic() + 5
    while eventually_selected() != "wizard-upload.iso" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert eventually_selected() == "wizard-upload.iso" and media.input_value() == vdi[0]
    dialog.get_by_label("Disk size").fill("0")
    screenshot(p, "wizard-upload")
    dialog.get_by_role("button", name="Create").click()
    p.get_by_role("heading", name="web-wizard-upload").wait_for(timeout=30000)
    vm = x.VM.get_by_name_label("web-wizard-upload")[0]
    cds = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "CD"]
    assert cds == vdi and x.VM.get_power_state(vm) == "Running"
    x.VM.hard_shutdown(vm)


def test_host_page_draws_the_hosts_metrics(page, server, x):
    p = login(page)
    host = x.host.get_name_label(x.host.get_all()[0])
    p.get_by_role("treeitem", name=host, exact=True).get_by_role("link").first.click()
    cpu = p.locator(".chart").filter(has_text="CPU").locator(".u-legend")
    cpu.filter(has_text="cpu_avg").wait_for(timeout=30000)
    memory = p.locator(".chart").filter(has_text="Memory").locator(".u-legend")
    assert memory.filter(has_text="memory_total_kib").count() == 1
    p.get_by_role("button", name="Enter maintenance mode").wait_for()
    screenshot(p, "host")
