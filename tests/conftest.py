import os
import sys

import httpx
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ServerProcess  # noqa: E402


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
    session = server.session()
    yield session.xenapi
    try:
        session.xenapi.session.logout()
    except Exception:
        pass


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, verify=False, timeout=30) as client:
        yield client
