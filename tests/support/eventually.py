"""Deadline polling: the one way tests wait for something that happens in another process.

``eventually(predicate, timeout, interval, message)`` calls ``predicate`` until it returns a
true value and returns that value. When ``timeout`` seconds pass first, it fails the test
(``AssertionError``) with a message that says what was awaited, for how long, and, when
``message`` is a callable, what the world looked like at that moment. A ``give_up``
callable that returns a reason (a non-empty string) ends the wait at once, failing with
that reason: a service that died will not produce the awaited file.

The predicate is always called at least once and once more right at the deadline, so a
slow machine that let one long interval pass does not fail a condition that holds.
Never a fixed sleep: the wait ends as soon as the condition holds.
"""

import time
from typing import Callable, Optional, TypeVar, Union

T = TypeVar("T")

__all__ = ["eventually", "WaitTimeout"]


class WaitTimeout(AssertionError):
    """``eventually`` ran out of time (an AssertionError: pytest reports it as a failure)."""


def eventually(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: Union[str, Callable[[], str]] = "the condition",
               give_up: Optional[Callable[[], Optional[str]]] = None) -> T:
    """Poll ``predicate`` until it returns a true value; return that value.

    Args:
        predicate: called without arguments; any true value ends the wait.
        timeout: seconds until the test fails.
        interval: seconds between two calls (the last one is shortened to the deadline).
        message: what is awaited ("job a to be EXECUTING"), or a callable building it at
            the time of failure (so it can show the last state seen).
        give_up: called after each unsuccessful call; a non-empty string it returns fails
            the wait at once with that reason (e.g. "the service exited with 1").

    Raises:
        WaitTimeout: the deadline passed, or ``give_up`` gave a reason.
    """
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        reason = give_up() if give_up is not None else None
        if reason:
            value = predicate()  # it may have come true on the way out
            if value:
                return value
            raise WaitTimeout("gave up waiting for %s: %s" % (_text(message), reason))
        left = end - time.monotonic()
        if left <= 0:
            raise WaitTimeout("timed out after %.1f s waiting for %s" % (timeout, _text(message)))
        time.sleep(min(interval, left))


def _text(message) -> str:
    return message() if callable(message) else str(message)
