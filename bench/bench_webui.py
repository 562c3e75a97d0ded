"""The web console with many VMs, in Debian's headless Chromium (Playwright).

1. First view after login with N VMs (default 1000): time from the "Log in" click to
   the tree showing every VM, and the bytes the page transferred to get there (HTTP
   bodies as sent, i.e. gzip where the client takes it; the assets come first, then
   the JSON-RPC login, permission and event.from calls).
2. Responsiveness while 100 VMs change power state (started on libvirt's test driver,
   which costs the server a few ms each, from 8 threads): the longest gap between two
   animation frames and the long tasks (> 50 ms) the page had meanwhile (goal: no
   frame over 200 ms).

    .venv/bin/python bench/bench_webui.py [--vms 1000] [--changes 100]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from serverproc import ROOT_PASSWORD, ServerProcess  # noqa: E402
from webui_harness import CHROMIUM, CHROMIUM_ARGS, DIST  # noqa: E402

# Frame gaps and long tasks, recorded in the page from the moment it is armed.
WATCH_FRAMES = """() => {
  window.__bench = { worst: 0, frames: 0, longTasks: [] };
  let last = performance.now();
  const tick = now => { window.__bench.worst = Math.max(window.__bench.worst, now - last);
                        window.__bench.frames++; last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver(list => { for (const e of list.getEntries())
    window.__bench.longTasks.push(Math.round(e.duration)); })
    .observe({ type: 'longtask', buffered: false });
}"""


def make_vms(server, count: int) -> list[str]:
    session = server.session()
    x = session.xenapi
    template = x.VM.get_by_name_label("Other install media")[0]

    def one(i):
        own = server.session()
        try:
            vm = own.xenapi.VM.clone(template, f"bench-vm-{i:04d}")
            own.xenapi.VM.set_is_a_template(vm, False)
            return vm
        finally:
            own.xenapi.session.logout()
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def first_view(browser, server, count: int):
    """(seconds to the full tree, bytes transferred, requests, the context, its page)."""
    context = browser.new_context(ignore_https_errors=True,
                                  viewport={"width": 1280, "height": 800})
    page = context.new_page()
    requests = []
    page.on("requestfinished", lambda request: requests.append(request))
    page.goto(f"{server.url}/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(ROOT_PASSWORD)
    start = time.monotonic()
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('[role=treeitem][aria-description]').length >= {count}",
        timeout=120000, polling="raf")
    took = time.monotonic() - start
    sent = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"]
               for r in requests)
    return took, sent, len(requests), context, page


def responsiveness(page, server, vms: list[str]) -> dict:
    page.evaluate(WATCH_FRAMES)
    time.sleep(0.5)

    def start(vm):
        own = server.session()
        try:
            own.xenapi.VM.start(vm, False, False)
        finally:
            own.xenapi.session.logout()
    begin = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start, vms))
    page.wait_for_function(
        f"() => document.querySelectorAll('[role=treeitem][aria-description=Running]').length"
        f" >= {len(vms)}", timeout=120000)
    took = time.monotonic() - begin
    time.sleep(0.5)
    stats = page.evaluate("() => window.__bench")
    stats["seconds"] = took
    return stats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(DIST, "index.html")):
        sys.exit("ui/dist is not built: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright
    server = ServerProcess(tempfile.mkdtemp(prefix="bench-webui-")).start()
    try:
        t0 = time.monotonic()
        vms = make_vms(server, args.vms)
        print(f"made {len(vms)} VMs in {time.monotonic() - t0:.1f} s")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            took, sent, count, context, page = first_view(browser, server, args.vms)
            print(f"first view with {args.vms} VMs: {took * 1000:.0f} ms to the full tree, "
                  f"{sent / 1024:.0f} KiB in {count} requests")
            stats = responsiveness(page, server, vms[:args.changes])
            print(f"{args.changes} VMs started in {stats['seconds']:.1f} s: worst frame gap "
                  f"{stats['worst']:.0f} ms over {stats['frames']} frames; long tasks (ms): "
                  f"{sorted(stats['longTasks'], reverse=True)[:10]}")
            context.close()
            browser.close()
    finally:
        server.kill()


if __name__ == "__main__":
    main()
