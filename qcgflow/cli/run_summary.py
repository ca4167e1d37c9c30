"""The summary table of ``qcgflow run`` and ``qcgflow status``.

::

    workflow slow: 2 jobs, 7 tasks in /tmp/run (3.1 s)          <- title

      state        jobs  iterations                              <- counts per state
      SUCCEED         0           2
      ...

    not succeeded:                                               <- job order, then
      sim:1 [b]        FAILED   exit code 5                         iteration order
                       stderr: /tmp/run/sim.1.err                   (never report order)
                       | b is bad                                <- its last lines
      sim              FAILED   1 of 6 iterations did not succeed

    not run:                                                     <- never started
      sim              -        iterations 5 [f]: no result
      post             -        not finished

An iteration of a workflow file's named sweep is named by its parameters, ``md[T=1.3]``
(``md[T=1.3,P=2]`` for a product), from ``attributes.qcgflow.sweep`` that the workflow file
compiler writes; another iteration is ``job:it`` followed by its sweep value (``[b]``, the
job's ``iteration.values``) when it has one. Functions of a ``workflow_cli.Progress``; the only
files read are those reported on (stderr tails, Python tasks' result files).
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from qcgflow.runtime.protocol import CANCELED, EXECUTING, FAILED, OMITTED, QUEUED, SUCCEED

STATES = (SUCCEED, FAILED, CANCELED, OMITTED, QUEUED, EXECUTING)  # the order of the table
STDERR_TAIL = 3  # lines of a failed task's stderr shown under it
_LINE = 160  # characters of one such line at most


def iterations(job: Dict[str, Any]) -> Optional[int]:
    """The number of iterations of a job description (None: not an iterative job)."""
    iteration = job.get("iteration")
    if not isinstance(iteration, dict):
        return None
    if "values" in iteration:
        return len(iteration["values"])
    return max(0, int(iteration.get("stop", 0)) - int(iteration.get("start", 0)))


def _value(job: Dict[str, Any], it: str) -> Optional[str]:
    iteration = job.get("iteration")
    if not isinstance(iteration, dict) or "values" not in iteration:
        return None
    try:
        return str(iteration["values"][int(it)])
    except (ValueError, IndexError, TypeError):
        return None


def _sweep(job: Dict[str, Any]) -> Dict[str, Any]:
    attributes = job.get("attributes")
    qcgflow = attributes.get("qcgflow") if isinstance(attributes, dict) else None
    sweep = qcgflow.get("sweep") if isinstance(qcgflow, dict) else None
    return sweep if isinstance(sweep, dict) else {}


def _params(job: Dict[str, Any], it: str) -> Optional[str]:
    """``T=1.3`` (``T=1.0,P=2``) for iteration ``it`` of a named sweep, else None."""
    sweep = _sweep(job)
    names = sweep.get("names")
    value = None
    if isinstance(sweep.get("values"), list):  # Python tasks: no iteration.values
        try:
            value = str(sweep["values"][int(it)])
        except (ValueError, IndexError):
            return None
    value = value if value is not None else _value(job, it)
    if not isinstance(names, list) or not names or value is None:
        return None
    parts = value.split(",") if len(names) > 1 else [value]
    if len(parts) != len(names):
        return None  # a value with a comma in a product: not told apart, keep the index
    return ",".join("%s=%s" % pair for pair in zip(names, parts))


def _label(name: str, job: Dict[str, Any]) -> str:
    job_name, _, it = name.partition(":")
    params = _params(job, it) if it else None
    if params is not None:
        return "%s[%s]" % (job_name, params)
    value = _value(job, it) if it else None
    return name if value is None else "%s [%s]" % (name, value)


def where(root: str, job: Dict[str, Any], stream: str, it: Optional[str]) -> str:
    """The path of a task's ``stream`` file (or why there is none)."""
    execution = job.get("execution") or {}
    path = execution.get(stream)
    if not path:
        return "not kept (no %s in the job description)" % stream
    values = {"root_wd": root, "it": it or "", "itval": (_value(job, it) if it else "") or ""}
    for key, value in values.items():
        path = path.replace("${%s}" % key, value)
    wd = (execution.get("wd") or "").replace("${root_wd}", root)
    return os.path.normpath(os.path.join(root, wd, path))


def _not_written(job: Dict[str, Any], path: str) -> str:
    """A note for a default stderr file that does not exist: created only when written
    (runtime/launch/streams.py), so the task wrote nothing there."""
    ours = (job.get("attributes") or {}).get("qcgflow")
    lazy = ours.get("when_written") if isinstance(ours, dict) else None
    if lazy and "stderr" in lazy and not os.path.lexists(path):
        return " (empty: nothing was written, so no file)"
    return ""


