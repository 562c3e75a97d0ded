"""Waiting for a condition in a test, with a deadline instead of a fixed sleep."""
import time


def wait_for(predicate, timeout: float, what, interval: float = 0.2):
    """The first true value of `predicate()`; after `timeout` seconds an AssertionError
    naming `what` (a text, or a callable that gives it at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)
