"""A service's working files, read from outside: its directories and its jobs.report.

::

    WD (the service's --wd)
      └─ .qcgpjm-service-<id>/          service_dirs(WD): every one, sorted
           jobs.report                  latest_report(WD, exclude): the newest one's
                                        read_report(path, offset): its entries, streamed
                                        report_end(path, offset): where whole lines end

The one reader of jobs.report (``qcgflow run``'s progress and ``status``, the cache's
records, ``qcgflow report``) and the one finder of service directories (also the service's
own ``--resume``). Guarantees: ``read_report`` is a generator (a report of a million
iterations is never held as a list); it reads JSON lines (the default) and
``--report-format text``; it yields only entries with a ``name``; a line being written (no
newline yet) ends the reading, so following a live report from ``report_end`` never loses
or repeats an entry.
"""

import glob
import json
import os
import re
from typing import Iterable, Iterator, List, Optional

AUX_PREFIX = ".qcgpjm-service-"
REPORT_FILE = "jobs.report"
_STATES = ("QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED", "FAILED", "CANCELED", "OMITTED")
_TEXT_HEAD = re.compile(r"^(\S+) \((\w+)\)(?: - (.*))?$")


def service_dirs(wd: str) -> List[str]:
    """The ``.qcgpjm-service-*`` directories in ``wd``, sorted (none: an empty list)."""
    return sorted(d for d in glob.glob(os.path.join(glob.escape(wd), AUX_PREFIX + "*"))
                  if os.path.isdir(d))


def is_service_dir(path: str) -> bool:
    """Whether ``path`` is named like a service directory."""
    return os.path.basename(os.path.normpath(path)).startswith(AUX_PREFIX)


def latest_report(wd: str, exclude: Iterable[str] = ()) -> Optional[str]:
    """The jobs.report of the last modified service directory of ``wd`` that has one and
    is not in ``exclude`` (the directories that were there before a run), or None."""
    skip = set(exclude)
    reports = [os.path.join(d, REPORT_FILE) for d in service_dirs(wd) if d not in skip]
    reports = [path for path in reports if os.path.exists(path)]
    if not reports:
        return None
    return max(reports, key=lambda path: os.path.getmtime(os.path.dirname(path)))


def read_report(path: str, offset: int = 0, strict: bool = False) -> Iterator[dict]:
    """The entries of a jobs.report from byte ``offset`` on, one line at a time.

    JSON lines or ``--report-format text`` (told by the first character). An unreadable
    line is skipped; a last line without its newline (being written) ends the reading.

    Raises:
        OSError: only with ``strict``; otherwise a missing or unreadable file has no entries.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            first = handle.read(1)
            while first in (b" ", b"\n", b"\t", b"\r"):
                first = handle.read(1)
            handle.seek(offset)
            if first == b"{" or not first:
                yield from _json_lines(handle)
            else:
                yield from _text_entries(handle)
    except OSError:
        if strict:
            raise


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


def _whole_lines(handle) -> Iterator[bytes]:
    for line in handle:
        if not line.endswith(b"\n"):
            return  # being written: read again from its start next time
        yield line


def _json_lines(handle) -> Iterator[dict]:
    for line in _whole_lines(handle):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "name" in entry:
            yield entry


def _text_entries(handle) -> Iterator[dict]:
    """``--report-format text``: ``name (STATE)[ - message]`` then indented ``key: value``
    lines (history dates and runtime facts)."""
    entry = None
    for raw in _whole_lines(handle):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line.strip():
            continue
        if not line.startswith(" "):
            if entry is not None:
                yield entry
            match = _TEXT_HEAD.match(line)
            entry = ({"name": match.group(1), "state": match.group(2), "history": [],
                      "runtime": {}} if match else None)
            continue
        if entry is None or ": " not in line:
            continue
        key, value = line.strip().split(": ", 1)
        if value in _STATES and key[:1].isdigit():
            entry["history"].append({"state": value, "date": key})
        else:
            entry["runtime"][key] = value
    if entry is not None:
        yield entry