def tail(path: str, count: int = STDERR_TAIL) -> List[str]:
    """The last ``count`` non-blank lines of a file (none when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [line if len(line) <= _LINE else line[:_LINE] + "..." for line in lines[-count:]]


def _python_reason(root: str, job: Dict[str, Any], it: Optional[str]) -> Optional[str]:
    args = (job.get("execution") or {}).get("args") or []
    if len(args) < 4 or args[:2] != ["-m", "qcgflow.runner"]:
        return None
    path = args[3].replace("${root_wd}", root).replace("${it}", it or "")
    if not os.path.exists(path):
        return None
    from qcgflow.build import payload
    try:
        result = payload.read_result(path)
    except Exception:  # a damaged result file: fall back to the runtime's reason
        return None
    if result[0] != "error":
        return None
    return "raised %s: %s" % (result[2], result[1] if result[1] is not None else "?")


def _ranges(indices: List[int]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for index in indices:
        if out and out[-1][1] == index - 1:
            out[-1] = (out[-1][0], index)
        else:
            out.append((index, index))
    return out


def _unstarted(job: Dict[str, Any], seen: bytes, limit: int) -> str:
    """``iterations 5 [f], 7-9: no result`` for the iterations without a report entry
    (``seen``: 1 at each iteration index that has one)."""
    count = iterations(job) or 0
    missing = [i for i in range(count) if i >= len(seen) or not seen[i]]
    parts = []
    for first, last in _ranges(missing)[:limit]:
        if first == last:
            value = _params(job, str(first)) or _value(job, str(first))
            parts.append("%d [%s]" % (first, value) if value is not None else str(first))
        else:
            parts.append("%d-%d" % (first, last))
    more = ", ..." if len(_ranges(missing)) > limit else ""
    return "%d of %d iterations without a result: %s%s" % (len(missing), count,
                                                           ", ".join(parts), more)


def _order(progress, name: str) -> Tuple[int, int]:
    job_name, _, it = name.partition(":")
    position = progress.order.get(job_name, len(progress.order))
    return position, int(it) if it.isdigit() else 1 << 62  # the job after its iterations


def summary(progress, root: str, title: str, limit: int = 20) -> str:
    """The table printed at the end of a run and by ``qcgflow status``."""
    lines = [title, "", "  %-10s %6s %11s" % ("state", "jobs", "iterations")]
    iteration_counts = progress.iteration_counts
    counts = progress.counts()
    missing = [n for n in progress.jobs if n not in progress.states]
    if missing:
        counts["NOT FINISHED"] = len(missing)
    for state in list(dict.fromkeys(list(STATES) + list(counts) + list(iteration_counts))):
        if counts.get(state) or iteration_counts.get(state):
            lines.append("  %-10s %6d %11d" % (state, counts.get(state, 0),
                                               iteration_counts.get(state, 0)))
    failed = sorted(((name, entry) for name, entry in
                     list(progress.iterations.items()) + list(progress.entries.items())
                     if entry.get("state") not in (SUCCEED, None)),
                    key=lambda item: _order(progress, item[0]))
    if failed:
        lines += ["", "not succeeded:"]
        for name, entry in failed[:limit]:
            lines += _failure(progress, root, name, entry)
        if len(failed) > limit:
            lines.append("  ... and %d more (qcgflow status %s)" % (len(failed) - limit, root))
    if missing:
        lines += ["", "not run:" if progress.ended else "not finished:"]
    for name in missing[:limit]:
        job = progress.jobs.get(name, {})
        if iterations(job) is not None:
            reason = _unstarted(job, progress.seen.get(name, b""), 8)
        else:
            reason = "never started" if progress.ended else "not finished"
        lines.append("  %-16s %-8s %s" % (name, "-", reason))
    if len(missing) > limit:
        lines.append("  ... and %d more" % (len(missing) - limit))
    return "\n".join(lines)


def _failure(progress, root: str, name: str, entry: Dict[str, Any]) -> List[str]:
    job_name, _, it = name.partition(":")
    job = progress.jobs.get(job_name, {})
    state = entry.get("state")
    if not it and iterations(job) is not None and state == FAILED:
        bad = sum(1 for key in progress.iterations if key.startswith(name + ":"))
        reason = "%d of %d iterations did not succeed" % (bad, iterations(job))
    else:
        reason = _python_reason(root, job, it or None) or \
            entry.get("messages") or (state or "?").lower()
    lines = ["  %-16s %-8s %s" % (_label(name, job), state, reason)]
    if state == FAILED and (it or iterations(job) is None):
        path = where(root, job, "stderr", it or None)
        lines.append("  %-16s stderr: %s%s" % ("", path, _not_written(job, path)))
        lines += ["  %-16s | %s" % ("", line) for line in tail(path)]
    return lines
