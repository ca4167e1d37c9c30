"""jobs.report: one entry per finished iteration and per finished job.

JSON lines (default, ``--report-format json``)::

    {"name": "job:0", "state": "SUCCEED", "history": [{"state": "QUEUED", "date": "..."}, ...],
     "runtime": {"allocation": "n0[0]", "wd": "...", "rtime": "0:00:00.009", "exit_code": "0",
                 "pid": "8350", "pname": "echo"}, "messages": "..."}

or a readable text block per entry (``--report-format text``). Lines are buffered and
written at most every 0.25 s (and on close), so a burst of short tasks costs one write,
not one per task.
"""

import json
from datetime import datetime
from typing import Optional

from .batched import BatchedLines
from .jobs import FINAL_STATES, JobState
from .registry import Job

FORMATS = ("json", "text")


class JobsReport:
    """A registry listener that appends finished units to the report file."""

    def __init__(self, path: str, fmt: str = "json"):
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.path = path
        self._format = fmt
        self._out = BatchedLines(path)

    def __call__(self, job: Job, position: Optional[int], state: JobState) -> None:
        if state not in FINAL_STATES:
            return
        if position is None:
            entry = _entry(job.name, state, job.history, job.runtime, job.messages)
        else:
            record = job.records.get(position)
            history = record.history if record is not None else [(state, 0.0)]
            entry = _entry(job.unit_name(position), state, history,
                           record.runtime if record is not None else {},
                           record.messages if record is not None else None)
        self._out.append(self._render(entry))

    def _render(self, entry: dict) -> str:
        if self._format == "json":
            return json.dumps(entry, separators=(",", ":")) + "\n"
        lines = ["%s (%s)%s" % (entry["name"], entry["state"],
                                " - " + entry["messages"] if "messages" in entry else "")]
        lines += ["    %s: %s" % (h["date"], h["state"]) for h in entry["history"]]
        lines += ["    %s: %s" % (key, value) for key, value in entry.get("runtime", {}).items()]
        return "\n".join(lines) + "\n"

    def flush_soon(self, loop, delay: float = 0.25) -> None:
        """Event-loop idle hook: write at most every ``delay`` seconds."""
        self._out.flush_later(loop, delay)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def _entry(name, state, history, runtime, messages) -> dict:
    entry = {
        "name": name,
        "state": state.name,
        "history": [{"state": s.name, "date": datetime.fromtimestamp(t).isoformat()}
                    for s, t in history],
    }
    if runtime:
        entry["runtime"] = dict(runtime)
    if messages:
        entry["messages"] = messages
    return entry
