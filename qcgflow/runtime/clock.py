"""Clocks injected into the runtime, so the decision core never reads wall time itself.

``SystemClock`` is the real one; ``FakeClock`` is for tests (time moves only when told).
Both give ``now()`` (seconds since the epoch, for history timestamps) and ``monotonic()``
(for deadlines, never jumps).
"""

import time


class SystemClock:
    """The machine's clocks."""

    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock that only moves when ``advance`` is called."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
