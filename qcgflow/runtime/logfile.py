"""The service.log handler: a file handler that survives a full disk.

``logging.FileHandler`` reports a failed write by printing a traceback to stderr, for
every record. This one prints ONE line the first time a write fails
(``qcgflow service: cannot write .../service.log: No space left on device``) and one when
writing works again; records in between are lost. The service itself is never stopped.
"""

import logging
import sys


class ServiceLogHandler(logging.FileHandler):
    """``FileHandler`` with one-line error reports on stderr instead of tracebacks."""

    def __init__(self, filename: str):
        super().__init__(filename)
        self.failing = False  # the last write failed (and that was reported)
        self._written = True

    def emit(self, record: logging.LogRecord) -> None:
        self._written = True
        super().emit(record)  # calls handleError when the write fails
        if self._written and self.failing:
            self.failing = False
            sys.stderr.write("qcgflow service: %s can be written again\n" % self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:
        self._written = False
        self._report(sys.exc_info()[1])

    def close(self) -> None:
        try:
            super().close()  # its last flush may fail too; the file is closed anyway
        except OSError as exc:
            self._report(exc)

    def _report(self, error) -> None:
        if self.failing:
            return
        self.failing = True
        reason = getattr(error, "strerror", None) or error
        sys.stderr.write("qcgflow service: cannot write %s: %s (the service goes on; log "
                         "records are lost until it can)\n" % (self.baseFilename, reason))
