"""The report figures (``qcgflow report stats|launch-stats|rusage|efficiency``); pure.

Definitions (seconds unless said otherwise; a task is an iteration or a job without
iterations; "start"/"end" are the launcher's exact times when --enable-rt-stats recorded
them, otherwise the EXECUTING and final dates of jobs.report):

stats
    total jobs / failed jobs: tasks, and tasks that did not end SUCCEED (a task run again
    by a --resume counts once, in its last state).
    service runtime: final_status.json's Generated - Started (service.log as fallback).
    init overhead: first task start - service start; finish overhead: service finish -
    last task end; overhead ratio (%): their sum / service runtime; overhead core-hours:
    total cores x total overhead / 3600.
launch-stats (needs rtstats)
    start overhead of a task: process started (spawn returned) - SCHEDULED date (the
    moment the service decided to start it); finish overhead: final-state date - process
    reaped. real run time: process end - start; qcg run time: final-state date - SCHEDULED
    date (= real run time + both overheads).
rusage
    a core's utilisation: time some task ran on it / service runtime; the average is over
    the used cores (those that ran at least one task).
efficiency
    a used core's busy time / the span from its first task start to its last task end:
    idle time before its first and after its last task (service start-up, shut-down, the
    scheduling plan's tail) is left out, the gaps between its tasks are counted.
"""

from dataclasses import dataclass
from statistics import mean
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .workdir import Run, format_date

Core = Tuple[str, int]


@dataclass(frozen=True)
class Metric:
    """One figure: a JSON key, a label for the text form, the value and how to show it."""

    key: str
    label: str
    value: Any
    fmt: str = "%s"  # applied to the value in the text form; None values show as "-"

    def text(self) -> str:
        return "-" if self.value is None else self.fmt % self.value


@dataclass(frozen=True)
class CoreFigure:
    """A per-core line of ``--details``."""

    node: str
    core: int
    percent: Optional[float]  # None: the core ran nothing
    unused: Optional[float]   # seconds not used within the measured span


# --------------------------------------------------------------------------- intervals

def busy_intervals(run: Run) -> Dict[Core, List[Tuple[float, float]]]:
    """Merged (start, end) intervals per core, over the tasks that ran."""
    raw: Dict[Core, List[Tuple[float, float]]] = {}
    for task in run.tasks:
        if not task.ran:
            continue
        for core in task.cores:
            raw.setdefault(core, []).append((task.start, max(task.end, task.start)))
    return {core: _merge(spans) for core, spans in raw.items()}


