"""A small single-threaded event loop: file descriptors, ZeroMQ sockets and timers.

Why not asyncio: the service's hot path is "a child exited -> release cores -> start the
next child", thousands of times a second. A direct ``zmq.Poller`` over pidfds (and, later,
ZeroMQ sockets) with a heap of timers costs a fraction of asyncio's per-event overhead and
polls ZeroMQ sockets natively.

Guarantees: callbacks run one at a time, in the loop's thread; ``call_soon`` callbacks run
before the next poll; timers fire at or after their deadline (monotonic clock); a callback
that raises is logged and does not stop the loop.
"""

import heapq
import itertools
import logging
import time
from collections import deque
from typing import Any, Callable, Dict

import zmq

_log = logging.getLogger(__name__)


class Timer:
    """A handle to cancel a scheduled callback."""

    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: float, callback: Callable[[], None]):
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """Poll readers, run due timers and queued callbacks until ``stop()``."""

    def __init__(self):
        self._poller = zmq.Poller()
        self._readers: Dict[Any, Callable[[], None]] = {}
        self._timers: list = []
        self._counter = itertools.count()
        self._soon: deque = deque()
        self._stop_requested = False
        self.idle_hooks: list = []  # run after each batch of events (flush buffered output)

    # -------------------------------------------------------------- registration
    def add_reader(self, source, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``source`` (fd or zmq socket) is readable."""
        self._readers[source] = callback
        self._poller.register(source, zmq.POLLIN)

    def remove_reader(self, source) -> None:
        if self._readers.pop(source, None) is not None:
            self._poller.unregister(source)

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.deadline, next(self._counter), timer))
        return timer

    # -------------------------------------------------------------- running
    def stop(self) -> None:
        """Make ``run`` return after the current callback (or at once, if called before)."""
        self._stop_requested = True

    def run(self) -> None:
        """Run until ``stop()`` is called (a stop requested before ``run`` counts)."""
        while not self._stop_requested:
            self._run_soon()
            if self._stop_requested:
                break
            timeout = self._poll_timeout()
            for source, _ in self._poller.poll(timeout):
                callback = self._readers.get(source)
                if callback is not None:
                    self._guard(callback)
            self._run_timers()
            if not self._soon:
                for hook in self.idle_hooks:
                    self._guard(hook)
        self._stop_requested = False

    def _run_soon(self) -> None:
        soon = self._soon
        while soon:
            self._guard(soon.popleft())

    def _poll_timeout(self):
        if self._soon:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None if self._readers else 0
        return max(0.0, (self._timers[0][0] - time.monotonic()) * 1000.0)

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                self._guard(timer.callback)

    @staticmethod
    def _guard(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a broken callback must not take the whole service down
            _log.exception("event loop callback %r failed", callback)
