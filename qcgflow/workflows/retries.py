"""``retries: n`` of workflow files: each failed attempt runs again, inside the task's job.

A workflow file runs as a requests file on a service that does not retry (ours and
upstream's), so the retries travel in the job itself:

* an ``exec`` / ``script`` task runs as ``/bin/bash -c LOOP qcgflow-retries N WT PROGRAM
  ARGS...`` (a script as ``/bin/bash -c SCRIPT``): the loop runs the program again while it
  exits non-zero, at most N more times, each attempt under ``timeout WT`` when the task has
  a ``wt``; the runtime still fills ``${it}`` / ``${itval}`` in every argument, with no
  shell quoting involved;
* a ``python`` task keeps its ``python -m qcgflow.runner`` command and gets
  ``QCGFLOW_RETRIES`` / ``QCGFLOW_ATTEMPT_WT`` in its environment: the runner then runs
  each attempt in a new process (qcgflow/build/attempts.py).

The semantics are the graph API's (docs/graph-api.md#retries): an attempt that FAILED (a
non-zero exit, an exception, its wall time exceeded) runs again; a task that did not run
because a dependency failed (OMITTED) does not; in a sweep, only the failed iterations run
again (each iteration is its own attempt loop); the tasks after it wait until it succeeded
or its last attempt failed; the error reported is the last attempt's. Each attempt has the
task's ``wt``; the job's wall time becomes (N + 1) x (wt + 2 s). Every failed attempt but
the last leaves one line on the task's stderr (``qcgflow: attempt 1 of 3 failed (exit
code 5); trying again``).

The transformation happens when the requests file is written (``Workflow.requests``), not
in ``Workflow.jobs``: the keys of ``--resume`` / ``--cache`` are made from the jobs and
leave ``retries`` out, as in the graph API.
"""

import copy
import math
from typing import Any, Dict, Optional

from qcgflow.runtime.protocol import parse_wall_time

RETRIES_ENV = "QCGFLOW_RETRIES"
ATTEMPT_WT_ENV = "QCGFLOW_ATTEMPT_WT"
GRACE = 2.0  # seconds per attempt for timeout's TERM -> KILL and the loop itself
MODELS = (None, "default", "threads")  # MPI ranks would each retry on their own

# $1 retries, $2 wall time of an attempt ("" for none), then the program and its arguments.
# Exit 124 (timeout's TERM) or 137 (its KILL) after a wall time is the time limit.
LOOP = r"""n=$1; wt=$2; shift 2
try=1
while :; do
  if [ -n "$wt" ]; then timeout -k 2 "$wt" "$@"; else "$@"; fi
  rc=$?
  [ "$rc" -eq 0 ] && exit 0
  if [ -n "$wt" ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; }; then
    why="exceeded its wall time (${wt}s)"
  else
    why="failed (exit code $rc)"
  fi
  if [ "$try" -gt "$n" ]; then
    echo "qcgflow: attempt $try of $((n + 1)) $why; no retries left" >&2
    exit "$rc"
  fi
  echo "qcgflow: attempt $try of $((n + 1)) $why; trying again" >&2
  try=$((try + 1))
done
"""


def retries_of(job: Dict[str, Any]) -> int:
    """The ``retries`` compile recorded in the job's ``attributes`` (0 without)."""
    attributes = job.get("attributes") or {}
    return int((attributes.get("qcgflow") or {}).get("retries") or 0)


def model_problem(job: Dict[str, Any]) -> Optional[str]:
    """Why this job cannot retry (None: it can)."""
    model = (job.get("execution") or {}).get("model")
    if retries_of(job) and model not in MODELS:
        return ("retries work with the default and threads models only: with %s each "
                "process of the job would retry on its own" % model)
    return None


def _is_python(execution: Dict[str, Any]) -> bool:
    return (execution.get("args") or [])[:2] == ["-m", "qcgflow.runner"]


def with_retries(job: Dict[str, Any]) -> Dict[str, Any]:
    """The job as it goes to the requests file: with its attempt loop when it has retries
    (a new dict; ``job`` is left as it is)."""
    retries = retries_of(job)
    if not retries:
        return job
    wall_time = parse_wall_time((job.get("resources") or {}).get("wt"))
    job = copy.deepcopy(job)
    execution = job["execution"]
    if _is_python(execution):
        env = dict(execution.get("env") or {})
        env[RETRIES_ENV] = str(retries)
        if wall_time:
            env[ATTEMPT_WT_ENV] = "%g" % wall_time
        execution["env"] = env
    else:
        if "script" in execution:
            command = ["/bin/bash", "-c", execution.pop("script")]
        else:
            command = [execution.pop("exec")] + list(execution.pop("args", []))
        execution["exec"] = "/bin/bash"
        execution["args"] = ["-c", LOOP, "qcgflow-retries", str(retries),
                             "%g" % wall_time if wall_time else ""] + command
    if wall_time:
        job.setdefault("resources", {})["wt"] = "%ds" % math.ceil(
            (retries + 1) * (wall_time + GRACE))
    return job