def _merge(spans: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    spans.sort()
    merged = [list(spans[0])]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _busy(spans: Sequence[Tuple[float, float]]) -> float:
    return sum(b - a for a, b in spans)


def all_cores(run: Run, busy: Dict[Core, list]) -> List[Core]:
    """Every core of the run, in node order (cores seen only in allocations included)."""
    cores = [(node, core) for node, ids in run.nodes for core in ids]
    known = set(cores)
    cores.extend(sorted(c for c in busy if c not in known))
    return cores


# --------------------------------------------------------------------------- reports

def stats(run: Run) -> List[Metric]:
    ran = [t for t in run.tasks if t.ran]
    first = min((t.start for t in ran), default=None)
    last = max((t.end for t in ran), default=None)
    runtime = run.runtime
    init = _diff(first, run.service_started)
    finish = _diff(run.service_finished, last)
    total = None if init is None or finish is None else init + finish
    units = {t.name: t for t in sorted(run.tasks, key=lambda t: t.finished or 0.0)}
    return [  # a unit run again after a --resume counts once, in its last state
        Metric("total_jobs", "total jobs", len(units), "%d"),
        Metric("failed_jobs", "failed jobs", sum(t.state != "SUCCEED" for t in units.values()),
               "%d"),
        Metric("total_cores", "total cores", run.total_cores, "%d"),
        Metric("total_nodes", "total nodes", run.total_nodes, "%d"),
        Metric("service_started", "service started", _date(run.service_started)),
        Metric("service_finished", "service finished", _date(run.service_finished)),
        Metric("service_runtime", "service runtime", runtime, "%.2f secs"),
        Metric("init_overhead", "init overhead", init, "%.2f secs"),
        Metric("finish_overhead", "finish overhead", finish, "%.2f secs"),
        Metric("total_overhead", "total overhead", total, "%.2f secs"),
        Metric("overhead_ratio_pct", "overhead ratio (%)",
               _ratio(total, runtime), "%.1f"),
        Metric("overhead_core_hours", "overhead core-hours",
               None if total is None else run.total_cores * total / 3600.0, "%.4f"),
    ] + gpu_stats(run, ran)


def gpu_stats(run: Run, ran: Sequence) -> List[Metric]:
    """GPU figures, only for runs with GPUs: count, GPU-hours given to tasks, and their use
    (GPU-hours over total GPUs x service runtime)."""
    if not run.total_gpus and not any(t.gpus for t in run.tasks):
        return []
    seconds = sum(len(t.gpus) * (t.end - t.start) for t in ran)
    available = None if run.runtime is None or not run.total_gpus else \
        run.total_gpus * run.runtime
    return [
        Metric("total_gpus", "total GPUs", run.total_gpus, "%d"),
        Metric("gpu_hours", "GPU-hours of tasks", seconds / 3600.0, "%.4f"),
        Metric("gpu_use_pct", "GPU use (%)", _ratio(seconds, available), "%.1f"),
    ]


def launch_stats(run: Run) -> List[Metric]:
    measured = [t for t in run.tasks if t.real_start is not None and t.real_end is not None
                and t.scheduled is not None and t.finished is not None]
    starts = [t.real_start - t.scheduled for t in measured]
    finishes = [t.finished - t.real_end for t in measured]
    real = [t.real_end - t.real_start for t in measured]
    qcg = [t.finished - t.scheduled for t in measured]
    avg_total = _avg([s + f for s, f in zip(starts, finishes)])
    return [
        Metric("total_start_overhead", "total start overhead", sum(starts), "%.4f"),
        Metric("total_finish_overhead", "total finish overhead", sum(finishes), "%.4f"),
        Metric("total_overhead", "total start and finish overhead",
               sum(starts) + sum(finishes), "%.4f"),
        Metric("avg_start_overhead", "average job start overhead", _avg(starts), "%.4f"),
        Metric("avg_finish_overhead", "average job finish overhead", _avg(finishes), "%.4f"),
        Metric("avg_total_overhead", "average job total overhead", avg_total, "%.4f"),
        Metric("max_start_overhead", "max job start overhead", max(starts, default=None),
               "%.4f"),
        Metric("max_finish_overhead", "max job finish overhead", max(finishes, default=None),
               "%.4f"),
        Metric("avg_real_runtime", "average real job run time", _avg(real), "%.4f"),
        Metric("avg_qcg_runtime", "average qcg job run time", _avg(qcg), "%.4f"),
        Metric("overhead_per_runtime_pct", "average job overhead per runtime (%)",
               _ratio(avg_total, _avg(real)), "%.2f"),
        Metric("jobs", "generated for total jobs", len(measured), "%d"),
    ]


def rusage(run: Run) -> Tuple[List[Metric], List[CoreFigure]]:
    busy = busy_intervals(run)
    runtime = run.runtime
    details = []
    for core in all_cores(run, busy):
        spans = busy.get(core)
        if not spans or not runtime:
            details.append(CoreFigure(core[0], core[1], None, runtime))
            continue
        used = _busy(spans)
        details.append(CoreFigure(core[0], core[1], 100.0 * used / runtime, runtime - used))
    return _usage_metrics(details), details


def efficiency(run: Run) -> Tuple[List[Metric], List[CoreFigure]]:
    busy = busy_intervals(run)
    details = []
    for core in all_cores(run, busy):
        spans = busy.get(core)
        if not spans:
            details.append(CoreFigure(core[0], core[1], None, None))
            continue
        span = spans[-1][1] - spans[0][0]
        used = _busy(spans)
        details.append(CoreFigure(core[0], core[1], 100.0 * used / span if span > 0 else 100.0,
                                  span - used))
    return _usage_metrics(details), details


def _usage_metrics(details: List[CoreFigure]) -> List[Metric]:
    used = [d.percent for d in details if d.percent is not None]
    return [Metric("used_cores", "used cores", len(used), "%d"),
            Metric("avg_core_utilization_pct", "average core utilization (%)", _avg(used),
                   "%.1f%%")]


# --------------------------------------------------------------------------- rendering

def to_text(metrics: Sequence[Metric], details: Optional[Sequence[CoreFigure]] = None) -> str:
    width = max(len(m.label) for m in metrics)
    lines = ["%*s: %s" % (width, m.label, m.text()) for m in metrics]
    node = None
    for item in details or ():
        if item.node != node:
            node = item.node
            lines.append("  %s" % node)
        if item.percent is None:
            lines.append("      %-5d: unused" % item.core)
        else:
            lines.append("      %-5d: %5.1f%%, unused %.4f s" % (item.core, item.percent,
                                                                item.unused))
    return "\n".join(lines) + "\n"


def to_json(metrics: Sequence[Metric],
            details: Optional[Sequence[CoreFigure]] = None) -> Dict[str, Any]:
    data: Dict[str, Any] = {m.key: _round(m.value) for m in metrics}
    if details is not None:
        data["cores"] = [{"node": d.node, "core": d.core, "utilization_pct": _round(d.percent),
                          "unused_secs": _round(d.unused)} for d in details]
    return data


# --------------------------------------------------------------------------- helpers

def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _ratio(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    return None if part is None or not whole else 100.0 * part / whole


def _avg(values: Sequence[float]) -> Optional[float]:
    return mean(values) if values else None


def _date(seconds: Optional[float]) -> Optional[str]:
    return None if seconds is None else format_date(seconds)


def _round(value):
    return round(value, 6) if isinstance(value, float) else value
