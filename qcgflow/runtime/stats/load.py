"""Assembling a ``Run`` from a service's working files: the reading pieces of
``workdir.py`` (jobs.report, records, dates) and the parts of a resumed run (``parts.py``).

::

    WD -> workdir.find_aux_dir -> workdir.read_report -> attempts (Task per run of a unit)
       -> rtstats.jsonl (exact process times, --enable-rt-stats) merged onto the attempts
       -> final_status.json / service.log: service start and end, nodes and cores, GPUs
       -> parts.service_runs / iteration_labels / partial -> Run

It sits above both ``workdir`` and ``parts`` (each of which reads one kind of file), so
neither imports the other's importer.
"""

import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from . import parts
from .rtstats import RTSTATS_FILE, read_rtstats
from ..client.workdir import service_dirs
from .workdir import (Run, Task, WorkdirError, _attempts, _is_aux_dir,
                      _report_files, find_aux_dir, parse_allocation, parse_date, read_report)

_RESOURCES_LINE = re.compile(r"resources: (\d+) nodes, (\d+) cores \(([^)]*)\)")
_GPUS_LINE = re.compile(r"resources: (\d+) GPUs \(")
_LOG_DATE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d+) ")


# --------------------------------------------------------------------------- the run

def load_run(path: str, every_service: bool = False) -> Run:
    """Read the working files of the service run in ``path``.

    ``every_service``: a directory holding several service directories (``qcgflow run
    --resume`` starts a new service each time) gives one Run of all of them, each a part
    (otherwise that is an error asking for one).

    Raises:
        WorkdirError: not a working directory, or no jobs.report in it.
    """
    if every_service and os.path.isdir(path) and not _is_aux_dir(path):
        found = [d for d in service_dirs(path) if _report_files(d)]
        if len(found) > 1:
            return parts.combine([load_run(d) for d in found])
    aux = find_aux_dir(path)
    reports = _report_files(aux)
    if not reports:
        raise WorkdirError("%s: no jobs.report (the service did not run any job, or it was "
                           "started with another --report-file)" % aux)
    try:
        tasks = _attempts(read_report(reports[0]))
    except OSError as exc:
        raise WorkdirError("%s: %s" % (reports[0], exc.strerror or exc)) from exc
    header, has_rt = None, False
    rt_path = os.path.join(aux, RTSTATS_FILE)
    if os.path.exists(rt_path):
        header, records = read_rtstats(rt_path)
        has_rt = True
        tasks = _merge_rtstats(tasks, records)
    started, finished, log_nodes, gpus = _service_times_and_nodes(aux)
    nodes = _nodes(header, log_nodes, tasks)
    ordered = tuple(sorted(tasks, key=lambda t: (t.start is None, t.start or 0.0, t.name)))
    runs = parts.service_runs(aux, started, finished)
    if runs:  # after a --resume: from the first run's start to the last one's end
        started = runs[0].started
        if runs[-1].finished is not None:
            finished = runs[-1].finished
        elif finished is not None and finished < runs[-1].started:
            finished = None  # final_status.json of an earlier run: the last one still runs
    return Run(aux, started, finished, nodes, ordered, has_rt, total_gpus=gpus, parts=runs,
               labels=parts.iteration_labels(aux), partial=parts.partial(aux, runs))


def _merge_rtstats(tasks: List[Task], records: Sequence[dict]) -> List[Task]:
    """The launcher's exact times onto the attempts: a record goes to the attempt of its
    unit whose service dates enclose its start (several attempts after a resume)."""
    by_name: Dict[str, List[int]] = {}
    for index, task in enumerate(tasks):
        by_name.setdefault(task.name, []).append(index)
    merged = list(tasks)
    for record in records:
        try:
            start, end = parse_date(record["start"]), parse_date(record["end"])
        except (KeyError, TypeError, ValueError):
            continue
        candidates = [i for i in by_name.get(record.get("name"), ())
                      if merged[i].real_start is None]
        if not candidates:
            continue  # ended after the report was closed (service killed): not reported
        index = min(candidates, key=lambda i: _distance(merged[i], start))
        task = merged[index]
        cores = task.cores or parse_allocation(record.get("allocation", ""))
        merged[index] = Task(task.name, task.job, task.state, task.queued, task.scheduled,
                             task.started, task.finished, cores,
                             task.pid or record.get("pid"), start, end, task.gpus)
    return merged


def _distance(task: Task, start: float) -> float:
    """How far a process start lies from an attempt's SCHEDULED..final span (0: inside)."""
    low = next((d for d in (task.scheduled, task.started, task.queued) if d is not None),
               None)
    high = task.finished if task.finished is not None else low
    if low is None:
        return float("inf")
    if start < low:
        return low - start
    return max(0.0, start - high) if high is not None else 0.0


def _service_times_and_nodes(aux: str):
    started = finished = None
    status_path = os.path.join(aux, "final_status.json")
    if os.path.exists(status_path):
        try:
            with open(status_path, encoding="utf-8") as handle:
                status = json.load(handle)
            system = status.get("System", {})
            started = parse_date(system["Started"]) if system.get("Started") else None
            finished = parse_date(system["Generated"]) if system.get("Generated") else None
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # a torn file: fall back on service.log
    log_nodes: List[Tuple[str, int]] = []
    log_gpus = 0
    log_first = log_last = None
    log_path = os.path.join(aux, "service.log")
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _LOG_DATE.match(line)
                if match:
                    when = parse_date("%s.%s" % (match.group(1), match.group(2)))
                    log_first = when if log_first is None else log_first
                    log_last = when
                gpus = _GPUS_LINE.search(line)
                if gpus and not log_gpus:
                    log_gpus = int(gpus.group(1))
                resources = _RESOURCES_LINE.search(line)
                if resources and not log_nodes:
                    for part in resources.group(3).split(", "):
                        name, _, count = part.rpartition(":")
                        if name and count.isdigit():
                            log_nodes.append((name, int(count)))
    return (started if started is not None else log_first,
            finished if finished is not None else log_last, log_nodes, log_gpus)


def _nodes(header: Optional[dict], log_nodes, tasks) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    """The node/core layout: exact from rtstats, else from service.log's counts completed
    with the core ids that tasks actually used."""
    if header and isinstance(header.get("resources"), dict):
        return tuple((name, tuple(int(c) for c in cores))
                     for name, cores in header["resources"].items())
    used: Dict[str, set] = {}
    for task in tasks:
        for node, core in task.cores:
            used.setdefault(node, set()).add(core)
    nodes = []
    for name, count in log_nodes:
        ids = set(used.pop(name, ()))
        candidate = 0
        while len(ids) < count:
            if candidate not in ids:
                ids.add(candidate)
            candidate += 1
        nodes.append((name, tuple(sorted(ids))))
    nodes.extend((name, tuple(sorted(ids))) for name, ids in sorted(used.items()))
    return tuple(nodes)
