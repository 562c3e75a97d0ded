"""What the web console's browser tests share: the built UI (ui/dist, built here when
missing and Node is installed, else the tests skip), Debian's Chromium driven by
Playwright (never a downloaded browser), a logged-in page, xe, and screenshots.

    from webui_harness import browser, built_ui, login, new_vm_dialog, screenshot, xe

Screenshots go to test-artifacts/webui/ (not committed) for a person to look at."""
import hashlib
import os
import shutil
import ssl
import subprocess
import sys

import pytest

from serverproc import ROOT_PASSWORD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = os.path.join(ROOT, "ui")
DIST = os.path.join(UI, "dist")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = os.path.join(ROOT, "test-artifacts", "webui")
XE = os.path.join(os.path.dirname(sys.executable), "xe")


@pytest.fixture(scope="session")
def built_ui():
    """ui/dist: as scripts/setup.sh built it, or built now; skipped only when it is
    missing and there is no Node to build it with."""
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        if not shutil.which("npm"):
            pytest.skip("ui/dist is not built and node/npm are not installed "
                        "(scripts/setup.sh installs them and builds it)")
        if not os.path.isdir(os.path.join(UI, "node_modules")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, check=True)
        subprocess.run(["npm", "run", "build"], cwd=UI, check=True)
    return DIST


@pytest.fixture(scope="module")
def browser(built_ui):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)")
    driver = sync_playwright().start()
    chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    driver.stop()


class Page:
    """A fresh browser context (its own memory: no session carried over) on the
    server, with every console message and CSP violation the page had kept."""

    def __init__(self, browser, server):
        self.context = browser.new_context(ignore_https_errors=True,
                                           viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15000)
        self.messages: list[str] = []
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        self.server = server

    def goto(self, fragment: str = ""):
        self.page.goto(f"{self.server.url}/{fragment}")
        return self.page

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]

    def close(self):
        self.context.close()


def login(page: Page, user: str = "root", password: str = ROOT_PASSWORD):
    p = page.goto()
    p.get_by_label("Username").fill(user)
    p.get_by_label("Password").fill(password)
    p.get_by_role("button", name="Log in").click()
    p.get_by_role("button", name="Log out").wait_for()
    return p


def new_vm_dialog(p, name: str, template: str = "Other install media", **fields):
    """Open the New VM wizard and fill it: the template, the name, then each field by its
    label (a select by its option's text), e.g. Install_media="x.iso" for "Install media".
    The dialog, for the caller to finish (Create)."""
    p.get_by_role("button", name="New VM").click()
    dialog = p.get_by_role("dialog", name="New VM")
    dialog.get_by_label("Template").select_option(label=template)
    dialog.get_by_label("Name").fill(name)
    for label, value in fields.items():
        field = dialog.get_by_label(label.replace("_", " "), exact=True)
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(label=value)
        else:
            field.fill(value)
    return dialog


# Records every value an upload's progress bar shows (window.progressSeen), set before
# the upload starts.
_WATCH_PROGRESS = """() => {
  window.progressSeen = [];
  new MutationObserver(records => records.forEach(r => {
    if (r.target.tagName === 'PROGRESS') window.progressSeen.push(Number(r.target.value));
  })).observe(document.body, {attributes: true, attributeFilter: ['value'], subtree: true});
}"""


def slow_uploads(p, bytes_per_second: int = 1 << 20):
    """Throttle the page's uploads (Chromium's network emulation) and record the values
    its progress bars pass through: call before the upload, read progress_seen(p) after.
    A loopback upload of a few MiB would otherwise end before the first progress event."""
    cdp = p.context.new_cdp_session(p)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": bytes_per_second})
    p.evaluate(_WATCH_PROGRESS)
    return cdp


def progress_seen(p) -> list[float]:
    return p.evaluate("() => window.progressSeen")


def screenshot(page, name: str):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"))


def certificate_fingerprint(server) -> str:
    """SHA-256 of the certificate the server presents, AB:CD:... as the login page shows."""
    der = ssl.get_server_certificate(("127.0.0.1", server.port))
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(der)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def xe(server, *argv, user="root", password=ROOT_PASSWORD):
    env = {**os.environ, "HOME": "/nonexistent",
           "XDG_CONFIG_HOME": os.path.join(server.data_dir, "xe-config")}
    env.pop("XE_EXTRA_ARGS", None)
    done = subprocess.run([XE, "-s", "127.0.0.1", "-p", str(server.port), "-u", user,
                           "-pw", password, "--no-verify", *argv],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def checked_page(browser, server):
    """For a fixture: a Page, closed after its test(s), which then fail on any
    Content-Security-Policy violation the page reported."""
    opened = Page(browser, server)
    yield opened
    violations = opened.csp_violations()
    opened.close()
    assert not violations, violations
