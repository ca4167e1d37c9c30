"""The local service of a session: ``runtime/client/spawn.py`` with the graph side's settings.

::

    LocalService.start(wd, nodes)
      spawn.start_service(`--net --wd WD [--nodes N] --warm-modules qcgflow.runner ...`,
                          cwd=WD, PYTHONPATH += our sys.path (tasks import the same code),
                          QCGFLOW_RUN_DIR=WD, ready line + --owner-fd: it stops if we die)
    LocalService.stop(client)
      finish request, wait; SIGTERM, wait; SIGKILL whatever is left of its process group

What the graph side tells every service it starts (``SERVICE_ARGS`` of ``session/warm.py``,
also used by ``qcgflow run`` and ``qcgflow service``): Python tasks (``python -m
qcgflow.runner``) may run in warm workers. Tasks of the service inherit ``QCGFLOW_RUN_DIR`` (the run's working directory) and
get ``QCG_PM_ZMQ_ADDRESS`` from the service: that is how a task finds its session.
"""

import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from qcgflow.errors import RunError
from qcgflow.runtime.client.spawn import (START_TIMEOUT, ServiceProcess, ServiceStartError,
                                          start_service)
from qcgflow.session.warm import with_warm_modules

FINISH_TIMEOUT = 10.0
RUN_DIR_ENV = "QCGFLOW_RUN_DIR"
ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
RT_STATS_ENV = "QCGFLOW_RT_STATS"  # "1": qcgflow.run/init record exact times by default
__all__ = ["LocalService", "START_TIMEOUT", "rt_stats_args"]


def rt_stats_args(rt_stats: Optional[bool]) -> List[str]:
    """The service option for ``rt_stats=`` of ``qcgflow.run``/``qcgflow.init``: True gives
    ``--enable-rt-stats`` (exact start/end of every task, docs/reports.md); None follows
    ``$QCGFLOW_RT_STATS`` (``qcgflow run SCRIPT --enable-rt-stats`` sets it)."""
    if rt_stats is None:
        rt_stats = os.environ.get(RT_STATS_ENV) == "1"
    return ["--enable-rt-stats"] if rt_stats else []


def import_paths() -> List[str]:
    """This process's import path: a service's tasks must find the same code."""
    return [os.path.abspath(p or os.curdir) for p in sys.path if os.path.isdir(p or os.curdir)]


class LocalService:
    """A ``qcgflow service --net`` child process; ``ready`` is its ready line."""

    def __init__(self, process: ServiceProcess):
        self.process = process
        self.ready: Dict[str, Any] = process.ready
        self.popen = process.popen
        self.template = process.template  # the zygote template forked for it, if any

    @classmethod
    def start(cls, wd: str, nodes: Optional[Any] = None, timeout: float = START_TIMEOUT,
              extra_args: Sequence[str] = (), zygote_template: bool = False) -> "LocalService":
        """Start the service; ``extra_args`` are more ``qcgflow service`` options.
        ``zygote_template``: the service's warm Python worker is a fork of this process
        made now (it has this process's imports; runtime/launch/template.py), when this
        process has one thread; else an ordinary one.

        Raises:
            RunError: it did not start (the message says why, with its own error).
        """
        args = ["--net", "--wd", wd] + (["--nodes", str(nodes)] if nodes is not None else [])
        try:
            process = start_service(with_warm_modules(args + list(extra_args)), cwd=wd,
                                    import_paths=import_paths(), env_extra={RUN_DIR_ENV: wd},
                                    timeout=timeout, zygote_template=zygote_template,
                                    stop_grace=FINISH_TIMEOUT)
        except ServiceStartError as exc:
            raise RunError(str(exc)) from None
        return cls(process)

    def stderr_tail(self, limit: int = 2000) -> str:
        return self.process.output_tail(limit)

    def liveness(self) -> Optional[str]:
        """None while the process runs; why it is gone otherwise."""
        return self.process.liveness()

    def stop(self, client=None) -> None:
        """``finish`` (when a client is given), then wait; SIGKILL the group if it lingers."""
        finish = None
        if client is not None:
            def finish():
                client.request({"request": "finish"}, timeout=FINISH_TIMEOUT)
        try:
            self.process.stop(grace=FINISH_TIMEOUT, finish=finish,
                              finish_timeout=FINISH_TIMEOUT)
        finally:
            self.process.close()
