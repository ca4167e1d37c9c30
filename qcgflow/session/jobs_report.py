"""Reading a service's jobs.report while it is written (``qcgflow run``'s progress, the
cache's records of a finished ``qcgflow run``).

jobs.report holds one JSON object per line, appended as jobs and iterations end; a line not
yet ended by a newline is being written and is left for the next read.
"""

import json


def read_report(path: str, offset: int = 0):
    """The entries of a jobs.report from byte ``offset`` on, read one line at a time (a
    line being written is skipped). A generator: a report of 1,000,000 iterations is never
    held in memory as a list. ``report_end`` tells where complete lines end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    return  # being written: read again from its start next time
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
    except OSError:
        return


def report_end(path: str, offset: int) -> int:
    """The offset after the last complete line of a jobs.report, from ``offset`` on."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
    except OSError:
        pass
    return offset
