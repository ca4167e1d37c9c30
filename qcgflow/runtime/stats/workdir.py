"""Reading a finished (or running) service's working files back into typed records.

::

    WD (the service's --wd, or its .qcgpjm-service-<id>/ directory)
      -> find_aux_dir -> jobs.report (JSON lines or text), final_status.json, service.log,
                         rtstats.jsonl (--enable-rt-stats)
      -> load.load_run -> Run(tasks, nodes, service start/finish)

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

_EPOCH = datetime(1970, 1, 1)
_FINAL = frozenset(("SUCCEED", "FAILED", "CANCELED", "OMITTED"))
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
