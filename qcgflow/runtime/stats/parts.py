"""The parts of a run that had several allocations, the values of sweep iterations, and
whether the working files are final (for ``load.load_run``; reads files, no plotting).

::

    service.log  "service <id> version <v> started ..." / "service <id> finished" lines
        -> service_runs: one Part per start (the first run, then every --resume, each
           usually in its own allocation), its end the "finished" line, else the last line
           before the next start (a killed service)
    journal.jsonl {"k":"submit","jobs":[...]} -> iteration_labels: job -> value of each
           iteration ("iteration": {"values": [...]}; a range gives its indices)
    journal.jsonl flock / final_status.json -> partial: "the service is still running",
           "the service was killed ...", or None
    several .qcgpjm-service-* of one run directory (qcgflow run --resume starts a new
    service each time) -> combine: one Run, one part per directory

Guarantee: a directory that a single service wrote once gives exactly one part, so every
figure of such a run is what it was before parts existed.
"""

import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..journal import journal_in_use
from .workdir import Part, Run, parse_date

_LOG_DATE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d+) ")
# upstream's first line ("service <id> version <v> started ..."); older logs: "starting in"
_START = re.compile(r"qcgflow\.runtime\.service: service \S+ "
                    r"(version \S+ started |starting in )")
_FINISH = re.compile(r"qcgflow\.runtime\.service: service \S+ finished$")
_SAME_START = 2.0  # seconds: final_status.json's Started belongs to the log's last start


def service_runs(aux: str, status_started: Optional[float],
                 status_finished: Optional[float]) -> Tuple[Part, ...]:
    """The service runs recorded in ``aux``'s service.log, in order (empty without a log)."""
    starts: List[float] = []
    ends: List[Optional[float]] = []
    last = None
    try:
        handle = open(os.path.join(aux, "service.log"), encoding="utf-8", errors="replace")
    except OSError:
        return ()
    with handle:
        for line in handle:
            match = _LOG_DATE.match(line)
            if not match:
                continue
            when = parse_date("%s.%s" % (match.group(1), match.group(2)))
            if _START.search(line):
                if starts and ends[-1] is None:
                    ends[-1] = last  # killed: its last line is its end
                starts.append(when)
                ends.append(None)
            elif _FINISH.search(line.rstrip("\n")) and starts:
                ends[-1] = when
            last = when
    if not starts:
        return ()
    if (status_started is not None and status_finished is not None
            and abs(status_started - starts[-1]) <= _SAME_START):
        ends[-1] = status_finished  # the last run wrote final_status.json
    return tuple(Part(aux, a, b) for a, b in zip(starts, ends))


def iteration_labels(aux: str) -> Dict[str, Tuple[str, ...]]:
    """Per iterative job with ``values``, the value of each iteration (as text)."""
    labels: Dict[str, Tuple[str, ...]] = {}
    try:
        with open(os.path.join(aux, "journal.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                if '"submit"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                for job in record.get("jobs") or ():
                    values = (job.get("iteration") or {}).get("values") \
                        if isinstance(job, dict) else None
                    if isinstance(values, list) and job.get("name"):
                        labels[str(job["name"])] = tuple(_text(v) for v in values)
    except OSError:
        pass
    return labels


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def partial(aux: str, runs: Sequence[Part]) -> Optional[str]:
    """Why ``aux``'s files are not a finished run's, or None."""
    if journal_in_use(aux):
        return "the service is still running"
    if runs and runs[-1].finished is None:
        return "the service ended without finishing (killed?)"
    if not runs and not os.path.exists(os.path.join(aux, "final_status.json")):
        return "no final_status.json: the service is running or was killed"
    return None


def combine(runs: Sequence[Run]) -> Run:
    """Several service directories of one run directory as one Run (parts in time order)."""
    runs = sorted(runs, key=lambda r: (r.service_started is None, r.service_started or 0.0))
    nodes: Dict[str, set] = {}
    for run in runs:
        for name, cores in run.nodes:
            nodes.setdefault(name, set()).update(cores)
    labels: Dict[str, Tuple[str, ...]] = {}
    for run in runs:
        labels.update(run.labels)
    tasks = sorted((t for run in runs for t in run.tasks),
                   key=lambda t: (t.start is None, t.start or 0.0, t.name))
    started = [r.service_started for r in runs if r.service_started is not None]
    finished = [r.service_finished for r in runs if r.service_finished is not None]
    return Run(os.path.dirname(runs[0].aux_dir.rstrip(os.sep)), min(started, default=None),
               max(finished, default=None),
               tuple((name, tuple(sorted(cores))) for name, cores in nodes.items()),
               tuple(tasks), any(r.has_rtstats for r in runs),
               total_gpus=max((r.total_gpus for r in runs), default=0),
               parts=tuple(p for r in runs for p in (r.parts or ())), labels=labels,
               partial=next((r.partial for r in reversed(runs) if r.partial), None))
