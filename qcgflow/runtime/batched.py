"""Lines appended to a working file in batches, so bursts of events cost one write.

Guarantees: lines are written in the order they were added; a line waits at most the
``delay`` given to ``flush_later`` (a timer on the service's event loop writes it even when
nothing else happens); ``close`` writes whatever is left. A write that fails (a full disk)
never raises: it is logged once per file, and the file object keeps what it could not
write and tries again at the next flush.
"""

import logging
from typing import Callable, List, Optional

_log = logging.getLogger(__name__)


class BatchedLines:
    """An append-only text file with a buffer of pending lines."""

    def __init__(self, path: str):
        self.path = path
        self._pending: List[str] = []
        self._timer = None
        self._failing = False  # a write failed and was logged; logged again once it works
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        # called with the file's length after each batch reached it (jobs.report tells the
        # journal so: journal.report_gap)
        self.after_write: Optional[Callable[[int], None]] = None

    @property
    def failing(self) -> bool:
        """The last write failed (the file object may still hold what it could not write)."""
        return self._failing

    def size(self) -> int:
        """The file's length now (what is pending not counted)."""
        return self._file.tell()

    def reopen(self) -> None:
        """Open the file again (it was cut from outside); what is pending is kept."""
        self._file.close()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see __init__

    def __len__(self) -> int:
        """Lines waiting to be written."""
        return len(self._pending)

    def append(self, line: str) -> None:
        """Buffer ``line`` (it must end with a newline)."""
        self._pending.append(line)

    def write_now(self, line: str) -> None:
        """Write ``line`` at once, after anything pending (e.g. a file header)."""
        self._pending.append(line)
        self.flush()

    def flush_later(self, loop, delay: float) -> None:
        """Make sure what is pending is written within ``delay`` seconds."""
        if self._pending and self._timer is None:
            self._timer = loop.call_later(delay, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if self._pending:
            try:
                self._file.write("".join(self._pending))
                self._pending.clear()
                self._file.flush()
            except OSError as exc:
                self._failed(exc)
            else:
                if self._failing:
                    self._failing = False
                    _log.warning("%s can be written again", self.path)
                if self.after_write is not None:
                    self.after_write(self._file.tell())

    def _failed(self, exc: OSError) -> None:
        self._pending.clear()  # handed to the file object, which keeps what it could not write
        if not self._failing:
            self._failing = True
            _log.error("cannot write %s: %s (the service goes on; lines may be lost)",
                       self.path, exc.strerror or exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        try:
            self._file.close()
        except OSError as exc:  # the last flush failed: the descriptor is closed anyway
            self._failed(exc)
