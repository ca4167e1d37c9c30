"""The composition root: builds the service from its configuration and runs it.

::

    ServiceConfig -> working dir + .qcgpjm-service-<id>/ (service.log, jobs.report, address)
                  -> ResourcePool (discovery) -> Manager + Executor + LocalLauncher
                     (behind WarmLauncher: `python -m` tasks forked from a warm Python
                     worker, zygote.log; --disable-warm-workers)
                  -> requests file -> RequestHandler -> replies in service.log
                  -> --net: ROUTER socket (NetworkInterface) + PUB socket (StatusPublisher),
                            ipc:// in an owner-only directory by default, CURVE + ZAP on
                            any TCP address (security, owneronly), --ready-fd line
                  -> EventLoop.run() until every job is done (file only) or until a
                     ``finish`` request (network) or a signal
                  -> final_status.json

The environment is never written to disk (upstream dumps it to env.log). The service
directory is 0700 and its files 0600 (``owneronly``): journal.jsonl holds the jobs' env.

Exit status of ``run_service``: 0 when the requests were processed and every accepted job
ended (whatever its state, as upstream), 2 for unusable input or options, 3 when the node
agents could not start or were all lost, 130/143 when interrupted by SIGINT/SIGTERM
(running tasks are killed first), 143 also when Slurm signalled every node agent (the
allocation is ending) before the manager itself.
"""

import json
import logging
import os
import signal
import socket
import sys
from datetime import datetime
import uuid
from typing import Optional, Sequence

import zmq

from .clock import SystemClock
from .config import ServiceConfig, parse_service_args
from .discovery import allocation_shortfall, discover
from .errors import RuntimeLayerError
from .eventloop import EventLoop
from .logfile import ServiceLogHandler
from .executor import Executor
from .handlers import RequestHandler, status_data
from .interfaces.file import read_requests
from .interfaces.network import NetworkInterface, bind
from .publisher import StatusPublisher
from .security import (HandshakeWatcher, ZapHandler, is_loopback, make_curve_server,
                       write_keys)
from .jobs import JobState
from .journal import JOURNAL_FILE, RUN_ENV, JournalWriter, plan_resume, read_journal
from .launch.local import LocalLauncher
from .launch.pyworker import WarmLauncher
from .manager import Manager
from .owner import watch_owner
from .nodeagents import make_slurm_launcher
from .owneronly import (IpcEndpoints, make_private_dir, private_open, private_umask,
                        tighten)
from .protocol import MODELS
from .reports import JobsReport
from .resources import ResourcePool
from .leftovers import kill_leftovers
from .resume import apply_plan, locate_aux_dir, service_id_of
from .stats.hooks import ServiceStats
from .tracker import TrackFiles, has_track_files, read_track_files

_log = logging.getLogger("qcgflow.runtime.service")

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_STARTED = 3  # the node agents did not start (Slurm mode)
EXIT_REFUSED = 4  # the service ran, but refused at least one request of its --file-path


