"""The composition root: builds the service from its configuration and runs it.

::

    ServiceConfig -> working dir + .qcgpjm-service-<id>/ (service.log, jobs.report)
                  -> ResourcePool (discovery) -> Manager + Executor + LocalLauncher
                  -> requests (file interface) -> RequestHandler -> replies in service.log
                  -> EventLoop.run() until every job is done (or finish / a signal)
                  -> final_status.json

Exit status of ``run_service``: 0 when the requests were processed and every accepted job
ended (whatever its state, as upstream), 2 for unusable input or options, 130/143 when
interrupted by SIGINT/SIGTERM (running tasks are killed first).
"""

import json
import logging
import os
import signal
import socket
import sys
from typing import Optional, Sequence

from .clock import SystemClock
from .config import ServiceConfig, parse_service_args
from .discovery import local_nodes
from .errors import RuntimeLayerError
from .eventloop import EventLoop
from .executor import Executor
from .handlers import RequestHandler, status_data
from .interfaces.file import read_requests
from .jobs import JobState
from .launch.local import LocalLauncher
from .manager import Manager
from .reports import JobsReport
from .resources import ResourcePool

_log = logging.getLogger("qcgflow.runtime.service")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class _Interrupted(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Service:
    """One running manager instance (local mode, file interface)."""

    def __init__(self, config: ServiceConfig, clock=None):
        self.config = config
        self.clock = clock or SystemClock()
        self.wd = os.path.abspath(config.wd or os.getcwd())
        self.service_id = config.service_id or "%s.%d" % (socket.gethostname(), os.getpid())
        self.tags = config.tags
        self.interfaces = ("file",)
        self.aux_dir = os.path.join(self.wd, ".qcgpjm-service-%s" % self.service_id)
        self.loop = EventLoop()
        self._log_handler: Optional[logging.Handler] = None
        self._stopping = False
        self.report: Optional[JobsReport] = None
        self.manager: Optional[Manager] = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Create the working files and all collaborators (no request is handled yet)."""
        nodes = local_nodes(self.config.nodes, system_core=self.config.system_core,
                            hostname=socket.gethostname(), cpu_count=os.cpu_count() or 1)
        pool = ResourcePool(nodes)
        os.makedirs(self.aux_dir, exist_ok=True)
        os.chdir(self.wd)  # tasks run here by default: no chdir per task
        self._setup_logging()
        _log.info("service %s starting in %s (tags: %s), pid %d", self.service_id, self.wd,
                  ",".join(self.tags) or "-", os.getpid())
        _log.info("resources: %d nodes, %d cores (%s)", pool.total_nodes, pool.total_cores,
                  ", ".join("%s:%d" % (name, len(cores)) for name, cores in pool.nodes))
        if os.environ.get("SLURM_JOB_ID") and self.config.resources == "auto":
            _log.warning("inside Slurm allocation %s but running in local mode (Slurm mode is "
                         "not available in this version)", os.environ["SLURM_JOB_ID"])
        self.manager = Manager(pool, self.clock, self.loop)
        self.report = JobsReport(os.path.join(self.aux_dir, self.config.report_file),
                                 self.config.report_format)
        self.manager.registry.listeners.append(self.report)
        self.loop.idle_hooks.append(lambda: self.report.flush_soon(self.loop))
        launcher = LocalLauncher(self.loop)
        self.launcher = launcher
        self.manager.executor = Executor(self.loop, launcher, self.wd, os.environ,
                                         self.manager.task_executing, self.manager.task_done)
        self.handler = RequestHandler(self.manager, self)

    def _setup_logging(self) -> None:
        handler = logging.FileHandler(os.path.join(self.aux_dir, "service.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("qcgflow")
        root.addHandler(handler)
        root.setLevel(getattr(logging, self.config.log_level.upper()))
        self._log_handler = handler

    # ------------------------------------------------------------------ control
    def finish_after_all(self) -> None:
        """finishAfterAllTasksDone: in file mode that is what happens anyway."""

    def finish(self) -> None:
        """The ``finish`` request: stop now, killing running tasks; queued jobs stay queued."""
        _log.info("finish requested: stopping")
        self._stopping = True
        self.manager.halt()
        self.manager.finish_all("canceled: the service was asked to finish")
        self.loop.call_soon(self._stop_when_tasks_gone)

    def _stop_when_tasks_gone(self) -> None:
        if len(self.launcher) == 0:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_tasks_gone)

    def _all_done(self) -> None:
        if not self._stopping:
            _log.info("all jobs finished")
            self.loop.stop()

    # ------------------------------------------------------------------ run
    def run_file(self, requests) -> None:
        for number, request in enumerate(requests, 1):
            reply = self.handler.handle(request)
            _log.info("request %d (%s): %s", number,
                      request.get("request") if isinstance(request, dict) else "?",
                      json.dumps(reply))
            if reply.get("code") != 0:
                print("qcgflow service: request %d: %s" % (number, reply.get("message")),
                      file=sys.stderr)
            if self._stopping:
                break
        self.manager.on_idle.append(self._all_done)
        self.loop.call_soon(lambda: self.loop.stop() if self.manager.is_idle() else None)
        self.loop.run()

    def close(self) -> None:
        """Write final_status.json and flush and close the working files."""
        if self.manager is not None:
            self.launcher.close()
        if self.report is not None:
            self.report.close()
        if self.manager is not None:
            path = os.path.join(self.aux_dir, "final_status.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(status_data(self.manager, self), handle, indent=2)
        _log.info("service %s finished", self.service_id)
        if self._log_handler is not None:
            logging.getLogger("qcgflow").removeHandler(self._log_handler)
            self._log_handler.close()

    def summary(self) -> Optional[str]:
        """One line about the jobs that did not succeed, or None when all did."""
        counts = self.manager.registry.counts()
        bad = {state: n for state, n in counts.items()
               if n and state in (JobState.FAILED, JobState.OMITTED, JobState.CANCELED)}
        if not bad:
            return None
        return "%d of %d jobs did not succeed (%s); details in %s" % (
            sum(bad.values()), len(self.manager.registry),
            ", ".join("%s: %d" % (state.name, n) for state, n in bad.items()),
            os.path.join(self.aux_dir, self.config.report_file))

    def interrupt(self, signum: int) -> None:
        _log.warning("interrupted by %s: killing running tasks", signal.Signals(signum).name)
        self._stopping = True
        self.manager.halt()
        self.manager.finish_all("canceled: the service was interrupted")
        self.loop.call_soon(self._stop_when_tasks_gone)
        try:
            self.loop.run()
        except _Interrupted:
            self.launcher.kill_all()


def run_service(argv: Sequence[str]) -> int:
    """``qcgflow service``: parse options, run, return the exit status."""
    try:
        config = parse_service_args(argv)
        requests = read_requests(config.file_path)
        service = Service(config)
        service.setup()
    except RuntimeLayerError as exc:
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT

    def on_signal(signum, _frame):
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = EXIT_OK
    try:
        service.run_file(requests)
    except _Interrupted as exc:
        service.interrupt(exc.signum)
        status = 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
    line = service.summary()
    if line:
        print("qcgflow service: %s" % line, file=sys.stderr)
    return status
