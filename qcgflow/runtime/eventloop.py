"""A small single-threaded event loop: file descriptors, ZeroMQ sockets and timers.

Why not asyncio: the service's hot path is "a child exited -> release cores -> start the
next child", thousands of times a second. An ``epoll`` over plain descriptors (pidfds,
eventfds, pipes) and a ``zmq.Poller`` over ZeroMQ sockets, with a heap of timers, cost a
fraction of asyncio's per-event overhead and poll ZeroMQ sockets natively.

::

    plain fds (a pidfd per running task, ...) --register (C call)--> epoll --.
    ZeroMQ sockets --------------------------------------> zmq.Poller <-------' its fd, while
                                                                                 any socket is in
    no ZeroMQ socket registered: the loop waits in epoll alone (one syscall a turn)

Why epoll for plain descriptors: a task's pidfd is added and removed once per task, and
``zmq.Poller`` does that in Python (removal is O(registered)) and passes every descriptor
to the kernel on every turn (O(running tasks) per event). epoll's register/unregister are
single C calls, and a wait costs the same with 2 or 10,000 tasks running.

Guarantees: callbacks run one at a time, in the loop's thread; ``call_soon`` callbacks run
before the next poll; timers fire at or after their deadline (monotonic clock); a callback
that raises is logged and does not stop the loop.
"""

import heapq
import itertools
import logging
import select
import time
from collections import deque
from typing import Any, Callable, Dict

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
        # ZeroMQ sockets (and the epoll, while any is in it); made with the first socket:
        # a service without sockets (--file-path) does not import ZeroMQ (~20 ms of its start)
        self._poller = None
        self._epoll = select.epoll()  # plain descriptors (close-on-exec)
        self._epoll_fd = self._epoll.fileno()
        self._readers: Dict[Any, Callable[[], None]] = {}  # every source -> its callback
        self._fds: Dict[int, Callable[[], None]] = {}  # plain descriptors -> callback
        self._sockets = 0  # ZeroMQ sockets registered
        self._timers: list = []
        self._counter = itertools.count()
        self._soon: deque = deque()
        self._stop_requested = False
        self.idle_hooks: list = []  # run after each turn's events (arm buffered output's
                                    # flush: they must be cheap)

    # -------------------------------------------------------------- registration
    def add_reader(self, source, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``source`` (an int fd or a zmq socket) is readable.

        A descriptor must be removed (``remove_reader``) before it is closed."""
        if type(source) is int:
            try:
                self._epoll.register(source, select.EPOLLIN)
            except FileExistsError:
                pass  # registered already: only the callback changes
            self._fds[source] = callback
        elif source not in self._readers:
            import zmq  # noqa: PLC0415 - see __init__

            if self._poller is None:
                self._poller = zmq.Poller()
            if not self._sockets:
                self._poller.register(self._epoll_fd, zmq.POLLIN)
            self._poller.register(source, zmq.POLLIN)
            self._sockets += 1
        self._readers[source] = callback

    def remove_reader(self, source) -> None:
        if self._readers.pop(source, None) is None:
            return
        if type(source) is int:
            del self._fds[source]
            try:
                self._epoll.unregister(source)
            except OSError:  # closed already (epoll forgot it with its last descriptor)
                pass
            return
        self._poller.unregister(source)
        self._sockets -= 1
        if not self._sockets:
            self._poller.unregister(self._epoll_fd)

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
            if self._sockets:
                for source, _ in self._poller.poll(timeout):
                    if source == self._epoll_fd:
                        self._run_fds(0)
                    else:
                        callback = self._readers.get(source)
                        if callback is not None:
                            self._guard(callback)
            else:
                self._run_fds(-1 if timeout is None else timeout / 1000.0)
            if self._timers:
                self._run_timers()
            # every turn, even with callbacks queued: in a busy sweep every reap queues a
            # scheduling pass, and a hook run only when nothing was queued never ran
            for hook in self.idle_hooks:
                self._guard(hook)
        self._stop_requested = False

    def _run_fds(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (-1: no limit) for ready plain descriptors and run
        their callbacks (a descriptor removed by an earlier callback of the batch is not)."""
        fds = self._fds
        for fd, _ in self._epoll.poll(timeout):
            callback = fds.get(fd)
            if callback is not None:
                try:  # _guard, inlined: this runs for every task's exit
                    callback()
                except Exception:
                    _log.exception("event loop callback %r failed", callback)

    def close(self) -> None:
        """Release the epoll descriptor (the loop cannot run afterwards)."""
        self._epoll.close()

    def _run_soon(self) -> None:
        soon = self._soon
        while soon:
            callback = soon.popleft()
            try:  # _guard, inlined: this runs for every scheduling pass
                callback()
            except Exception:
                _log.exception("event loop callback %r failed", callback)

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
