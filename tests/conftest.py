import os
import sys

import httpx
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import idle_head_start  # noqa: E402
from ha_shared import SHARED  # noqa: E402
from serverproc import ServerProcess, logged_in  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real server (HTTPS on loopback, fresh data dir) shared by the tests."""
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-data"))).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def xapi(server):
    """A logged-in official XenAPI SDK session (XML-RPC)."""
    yield from logged_in(server.session())


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, verify=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def inprocess():
    """A server in this process (tests/inprocess.py): the ASGI app called directly, no
    subprocess, TLS or sockets; one per test module, libvirt's test driver."""
    # Imported here, not above: it loads the whole server, which the modules that only
    # drive a server process (most of them) need not pay for.
    from inprocess import InProcess
    proc = InProcess()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def api(inprocess):
    """A logged-in official XenAPI SDK session, as `xapi`, but through the in-process
    app: `api.VM.get_all()`. For API tests that need no wire, TLS or real process."""
    yield from logged_in(inprocess.sdk_session())


# -- where the suite's time goes, per file (the whole suite must stay under 30 minutes) ----

_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    slowest = sorted(_FILE_SECONDS.items(), key=lambda item: -item[1])[:20]
    if len(_FILE_SECONDS) > 1:
        terminalreporter.section("slowest files (setup + calls + teardown)")
        for path, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f}s  {path}")


def pytest_collection_modifyitems(items):
    # The files that share an HA cluster (tests/ha_shared.py) run one after the other.
    items[:] = SHARED.together(items)


def pytest_collection_finish(session):
    # test_idle_connections.py's first test waits for its connections to sit idle past
    # 30 s: they are opened now and idle while the files before it run.
    if not session.config.option.collectonly:
        idle_head_start.maybe_begin(session.items)