def _version() -> str:
    """qcgflow's ``__version__``, read from the package's ``__init__.py`` text: the runtime
    does not import the graph side, and importlib.metadata costs ~0.2 s at every start."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "__init__.py")
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "unknown"


class _Interrupted(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Service:
    """One running manager instance (local mode; file and network interfaces)."""

    def __init__(self, config: ServiceConfig, clock=None):
        self.config = config
        self.clock = clock or SystemClock()
        # --resume reuses the interrupted run's aux dir (as upstream), its parent by default
        resume_dir = locate_aux_dir(config.resume) if config.resume else None
        self.wd = os.path.abspath(config.wd or (os.path.dirname(resume_dir) if resume_dir
                                                else os.getcwd()))
        self.service_id = (config.service_id or (resume_dir and service_id_of(resume_dir))
                           or "%s.%d" % (socket.gethostname(), os.getpid()))
        self.tags = config.tags
        self.interfaces = tuple(name for name, on in (("file", bool(config.file_path)),
                                                      ("zmq", config.net)) if on)
        self.address: Optional[str] = None
        self.pub_address: Optional[str] = None
        self.keys_dir: Optional[str] = None
        self._context = None
        self._network: Optional[NetworkInterface] = None
        self._publisher: Optional[StatusPublisher] = None
        self._zap: Optional[ZapHandler] = None
        self._ipc: Optional[IpcEndpoints] = None
        self._watchers = []
        self.aux_dir = resume_dir or os.path.join(self.wd,
                                                  ".qcgpjm-service-%s" % self.service_id)
        self.journal: Optional[JournalWriter] = None
        self.track: Optional[TrackFiles] = None
        self._resume_plan = None
        self.loop = EventLoop()
        self._log_handler: Optional[logging.Handler] = None
        self._stopping = False
        self.report: Optional[JobsReport] = None
        self.manager: Optional[Manager] = None
        self.stats: Optional[ServiceStats] = None
        self.readiness = None  # AgentReadiness in Slurm mode with agents
        self.failure: Optional[str] = None  # why the service could not run the workflow
        self.allocation_end = None  # (message, signal): Slurm ended the agents' allocation
        self.refused = 0  # requests of the requests file answered with an error
        self._finish_when_idle = False  # finishAfterAllTasksDone was requested
        self.run_token: Optional[str] = None  # QCGFLOW_SERVICE_RUN of every task
        self._stop_reason: Optional[str] = None  # finish, SIGTERM, ...: for jobs.report

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Create the working files and all collaborators (no request is handled yet)."""
        self.resources_info = discover(self.config)
        pool = ResourcePool(self.resources_info.pool_nodes_with_gpus())
        pool.reserved_cores = 1 if self.resources_info.reserved_core else 0
        make_private_dir(self.aux_dir)
        os.chdir(self.wd)  # tasks run here by default: no chdir per task
        with private_umask():
            self._setup_logging()
        # upstream's first line (its tests and log readers look for it), then our detail
        _log.info("service %s version %s started %s @ %s (with tags %s) in %s, pid %d",
                  self.service_id, _version(), datetime.now(), socket.gethostname(),
                  ",".join((self.service_id,) + tuple(self.tags)), self.wd, os.getpid())
        _log.info("resources: %d nodes, %d cores (%s)", pool.total_nodes, pool.total_cores,
                  ", ".join("%s:%d" % (name, len(cores)) for name, cores in pool.nodes))
        if pool.total_gpus:
            _log.info("resources: %d GPUs (%s)", pool.total_gpus, ", ".join(
                "%s:%s" % (name, ",".join(map(str, ids))) for name, ids in pool.gpus.items()))
        for warning in self.resources_info.warnings:
            _log.warning("resources: %s", warning)
        shortfall = allocation_shortfall(self.resources_info)
        if shortfall:
            # On the terminal too: a partial allocation only shows as slowness otherwise.
            _log.warning("resources: %s", shortfall)
            print("qcgflow service: warning: %s" % shortfall, file=sys.stderr)
        options = {"models": MODELS} if self.in_slurm else {}
        if self.config.cancel_grace is not None:
            options["cancel_grace"] = self.config.cancel_grace
        self.manager = Manager(pool, self.clock, self.loop, **options)
        end = getattr(self.resources_info, "end_time", None)
        if end is not None:  # walltime awareness: never start what cannot end in time
            self.manager.deadline = end.timestamp()
            _log.info("the allocation ends at %s: jobs whose wt outlasts it stay queued", end)
        with private_umask():
            self.report = JobsReport(os.path.join(self.aux_dir, self.config.report_file),
                                     self.config.report_format)
        self.manager.registry.listeners.append(self.report)
        self.loop.idle_hooks.append(lambda: self.report.flush_soon(self.loop))
        self.handler = RequestHandler(self.manager, self)
        if self.config.net:
            self._setup_network()
        if self.config.parent:  # governor mode: this manager registers with a governor
            from .governor.link import attach_parent
            self.parent_link = attach_parent(self)
        task_env = dict(os.environ)
        # a client's forked zygote (launch/template.py) is for this service's zygote only
        template = task_env.pop("QCGFLOW_ZYGOTE_TEMPLATE", None)
        with private_umask():
            self._open_journal(task_env)
        if self.address:
            task_env["QCG_PM_ZMQ_ADDRESS"] = self.address
        if self.keys_dir:  # a task's own client finds the CURVE keys (qcgflow.client)
            task_env["QCGFLOW_KEYS_DIR"] = self.keys_dir
        slurm = self.in_slurm
        if slurm:
            # Tasks run on other nodes: the warm Python worker (one per service, here) is
            # not used; every task starts through its node's agent (or srun).
            launcher, self.readiness = make_slurm_launcher(
                self.loop, self.manager, self.config, self.aux_dir, self.wd, task_env,
                self._fail_start, self._allocation_ending)
        else:
            launcher = LocalLauncher(self.loop)
            if not self.config.disable_warm_workers:
                launcher = WarmLauncher(self.loop, launcher, task_env, self.wd,
                                        os.path.join(self.aux_dir, "zygote.log"),
                                        template=template)
        self.launcher = launcher
        self.manager.executor = Executor(self.loop, launcher, self.wd, task_env,
                                         self.manager.task_executing, self.manager.task_done,
                                         slurm=slurm, aux_dir=self.aux_dir,
                                         gpus=self.manager.pool.total_gpus > 0)
        self.stats = ServiceStats.attach(self.config, self.loop, self.manager, self.aux_dir)
        self._replay_journal()

    def _open_journal(self, task_env) -> None:
        """Lock the journal (refused when a live service holds it), read it when resuming."""
        path = os.path.join(self.aux_dir, JOURNAL_FILE)
        if not self.config.no_journal:
            self.journal = JournalWriter(path, self.loop, resumed=bool(self.config.resume))
        # Every task inherits the run token: what it leaves behind (daemons, also setsid or
        # double-forked ones) is found by it when the service ends, and on a resume.
        self.run_token = self.journal.token if self.journal is not None else uuid.uuid4().hex
        task_env[RUN_ENV] = self.run_token
        started = False
        if self.config.resume:  # read (and cut a torn tail) only while holding the lock
            records = read_journal(path)
            if not records and has_track_files(self.aux_dir):  # a QCG-PilotJob run
                records = read_track_files(self.aux_dir)
                _log.info("resuming QCG-PilotJob's run from %s/track.reqs, track.states",
                          self.aux_dir)
                if self.journal is not None:  # from now on the journal tells it all
                    self.journal.start()
                    self.journal.adopt(records)
                    started = True
            self._resume_plan = plan_resume(records)
        if self.journal is not None and not started:
            self.journal.start()

    def _replay_journal(self) -> None:
        """Resume: end leftovers, replay the journal, then journal what happens next."""
        plan = self._resume_plan
        if plan is not None:
            self._resume_plan = None
            kill_leftovers(plan.tokens)
            restored = apply_plan(plan, self.manager, os.path.join(self.aux_dir, JOURNAL_FILE))
            _log.info("resumed from %s: %d jobs, %d finished units restored, %d units "
                      "interrupted by the stop run again", self.aux_dir,
                      len(self.manager.registry), restored, plan.rerun)
        if self.journal is not None:
            self.manager.registry.listeners.append(self.journal)
            self.manager.on_submit.append(self.journal.submitted)
            self.manager.on_remove.append(self.journal.removed)
            # upstream's track.reqs/track.states too (tools look for them), after the replay
            # so a resumed run appends only what happens from now on
            journal = self.journal
            self.track = TrackFiles(self.aux_dir, lambda: journal.stopping)
            self.manager.registry.listeners.append(self.track)
            self.manager.on_submit.append(self.track.submitted)

    def _allocation_ending(self, node: str) -> None:
        """A node's agent was signalled (Slurm does that to every step when the allocation
        ends, the manager's own step included): the tasks ending now are interruptions,
        journaled to run again on --resume. The node takes no new work from here on."""
        self.manager.pool.disable(node)
        if not self._stopping:
            self._journal_stop("the agent on %s was terminated" % node)

    def _journal_stop(self, why: str) -> None:
        self._stop_reason = why
        if self.journal is not None:
            self.journal.stopping = True
            self.journal.stopped(why)

    @property
    def in_slurm(self) -> bool:
        """Whether resources came from a Slurm allocation (tasks go to node agents)."""
        info = getattr(self, "resources_info", None)
        return info is not None and getattr(info, "mode", "local") == "slurm"

    def _fail_start(self, message: str) -> None:
        """No node agent can run anything: stop (before the workflow started, or after
        every agent was lost). When Slurm signalled them all, the allocation is ending:
        that is an interruption (``allocation_end``), not a failure to start."""
        readiness = self.readiness
        if readiness is not None and readiness.allocation_ended:
            _log.warning("stopping: %s", message)
            self.allocation_end = (message, readiness.signum or signal.SIGTERM)
        else:
            started = readiness is not None and readiness.jobs_started
            _log.error("%s: %s", "stopping" if started else "cannot start", message)
            self.failure = message
        self._stopping = True
        self.manager.halt()
        self.manager.finish_all("canceled: %s" % message)
        self.loop.call_soon(self._stop_when_tasks_gone)

    def _setup_network(self) -> None:
        """Bind the request and publisher sockets: ``ipc://`` in an owner-only directory
        unless a TCP address or port was asked for; any TCP endpoint (loopback included:
        other users reach it too) is a CURVE server whose keys only the owner can read."""
        config = self.config
        self._context = zmq.Context()
        secret = None
        if config.net_tcp:
            self.keys_dir = os.path.join(self.aux_dir, "keys")
            _, secret, client_public = write_keys(self.keys_dir)
            self._zap = ZapHandler(self.loop, self._context, client_public)
            _log.info("binding %s: CURVE authentication on%s, keys in %s", config.net_address,
                      "" if not is_loopback(config.net_address) else
                      " (loopback is reachable by every local user)", self.keys_dir)
        else:
            self._ipc = IpcEndpoints(self.service_id)
        self._network = NetworkInterface(self.loop, self._context, self.handler.handle)
        if secret is not None:
            make_curve_server(self._network.socket, secret)
            self._watchers.append(HandshakeWatcher(self.loop, self._network.socket, "request"))
        if self._ipc is not None:
            self.address = self._network.start_endpoint(self._ipc.endpoint("request"))
        else:
            self.address = self._network.start(config.net_address, config.net_port,
                                               config.net_port_min, config.net_port_max)
        if not config.disable_pub:
            socket_ = self._context.socket(zmq.XPUB)  # PUB for SUBs, + subscriptions
            socket_.setsockopt(zmq.LINGER, 0)
            # Peers only send (un)subscriptions, i.e. topic prefixes: a longer message
            # drops that peer's connection instead of being buffered.
            socket_.setsockopt(zmq.MAXMSGSIZE, 4096)
            if secret is not None:
                make_curve_server(socket_, secret)
            if self._ipc is not None:
                self.pub_address = self._ipc.endpoint("status")
                socket_.bind(self.pub_address)
            else:
                self.pub_address = bind(socket_, config.net_address, config.net_pub_port,
                                        config.net_port_min, config.net_port_max)
            self._publisher = StatusPublisher(socket_, self.service_id, self.loop)
            self.manager.registry.listeners.append(self._publisher)
            self.manager.on_idle.append(self._publisher.no_jobs)
            _log.info("status publisher on %s", self.pub_address)
        with private_open(os.path.join(self.aux_dir, "address")) as handle:
            handle.write(self.address + "\n")

    def announce(self) -> None:
        """Write the --ready-fd line (addresses and directories) and close that descriptor."""
        if self.config.ready_fd is None:
            return
        line = json.dumps({"address": self.address, "pub_address": self.pub_address,
                           "aux_dir": self.aux_dir, "wd": self.wd, "pid": os.getpid(),
                           "keys_dir": self.keys_dir, "id": self.service_id,
                           "run": self.run_token})  # a client ends leftovers if we die
        try:
            with os.fdopen(self.config.ready_fd, "w") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            _log.warning("cannot write the ready line to fd %d: %s", self.config.ready_fd, exc)

    def _setup_logging(self) -> None:
        handler = ServiceLogHandler(os.path.join(self.aux_dir, "service.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("qcgflow")
        root.addHandler(handler)
        root.setLevel(getattr(logging, self.config.log_level.upper()))
        self._log_handler = handler

    # ------------------------------------------------------------------ control
    def finish_after_all(self) -> None:
        """finishAfterAllTasksDone: stop once every job has ended. In file mode that
        happens anyway; a network service (and a manager with ``--parent``) stops then
        too, as upstream's ``_wait_for_all_jobs`` does whatever the interface."""
        self._finish_when_idle = True
        self.loop.call_soon(self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        if self.manager.is_idle():
            self._all_done()

    def finish(self) -> None:
        """The ``finish`` request: stop now, killing running tasks; queued jobs stay queued."""
        _log.info("finish requested: stopping")
        self._stopping = True
        self._journal_stop("finish")
        self.manager.halt()
        self.manager.finish_all("canceled: the service was asked to finish")
        self.loop.call_soon(self._stop_when_tasks_gone)

    def _stop_when_tasks_gone(self) -> None:
        if len(self.launcher) == 0:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_tasks_gone)

    def _all_done(self) -> None:
        # a network service waits for finish (or finishAfterAllTasksDone)
        if not self._stopping and (not self.config.net or self._finish_when_idle):
            readiness = self.readiness
            if readiness is not None and readiness.terminated:
                # they "finished" only because Slurm signalled the agents (tasks that end
                # at once on SIGTERM): the allocation is ending, as the exit status says
                _log.warning("stopping: %s", readiness.ending_message())
            else:
                _log.info("all jobs finished")
            self.loop.stop()

    # ------------------------------------------------------------------ run
    def run_file(self, requests) -> None:
        """Handle the requests file (may be empty), then serve until done or finished."""
        for number, request in enumerate(requests or (), 1):
            reply = self.handler.handle(request)
            _log.info("request %d (%s): %s", number,
                      request.get("request") if isinstance(request, dict) else "?",
                      json.dumps(reply))
            if reply.get("code") != 0:
                self.refused += 1
                print("qcgflow service: request %d: %s" % (number, reply.get("message")),
                      file=sys.stderr)
            if self._stopping:
                break
        self.manager.on_idle.append(self._all_done)
        if not self.config.net:
            self.loop.call_soon(lambda: self.loop.stop() if self.manager.is_idle() else None)
        self.announce()
        self.loop.run()

    def close(self) -> None:
        """Write final_status.json and flush and close the working files."""
        if getattr(self, "parent_link", None) is not None:
            self.parent_link.close(self.failure or "finished")
        if self.manager is not None:
            self.launcher.close()
        executor = self.manager.executor if self.manager is not None else None
        if self.run_token is not None and getattr(executor, "started", 1):
            # nothing the run started outlives it (no task started: nothing to look for)
            kill_leftovers((self.run_token,), why="the run ended: killed %d processes its "
                                                  "tasks left running")
        if self.stats is not None:
            self.stats.close()
        for part in [*self._watchers, self._network, self._publisher, self._zap]:
            if part is not None:
                part.close()
        if self._context is not None:
            self._context.destroy(linger=0)  # closes any socket still open (monitors)
        if self._ipc is not None:
            self._ipc.close()
        if self.report is not None:
            if self.manager is not None:  # jobs still queued are reported too
                self.report.unfinished(self.manager.registry, "not finished: the service "
                                       "stopped (%s)" % (self._stop_reason or "finish"))
            self.report.close()
        if self.journal is not None:
            self.journal.close()
        if self.track is not None:
            self.track.close()
        if self.manager is not None:
            path = os.path.join(self.aux_dir, "final_status.json")
            try:
                with private_open(path) as handle:
                    json.dump(status_data(self.manager, self), handle, indent=2)
            except OSError as exc:  # a full disk must not turn the exit into a traceback
                print("qcgflow service: cannot write %s: %s" % (path, exc.strerror or exc),
                      file=sys.stderr)
        _log.info("service %s finished", self.service_id)
        if self._log_handler is not None:
            logging.getLogger("qcgflow").removeHandler(self._log_handler)
            self._log_handler.close()
        tighten(self.aux_dir)  # files helpers created meanwhile with the default mode

    def summary(self) -> Optional[str]:
        """One line about the jobs that did not succeed, or None when all did."""
        counts = self.manager.registry.counts()
        bad = {state: n for state, n in counts.items() if n and state is not JobState.SUCCEED}
        if not bad:
            return None
        return "%d of %d jobs did not succeed (%s); details in %s" % (
            sum(bad.values()), len(self.manager.registry),
            ", ".join("%s: %d" % (state.name, n) for state, n in bad.items()),
            os.path.join(self.aux_dir, self.config.report_file))

    def interrupt(self, signum: int) -> None:
        _log.warning("interrupted by %s: killing running tasks", signal.Signals(signum).name)
        self._stopping = True
        self._journal_stop(signal.Signals(signum).name)
        self.manager.halt()
        self.manager.finish_all("canceled: the service was interrupted")
        self.loop.call_soon(self._stop_when_tasks_gone)
        try:
            self.loop.run()
        except _Interrupted:
            self.launcher.kill_all()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _owner_gone() -> None:
    raise _Interrupted(signal.SIGTERM)  # out of the event loop, as the signal handler does


def _make_service(config: ServiceConfig) -> Service:
    if config.governor:  # governor mode: a composition root of its own
        from .governor.service import GovernorService
        return GovernorService(config)
    return Service(config)


def run_service(argv: Sequence[str]) -> int:
    """``qcgflow service``: parse options, run, return the exit status."""
    try:
        config = parse_service_args(argv)
        requests = read_requests(config.file_path) if config.file_path else []
        service = _make_service(config)
        if config.owner_fd is not None:  # before setup: a bad descriptor creates no files
            watch_owner(service.loop, config.owner_fd, _owner_gone)
        service.setup()
    except RuntimeLayerError as exc:
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, zmq.ZMQError) as exc:
        print("qcgflow service: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT

    def on_signal(signum, _frame):
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # A signal wakes the event loop's poll through this pipe, so the handler runs at once
    # even when the loop is blocked in a C call.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    service.loop.add_reader(wake_read, lambda: _drain(wake_read))
    status = EXIT_OK
    try:
        service.run_file(requests)
    except _Interrupted as exc:
        service.interrupt(exc.signum)
        status = 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_wakeup)
        service.loop.remove_reader(wake_read)
        os.close(wake_read)
        os.close(wake_write)
        service.close()
    if service.failure is not None:
        print("qcgflow service: %s" % service.failure, file=sys.stderr)
        return EXIT_NOT_STARTED
    readiness = getattr(service, "readiness", None)  # a governor has none
    ending = getattr(service, "allocation_end", None)
    if ending is None and readiness is not None and readiness.terminated:
        # the tasks ended (interrupted) while the signalled agents still ran: the workflow
        # "finished", but only because the allocation is ending
        ending = (readiness.ending_message(), readiness.signum or signal.SIGTERM)
    if ending is not None:
        message, signum = ending  # interrupted, as by the signal itself
        print("qcgflow service: %s (qcgflow service --resume %s)" % (message, service.aux_dir),
              file=sys.stderr)
        return status if status != EXIT_OK else 128 + int(signum)
    line = service.summary()
    if line:
        print("qcgflow service: %s" % line, file=sys.stderr)
    if status == EXIT_OK and service.refused:
        print("qcgflow service: %d request(s) of %s refused (see the lines above)"
              % (service.refused, config.file_path), file=sys.stderr)
        return EXIT_REFUSED
    return status
