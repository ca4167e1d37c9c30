"""``qcg.pilotjob.executionjob``: the one constant upstream's API tests read.

``SIG_KILL_TIMEOUT`` is how long a test waits for a canceled job to be killed: qcgflow's
grace between SIGTERM and SIGKILL of a cancel request (10 s, as upstream). ``LauncherExecutionJob`` (upstream's node-agent launcher,
driven directly by one Slurm test) has no qcgflow counterpart: that test is not applicable.
"""

from qcgflow.runtime.manager import CANCEL_GRACE


class ExecutionJob:
    SIG_KILL_TIMEOUT = CANCEL_GRACE


class LauncherExecutionJob(ExecutionJob):
    """Placeholder so the module imports; upstream's launcher internals are not emulated."""
