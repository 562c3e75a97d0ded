"""A session idle longer than `session_idle_timeout` ends at its next call
(dispatch/__init__.py check_session): SESSION_INVALID, and its record is gone. A session
used within the limit stays, and a call after more than SESSION_TOUCH_INTERVAL of quiet
moves its last_active. The idle time is made by moving last_active back in the store,
so nothing here waits."""
import os
from datetime import datetime, timedelta, timezone

import pytest

from xapi_server.dispatch import SESSION_TOUCH_INTERVAL
from xapi_server.errors import ApiError


def _call(inprocess, method, *params):
    return inprocess.loop.run_until_complete(
        inprocess.server.dispatcher.call(method, list(params)))


def _login(inprocess) -> str:
    return _call(inprocess, "session.login_with_password", "root",
                 os.environ["XAPI_ROOT_PASSWORD"])


def _idle_for(inprocess, session: str, seconds: float):
    inprocess.server.store.update("session", session, last_active=datetime.now(
        timezone.utc) - timedelta(seconds=seconds))


def _last_active(inprocess, session: str) -> datetime:
    return inprocess.server.store.record("session", session)["last_active"]


def test_a_session_used_within_the_limit_stays_and_is_touched(inprocess):
    session = _login(inprocess)
    limit = inprocess.server.settings.session_idle_timeout
    _idle_for(inprocess, session, SESSION_TOUCH_INTERVAL + 5)
    assert SESSION_TOUCH_INTERVAL + 5 < limit
    before = _last_active(inprocess, session)
    assert _call(inprocess, "host.get_all", session)
    after = _last_active(inprocess, session)
    assert (after - before).total_seconds() >= SESSION_TOUCH_INTERVAL
    assert _call(inprocess, "host.get_all", session)


def test_a_session_idle_past_the_limit_ends_at_its_next_call(inprocess):
    idle, other = _login(inprocess), _login(inprocess)
    limit = inprocess.server.settings.session_idle_timeout
    _idle_for(inprocess, idle, limit + 1)
    with pytest.raises(ApiError) as ended:
        _call(inprocess, "host.get_all", idle)
    assert ended.value.description == ["SESSION_INVALID", idle]
    assert idle not in inprocess.server.store.tables["session"]
    with pytest.raises(ApiError) as again:
        _call(inprocess, "host.get_all", idle)
    assert again.value.description == ["SESSION_INVALID", idle]
    assert _call(inprocess, "host.get_all", other)   # other sessions are not touched
