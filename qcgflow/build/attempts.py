"""Retries of a Python task inside its job: ``python -m qcgflow.runner`` with
``QCGFLOW_RETRIES=N`` (and ``QCGFLOW_ATTEMPT_WT=SECONDS``) in its environment.

Each attempt is a new ``python -m qcgflow.runner`` process (as a resubmitted task would be:
no state carries over), with the same call and result files; a failed attempt is followed
by another while attempts are left. An attempt past its wall time is killed and its result
file records a ``TimeoutError``. The exit status is the last attempt's. Only the runner
imports this module, and only for tasks with retries (workflow files:
qcgflow/workflows/retries.py).
"""

import os
import subprocess
import sys
from typing import List, Optional

RETRIES_ENV = "QCGFLOW_RETRIES"
ATTEMPT_WT_ENV = "QCGFLOW_ATTEMPT_WT"


def run_attempts(args: List[str], retries: int, wall_time: Optional[float]) -> int:
    """Run ``python -m qcgflow.runner ARGS`` up to ``retries + 1`` times, until one exits
    0; return the last exit status."""
    env = {k: v for k, v in os.environ.items() if k not in (RETRIES_ENV, ATTEMPT_WT_ENV)}
    total = retries + 1
    code = 1
    for attempt in range(1, total + 1):
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            code = subprocess.run([sys.executable, "-m", "qcgflow.runner"] + list(args),
                                  env=env, timeout=wall_time).returncode
            why = "failed (exit code %d)" % code
        except subprocess.TimeoutExpired:  # run() killed it
            code = 124
            why = "exceeded its wall time (%gs)" % wall_time
            from qcgflow.build.payload import write_error
            write_error(args[1], TimeoutError("attempt %d of %d exceeded its wall time "
                                              "(%gs)" % (attempt, total, wall_time)))
        if code == 0:
            return 0
        sys.stderr.write("qcgflow: attempt %d of %d %s; %s\n" % (
            attempt, total, why, "trying again" if attempt < total else "no retries left"))
        sys.stderr.flush()
    return code


def from_environment() -> Optional[tuple]:
    """``(retries, wall_time)`` when the environment asks for retries, else None."""
    text = os.environ.get(RETRIES_ENV)
    if not text:
        return None
    try:
        retries = int(text)
        wall = os.environ.get(ATTEMPT_WT_ENV)
        return (retries, float(wall) if wall else None) if retries > 0 else None
    except ValueError:
        return None
