"""``qcgflow processes tree|apps WD JOB``: the processes a job ran, from --enable-proc-stats.

::

    ptrace_*.log (one per sampler/node) -> records (pid, ppid, created, ...)
    jobs.report -> the task's pid and run window
      -> the task's own process (pid + creation inside the window, as pids are reused)
      -> its descendants (ppid links, created after their parent) -> tree | apps

"apps" are the leaves of the tree: the processes that did the work, below any shells,
``mpirun`` or other launchers in between.

Creation times come from psutil, corrected by the sampler for the whole-second boot time
psutil counts from; the window is still widened by a second and a half, so that a run
sampled without that correction (or on a clock that moved) is matched too.
"""

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .procstats import PTRACE_PREFIX
from .workdir import Run, Task, WorkdirError, parse_date

_SLACK = 1.5  # seconds: psutil creation times vs the service's dates


@dataclass
class Proc:
    record: dict
    created: float
    children: List["Proc"] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.record["pid"]

    @property
    def label(self) -> str:
        return "%d:%s" % (self.pid, self.record.get("name") or "?")


def load_processes(aux_dir: str) -> List[Proc]:
    """Every sampled process of the run (all nodes).

    Raises:
        WorkdirError: the run was not made with --enable-proc-stats.
    """
    paths = sorted(glob.glob(os.path.join(glob.escape(aux_dir), PTRACE_PREFIX + "*.log")))
    if not paths:
        raise WorkdirError("%s: no process statistics (ptrace_*.log): run the service with "
                           "--enable-proc-stats" % aux_dir)
    procs = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise WorkdirError("%s: unreadable process statistics (%s)" % (path, exc)) from exc
        for record in data.get("processes", ()):
            record.setdefault("node", data.get("node"))
            try:
                procs.append(Proc(record, parse_date(record["created"])))
            except (KeyError, TypeError, ValueError):
                continue
    return procs


def select_tasks(run: Run, name: str) -> List[Task]:
    """The task ``name``, or every task of the iterative job ``name``.

    Raises:
        WorkdirError: no such job in jobs.report.
    """
    exact = [t for t in run.tasks if t.name == name]
    found = exact or sorted((t for t in run.tasks if t.job == name), key=lambda t: t.name)
    if not found:
        raise WorkdirError("no job '%s' in %s/jobs.report" % (name, run.aux_dir))
    return found


def job_tree(task: Task, procs: Sequence[Proc]) -> Optional[Proc]:
    """The task's process with its descendants, or None when it was never sampled."""
    if task.pid is None:
        return None
    low = (task.scheduled or task.start or 0.0) - _SLACK
    high = (task.end if task.end is not None else float("inf")) + _SLACK
    candidates = [p for p in procs if p.pid == task.pid and low <= p.created <= high]
    if not candidates:
        return None
    anchor = task.start or low
    root = min(candidates, key=lambda p: abs(p.created - anchor))
    by_parent: Dict[int, List[Proc]] = {}
    for proc in procs:
        by_parent.setdefault(proc.record.get("ppid"), []).append(proc)
    _attach(root, by_parent, high, set())
    return _copy(root)


def _attach(node: Proc, by_parent, high: float, seen: set) -> None:
    seen.add(id(node))
    node.children = sorted((c for c in by_parent.get(node.pid, ())
                            if id(c) not in seen and node.created - _SLACK <= c.created <= high),
                           key=lambda c: (c.created, c.pid))
    for child in node.children:
        _attach(child, by_parent, high, seen)


def _copy(node: Proc) -> Proc:
    return Proc(node.record, node.created, [_copy(c) for c in node.children])


def leaves(root: Proc) -> List[Proc]:
    if not root.children:
        return [root]
    out: List[Proc] = []
    for child in root.children:
        out.extend(leaves(child))
    return out


# --------------------------------------------------------------------------- rendering

def tree_text(task: Task, root: Proc) -> str:
    lines = ["job %s, job process id %d, application name %s"
             % (task.name, root.pid, leaves(root)[0].record.get("name"))]

    def walk(node: Proc, depth: int) -> None:
        when = ("created %s" % node.record.get("created") if depth == 0 else
                "after %.2f secs" % (node.created - root.created))
        lines.append("%s--%s (%s) node(%s) %s" % ("      " * depth + "  ", node.label,
                                                  _cmdline(node.record), node.record.get("node"),
                                                  when))
        for child in node.children:
            walk(child, depth + 1)
    walk(root, 0)
    return "\n".join(lines) + "\n"


def apps_text(root: Proc, by_pid: Dict[int, Proc]) -> str:
    apps = leaves(root)
    lines = ["found %d target processes" % len(apps)]
    for proc in apps:
        record = proc.record
        parent = by_pid.get(record.get("ppid"))
        lines += [proc.label,
                  "\tcreated: %s" % record.get("created"),
                  "\tcmdline: %s" % _cmdline(record),
                  "\tparent: %s:%s" % (record.get("ppid"), parent.record.get("name")
                                       if parent else record.get("parent_name")),
                  "\tnode: %s" % record.get("node"),
                  "\tcpu affinity: %s" % record.get("cpu_affinity"),
                  "\tcpu times: %s" % record.get("cpu_times"),
                  "\tmemory info: %s" % record.get("memory_info"),
                  "\tmemory percent: %s" % record.get("memory_percent")]
    return "\n".join(lines) + "\n"


def tree_json(task: Task, root: Proc) -> dict:
    def node(proc: Proc) -> dict:
        data = dict(proc.record)
        data["children"] = [node(c) for c in proc.children]
        return data
    return {"job": task.name, "pid": root.pid, "tree": node(root)}


def apps_json(task: Task, root: Proc) -> dict:
    return {"job": task.name, "pid": root.pid, "apps": [dict(p.record) for p in leaves(root)]}


def all_by_pid(root: Proc) -> Dict[int, Proc]:
    out = {root.pid: root}
    for child in root.children:
        out.update(all_by_pid(child))
    return out


def _cmdline(record: dict) -> str:
    return " ".join(record.get("cmdline") or ()) or "?"
