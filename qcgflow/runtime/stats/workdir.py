"""Reading a finished (or running) service's working files back into typed records.

::

    WD (the service's --wd, or its .qcgpjm-service-<id>/ directory)
      -> find_aux_dir -> jobs.report (JSON lines or text), final_status.json, service.log,
                         rtstats.jsonl (--enable-rt-stats)
      -> load_run -> Run(tasks, nodes, service start/finish)

Times are seconds on one scale: local naive dates (jobs.report, final_status.json,
service.log and rtstats all write those) read as if they were UTC, so that a report made on
another machine, in another time zone, gives the same figures.

A *task* is one unit that the service ran: an iteration of an iterative job, or a job
without iterations. The summary entry of an iterative job (its parent) is not a task.
"""

import glob
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Dict, List, Optional, Sequence, Tuple

from ..client.workdir import AUX_PREFIX, is_service_dir, service_dirs
from ..client.workdir import read_report as stream_report
from ..errors import RuntimeLayerError
from .rtstats import RTSTATS_FILE, read_rtstats

_EPOCH = datetime(1970, 1, 1)
_FINAL = frozenset(("SUCCEED", "FAILED", "CANCELED", "OMITTED"))
_RESOURCES_LINE = re.compile(r"resources: (\d+) nodes, (\d+) cores \(([^)]*)\)")
_GPUS_LINE = re.compile(r"resources: (\d+) GPUs \(")
_LOG_DATE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d+) ")
_ALLOCATION_PART = re.compile(r"([^,\[\]]+)\[([0-9:]*)\]")


class WorkdirError(RuntimeLayerError):
    """The directory is not a usable service working directory (the message says why)."""


@dataclass(frozen=True)
class Task:
    """One unit that ran (or was meant to run), with what the working files say of it.

    ``scheduled``/``started``/``finished`` are the service's own records (history dates:
    SCHEDULED, EXECUTING, the final state); ``real_start``/``real_end`` are the launcher's
    exact process times (rtstats) when they were recorded.
    """

    name: str
    job: str
    state: str
    queued: Optional[float]
    scheduled: Optional[float]
    started: Optional[float]
    finished: Optional[float]
    cores: Tuple[Tuple[str, int], ...]
    pid: Optional[int]
    real_start: Optional[float] = None
    real_end: Optional[float] = None
    gpus: Tuple[Tuple[str, int], ...] = ()  # (node, GPU id) pairs, runtime "gpus"

    @property
    def start(self) -> Optional[float]:
        """Best known start: the launcher's if recorded, else the EXECUTING date."""
        return self.real_start if self.real_start is not None else self.started

    @property
    def end(self) -> Optional[float]:
        """Best known end: the launcher's if recorded, else the final state's date."""
        return self.real_end if self.real_end is not None else self.finished

    @property
    def ran(self) -> bool:
        return self.start is not None and self.end is not None


@dataclass(frozen=True)
class Part:
    """One service run behind the working files: the first, or a ``--resume`` of it (the
    next allocation), or one of several service directories of a run directory."""

    aux_dir: str
    started: float
    finished: Optional[float]  # None: still running, or killed without a last log line


@dataclass(frozen=True)
class Run:
    """Everything one service run left behind, ready for the metrics.

    ``service_started`` is the first part's start and ``service_finished`` the last one's
    end: the span of every allocation the run had (``parts``, in time order).
    ``labels``: per iterative job, the value of each iteration (a sweep's values, from the
    journal's submissions) where known. ``partial``: why the files are not final (the
    service is still running, or was killed), None when they are.
    """

    aux_dir: str
    service_started: Optional[float]
    service_finished: Optional[float]
    nodes: Tuple[Tuple[str, Tuple[int, ...]], ...]
    tasks: Tuple[Task, ...]
    has_rtstats: bool
    total_gpus: int = 0  # from service.log's "resources: N GPUs (...)" line
    parts: Tuple[Part, ...] = ()
    labels: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    partial: Optional[str] = None

    @property
    def total_cores(self) -> int:
        return sum(len(cores) for _, cores in self.nodes)

    @property
    def total_nodes(self) -> int:
        return len(self.nodes)

    @property
    def runtime(self) -> Optional[float]:
        if self.service_started is None or self.service_finished is None:
            return None
        return self.service_finished - self.service_started


# --------------------------------------------------------------------------- time helpers

def parse_date(text: str) -> float:
    """A naive ISO date (``T`` or space separated) -> seconds on the common scale."""
    return (datetime.fromisoformat(text.replace(",", ".")) - _EPOCH).total_seconds()


