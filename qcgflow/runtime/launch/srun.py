"""One ``srun`` per task (``--disable-nl``): the fallback without node launcher agents.

A task bound to CPUs of one node (``ProcessSpec.cpus`` set) is started as a one-task Slurm
step on that node, bound with ``--cpu-bind=mask_cpu``; the ``srun`` process runs here under
the local launcher, so stdout/stderr files, signals (srun forwards SIGTERM to the step) and
exit codes work as for local processes. Commands that are launchers themselves (mpirun,
srun for the MPI models: ``cpus`` unset) run here unchanged. Each step costs a round trip
to slurmctld (~35 ms on an idle one-host cluster), which is why agents are the default.
"""

from dataclasses import replace
from typing import Optional, Sequence

from .local import ProcessSpec


def srun_argv(node: str, cpus: Sequence[int], argv: Sequence[str]) -> list:
    """The ``srun`` command that runs ``argv`` on ``node`` bound to ``cpus``."""
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    # --overlap: steps share the allocation's CPUs (we assign them, not Slurm);
    # --export=ALL: the step gets the environment the task was given (Popen's env).
    return ["srun", "--overlap", "-N1", "-n1", "-w", node, "--cpu-bind=mask_cpu:%#x" % mask,
            "--export=ALL", "--kill-on-bad-exit=1", "--quiet", "--"] + list(argv)


class SrunLauncher:
    """Wraps a local launcher; bound single-node tasks become ``srun`` steps."""

    def __init__(self, inner):
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    def launch(self, spec: ProcessSpec, on_started, on_exit, on_error) -> None:
        if spec.cpus and spec.node:
            spec = replace(spec, argv=srun_argv(spec.node, spec.cpus, spec.argv), cpus=None,
                           warm=False)
        self._inner.launch(spec, on_started, on_exit, on_error)

    def signal(self, pid: int, signum: int, node: Optional[str] = None) -> bool:
        return self._inner.signal(pid, signum, node)

    def kill_all(self) -> None:
        self._inner.kill_all()

    def close(self) -> None:
        self._inner.close()
