"""Tell an out-of-memory kill from another SIGKILL.

The kernel's OOM killer ends a process with SIGKILL and tells its parent nothing more.
What it does leave is a host-wide counter, ``oom_kill`` in ``/proc/vmstat`` (Linux 4.13+).
The executor takes a mark of that counter when a task starts and, when the task dies of
SIGKILL that the service did not send, asks whether the counter moved since: if it did,
the OOM killer ran while the task executed, and the failure message says "out of memory".

Guarantees and limits: the mark is at most ``MAX_AGE`` seconds old (the file is read at
most once per ``MAX_AGE`` on the start path, ~30 us a read), so an OOM kill of another
process of the host within that window or during the task's run is attributed to the
task too: the message says "likely". Where the counter cannot be read (not Linux, an old
kernel, /proc hidden), nothing is ever claimed. The counter is the service host's: a task
run by an agent on another node is judged by it too (a miss there, never a false claim
unless this host's OOM killer ran).
"""

import time
from typing import Optional

VMSTAT = "/proc/vmstat"
MAX_AGE = 1.0  # seconds a reading serves as the mark of tasks that start


def _read(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class OomWatch:
    """Marks of the host's OOM-kill counter; ``killed_since(mark)`` compares with now."""

    def __init__(self, path: str = VMSTAT, clock=time.monotonic):
        self._path = path
        self._clock = clock
        self._value = _read(path)
        self._read_at = clock()
        self.available = self._value is not None

    def mark(self) -> Optional[int]:
        """The counter now (a reading at most ``MAX_AGE`` seconds old), None if unknown."""
        if not self.available:
            return None
        now = self._clock()
        if now - self._read_at > MAX_AGE:
            self._value = _read(self._path)
            self._read_at = now
        return self._value

    def killed_since(self, mark: Optional[int]) -> bool:
        """True when the OOM killer has killed something since ``mark`` was taken."""
        if mark is None:
            return False
        current = _read(self._path)
        if current is None:
            return False
        self._value, self._read_at = current, self._clock()
        return current > mark


OOM_NOTE = "likely out of memory: the kernel's OOM killer ran while it executed"