def format_date(seconds: float) -> str:
    return str(_EPOCH + timedelta(seconds=seconds))


def parse_gpus(text: str) -> Tuple[Tuple[str, int], ...]:
    """``'n1=0,1;n2=3'`` (runtime ``gpus``) -> ``(('n1', 0), ('n1', 1), ('n2', 3))``."""
    pairs = []
    for part in (text or "").split(";"):
        node, _, ids = part.partition("=")
        pairs.extend((node, int(gpu)) for gpu in ids.split(",") if gpu.isdigit())
    return tuple(pairs)


def parse_allocation(text: str) -> Tuple[Tuple[str, int], ...]:
    """``'n0[0:1],n1[0]'`` -> ``(('n0', 0), ('n0', 1), ('n1', 0))``."""
    cores = []
    for node, ids in _ALLOCATION_PART.findall(text or ""):
        cores.extend((node, int(core)) for core in ids.split(":") if core)
    return tuple(cores)


# --------------------------------------------------------------------------- locating

def find_aux_dir(path: str) -> str:
    """The ``.qcgpjm-service-*`` directory meant by ``path``.

    Raises:
        WorkdirError: ``path`` is missing, holds no service directory, or several.
    """
    if not os.path.isdir(path):
        raise WorkdirError("%s: no such directory" % path)
    if _is_aux_dir(path):
        return path
    found = service_dirs(path)
    if not found:
        raise WorkdirError("%s: not a qcgflow/QCG-PilotJob working directory (no %s* directory "
                           "and no jobs.report or service.log in it)" % (path, AUX_PREFIX))
    if len(found) > 1:
        raise WorkdirError("%s holds %d service directories (%s): give one of them"
                           % (path, len(found), ", ".join(os.path.basename(d) for d in found)))
    return found[0]


def _is_aux_dir(path: str) -> bool:
    return (is_service_dir(path)
            or os.path.exists(os.path.join(path, "service.log"))
            or bool(_report_files(path)))


def _report_files(aux_dir: str) -> List[str]:
    default = os.path.join(aux_dir, "jobs.report")
    if os.path.exists(default):
        return [default]
    return sorted(glob.glob(os.path.join(glob.escape(aux_dir), "*.report")))


# --------------------------------------------------------------------------- jobs.report

def read_report(path: str) -> List[dict]:
    """The entries of a jobs.report, JSON lines or ``--report-format text`` (OSError when
    it cannot be read); the one reader is ``runtime/client/workdir.py``'s."""
    return list(stream_report(path, strict=True))


def _tasks_from_report(entries: Sequence[dict]) -> Dict[str, Task]:
    """The last attempt of every unit, by name."""
    return {task.name: task for task in _attempts(entries)}


def _attempts(entries: Sequence[dict]) -> List[Task]:
    """Every attempt of every unit, in the report's order: after a ``--resume`` the same
    aux dir's jobs.report holds a unit once per service run that ended it (interrupted in
    one allocation, run again in the next). A line repeating an earlier one's history (a
    unit restored by the resume without running) is not a new attempt."""
    names = {e["name"] for e in entries}
    parents = {n.rsplit(":", 1)[0] for n in names
               if ":" in n and n.rsplit(":", 1)[1].lstrip("-").isdigit()}
    tasks: List[Task] = []
    seen = set()
    for entry in entries:
        name = entry["name"]
        if name in parents:
            continue
        key = (name, json.dumps(entry.get("history"), sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        dates: Dict[str, float] = {}
        for item in entry.get("history") or ():
            try:
                dates.setdefault(item["state"], parse_date(item["date"]))
            except (KeyError, TypeError, ValueError):
                continue
        runtime = entry.get("runtime") or {}
        state = entry.get("state", "?")
        pid = runtime.get("pid")
        tasks.append(Task(
            name=name, job=_job_of(name, parents), state=state, queued=dates.get("QUEUED"),
            scheduled=dates.get("SCHEDULED"), started=dates.get("EXECUTING"),
            finished=dates.get(state) if state in _FINAL else None,
            cores=parse_allocation(runtime.get("allocation", "")),
            pid=int(pid) if str(pid or "").isdigit() else None,
            gpus=parse_gpus(runtime.get("gpus", ""))))
    return tasks


def _job_of(name: str, parents) -> str:
    base = name.rsplit(":", 1)[0]
    return base if ":" in name and base in parents else name


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
        from .parts import combine  # noqa: PLC0415 - one module each way would be a cycle
        found = [d for d in service_dirs(path) if _report_files(d)]
        if len(found) > 1:
            return combine([load_run(d) for d in found])
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
    from . import parts  # noqa: PLC0415
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
