"""jobs.report: one entry per finished iteration and per finished job, and, when the
service stops before every job ended (``finish``, a signal), one entry per unfinished job
in the state it was left in (QUEUED, ...) with the reason as its message.

JSON lines (default, ``--report-format json``)::

    {"name": "job:0", "state": "SUCCEED", "history": [{"state": "QUEUED", "date": "..."}, ...],
     "runtime": {"allocation": "n0[0]", "wd": "...", "rtime": "0:00:00.009", "exit_code": "0",
                 "pid": "8350", "pname": "echo"}, "messages": "..."}

or a readable text block per entry (``--report-format text``). Lines are buffered and
written at most every 0.25 s (and on close), so a burst of short tasks costs one write,
not one per task.
"""

import json
import logging
import math
import os
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quote
from typing import Dict, Optional

from .batched import BatchedLines
from .client.workdir import read_report, report_end
from .jobs import FINAL_STATES, JobState
from .registry import Job

_log = logging.getLogger(__name__)

FORMATS = ("json", "text")

_ENCODER = json.JSONEncoder(separators=(",", ":"))
# '{"state":"QUEUED","date":"' per state: a history item is this + date + '"}'
_HISTORY_ITEM = {state: '{"state":"%s","date":"' % state.name for state in JobState}
_DATE_CACHE_SIZE = 256


class IsoDates:
    """``datetime.fromtimestamp(t).isoformat()``, with the local-time part cached per second.

    Guarantees the same text as ``fromtimestamp`` for every float ``t``: microseconds are
    rounded half-to-even as ``fromtimestamp`` does, and omitted when they are 0.
    """

    def __init__(self):
        self._seconds: Dict[float, str] = {}

    def __call__(self, t: float) -> str:
        fraction, whole = math.modf(t)
        micro = round(fraction * 1e6)
        if micro >= 1000000:
            micro -= 1000000
            whole += 1.0
        elif micro < 0:
            micro += 1000000
            whole -= 1.0
        text = self._seconds.get(whole)
        if text is None:
            if len(self._seconds) >= _DATE_CACHE_SIZE:
                self._seconds.clear()
            text = self._seconds[whole] = datetime.fromtimestamp(whole).isoformat()
        return "%s.%06d" % (text, micro) if micro else text


class JobsReport:
    """A registry listener that appends finished units to the report file."""

    def __init__(self, path: str, fmt: str = "json"):
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.path = path
        self._format = fmt
        self._render = self._render_json if fmt == "json" else self._render_text
        self._date = IsoDates()
        self._keys: Dict[str, str] = {}
        self._out = BatchedLines(path)

    def _key(self, key: str) -> str:
        quoted = _quote(key) + ":"
        if len(self._keys) < 64:
            self._keys[key] = quoted
        return quoted

    def __call__(self, job: Job, position: Optional[int], state: JobState) -> None:
        if state not in FINAL_STATES:
            return
        if position is None:
            line = self._render(job.name, state, job.history, job.runtime, job.messages)
        else:
            record = job.records.get(position)
            if record is None:
                line = self._render(job.unit_name(position), state, [(state, 0.0)], {}, None)
            else:
                line = self._render(job.unit_name(position), state, record.history,
                                    record.runtime, record.messages)
        self._out.append(line)

    def _render_json(self, name, state, history, runtime, messages) -> str:
        """One JSON line, byte for byte ``json.dumps(entry, separators=(",", ":"))``."""
        date = self._date
        try:
            parts = ['{"name":', _quote(name), ',"state":"', state.name, '","history":[',
                     ",".join([_HISTORY_ITEM[s] + date(t) + '"}' for s, t in history]), "]"]
            if runtime:
                keys = self._keys  # '"key":' per runtime key (the same few keys every line)
                parts.append(',"runtime":{')
                parts.append(",".join([(keys.get(key) or self._key(key)) + _quote(value)
                                       for key, value in runtime.items()]))
                parts.append("}")
            if messages:
                parts.append(',"messages":')
                parts.append(_quote(messages))
        except TypeError:  # a value that is not a string: let the encoder convert it
            return _ENCODER.encode(self._entry(name, state, history, runtime, messages)) + "\n"
        parts.append("}\n")
        return "".join(parts)

    def _render_text(self, name, state, history, runtime, messages) -> str:
        date = self._date
        lines = ["%s (%s)%s" % (name, state.name, " - %s" % messages if messages else "")]
        lines += ["    %s: %s" % (date(t), s.name) for s, t in history]
        if runtime:
            lines += ["    %s: %s" % item for item in runtime.items()]
        lines.append("")
        return "\n".join(lines)

    def _entry(self, name, state, history, runtime, messages) -> dict:
        entry = {"name": name, "state": state.name,
                 "history": [{"state": s.name, "date": self._date(t)} for s, t in history]}
        if runtime:
            entry["runtime"] = dict(runtime)
        if messages:
            entry["messages"] = messages
        return entry

    def unfinished(self, jobs, why: str) -> int:
        """One entry per job of ``jobs`` that is not final (the service stops with it still
        QUEUED, SCHEDULED or EXECUTING), in its current state with ``why`` as message: the
        report then names every submitted job. Returns how many were written."""
        count = 0
        for job in jobs:
            if job.state not in FINAL_STATES:
                self._out.append(self._render(job.name, job.state, job.history, job.runtime,
                                              why))
                count += 1
        return count

    def size(self) -> int:
        """The file's length (lines still buffered not counted)."""
        return self._out.size()

    def all_written(self) -> bool:
        """Whether every line given so far reached the file."""
        return not len(self._out) and not self._out.failing

    def on_written(self, callback) -> None:
        """Call ``callback(the file's length)`` after each batch reached the file."""
        self._out.after_write = callback

    def add_missing(self, size: int, ends) -> int:
        """After a SIGKILL: a line for each of ``ends`` (journal end records the report may
        lack, ``journal.report_gap``) that the report does not hold after byte ``size``,
        with its state and message (its history and runtime died with the service). A
        torn last line is cut first. What is there already is not written again, so a
        resume killed while it repairs repairs the rest next time. Returns how many lines
        were added."""
        self._out.flush()
        path = self.path
        try:
            length = os.path.getsize(path)
            if length < size:
                _log.warning("%s is shorter than the journal says (%d < %d bytes): the "
                             "lines it may lack are not added", path, length, size)
                return 0
            whole = report_end(path, size)
            if whole < length and _torn(path, whole):  # a line the kill cut short
                os.truncate(path, whole)
                self._out.reopen()
            present = {entry["name"] for entry in read_report(path, size)}
            added = 0
            for end in ends:
                name = end.job if end.index is None else "%s:%d" % (end.job, end.index)
                if name not in present:
                    present.add(name)
                    self._out.append(self._render(name, end.state, [], {}, end.message))
                    added += 1
            self._out.flush()
        except OSError as exc:
            _log.warning("cannot repair %s: %s", path, exc.strerror or exc)
            return 0
        return added

    def flush_soon(self, loop, delay: float = 0.25) -> None:
        """Event-loop idle hook: write at most every ``delay`` seconds."""
        self._out.flush_later(loop, delay)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def _torn(path: str, offset: int) -> bool:
    """Whether ``path`` holds only a part of a line (no newline) from ``offset`` on."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return b"\n" not in handle.read()
