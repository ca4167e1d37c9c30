"""``--show-progress``: one line on stderr per interval while the service runs.

::

    EventLoop timer (every ``interval`` s) -> ProgressPrinter.tick
        -> Registry.unit_stats (running counts, O(1)) -> "qcgflow progress ..." on stderr

Example line::

    qcgflow progress [    3.0s] tasks: 12/40 done (1 failed), 4 running, 24 queued;
    4.1 tasks/s (now 5.0/s)

(one line, wrapped here).

Tasks are units of work: the iterations of iterative jobs and the single jobs. The line is
plain text (no terminal control), so it reads the same in a batch job's output file. A last
line is printed when the service stops.
"""

import sys
import time
from typing import Optional, TextIO


class ProgressPrinter:
    """Prints the unit counts and the completion rate periodically.

    ``registry``: anything with ``unit_stats`` (the service's ``Manager``, or a ``Registry``).
    """

    def __init__(self, loop, registry, stream: Optional[TextIO] = None, interval: float = 1.0,
                 clock=time.monotonic):
        self._loop = loop
        self._registry = registry
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_time = self._started
        self._last_done = 0
        self._timer = None

    def start(self) -> None:
        self._timer = self._loop.call_later(self._interval, self.tick)

    def tick(self) -> None:
        self._write(self.line())
        self._timer = self._loop.call_later(self._interval, self.tick)

    def line(self) -> str:
        """The current progress line (also moves the window of the recent rate)."""
        stats = self._registry.unit_stats
        now = self._clock()
        elapsed = max(now - self._started, 1e-9)
        window = max(now - self._last_time, 1e-9)
        recent = (stats.finished - self._last_done) / window
        self._last_time, self._last_done = now, stats.finished
        queued = stats.total - stats.finished - stats.active
        return ("qcgflow progress [%7.1fs] tasks: %d/%d done (%d failed), %d running, "
                "%d queued; %.1f tasks/s (now %.1f/s)"
                % (elapsed, stats.finished, stats.total, stats.failed, stats.active, queued,
                   stats.finished / elapsed, recent))

    def close(self) -> None:
        """Stop the timer and print the final line."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write(self.line())

    def _write(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: progress is best effort
