"""One running service, assembled by a composition root from roles (roles.py).

::

    composition root (service.py: a manager; governor/service.py: a governor)
      Service(config, assemble=root) -> setup(): the root builds the roles and calls, in
      order: open_workdir, attach_manager, serve (RequestHandler(manager, Control) +
      --net: ROUTER + PUB sockets), open_journal, attach_execution (TaskExecutor +
      Launcher), replay_journal (or at serving time: replay_when_serving)
      -> run_file: Hub.wait_until_ready, the requests file, --ready-fd line, EventLoop.run()
         until every job is done (file only, stop_when_idle) or ``finish`` or a signal
      -> close: Hub.close, launcher, leftovers, sockets, jobs.report, journal,
         final_status.json (status(): status_data + the Hub's part)

The service never changes behaviour by subclassing: the roles (``TaskExecutor``,
``Launcher``, ``Hub``) and two flags (``stop_when_idle``, ``replay_when_serving``) are what
a composition root chooses. Request handlers see it only as a ``roles.Control``.

The environment is never written to disk (upstream dumps it to env.log). The service
directory is 0700 and its files 0600 (``owneronly``): journal.jsonl holds the jobs' env.
"""

import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Callable, Optional

from .clock import SystemClock
from .config import ServiceConfig
from .eventloop import EventLoop
from .handlers import status_data
from .jobs import JobState
from .journal import (JOURNAL_FILE, RUN_ENV, EndRecord, JournalWriter, plan_resume, read_journal,
                      report_gap)
from .leftovers import kill_leftovers
from .logfile import ServiceLogHandler
from .manager import Manager
from .owneronly import IpcEndpoints, make_private_dir, private_open, private_umask, tighten
from .reports import JobsReport
from .resume import apply_plan, locate_aux_dir, service_id_of
from .roles import NO_HUB, Hub, Launcher, TaskExecutor
from .stats.hooks import ServiceStats
from .tokens import uuid4_hex
from .tracker import TrackFiles, has_track_files, read_track_files

if TYPE_CHECKING:  # imported where the network is set up (_setup_network)
    from .interfaces.network import NetworkInterface
    from .publisher import StatusPublisher
    from .security import ZapHandler

_log = logging.getLogger("qcgflow.runtime.service")


class Interrupted(BaseException):
    """A signal (or the owner's death) that ends the event loop: ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Service:
    """One running service (a manager or a governor), built by ``assemble``."""

    def __init__(self, config: ServiceConfig, assemble: Callable[["Service"], None],
                 clock=None):
        self.config = config
        self._assemble = assemble
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
        self._network: Optional["NetworkInterface"] = None
        self._publisher: Optional["StatusPublisher"] = None
        self._zap: Optional["ZapHandler"] = None
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
        # the roles and choices of the composition root
        self.launcher: Optional[Launcher] = None
        self.hub: Hub = NO_HUB
        self.handler = None
        self.resources_info = None  # discovery's answer (a manager's own resources)
        self.parent_link = None  # --parent: this manager's link to its governor
        # stop once every job ended: file mode (a --net manager waits for finish)
        self.stop_when_idle = not config.net
        # replay --resume's journal when serving starts, not in setup (a governor: replayed
        # jobs must fit the managers' resources, known once they registered)
        self.replay_when_serving = False

    # ------------------------------------------------------------------ assembly
    def setup(self) -> None:
        """Create the working files and all collaborators (no request is handled yet)."""
        self._assemble(self)

    def open_workdir(self) -> None:
        """The owner-only aux dir, the working directory, service.log."""
        make_private_dir(self.aux_dir)
        os.chdir(self.wd)  # tasks run here by default: no chdir per task
        with private_umask():
            self._setup_logging()

    def attach_manager(self, manager: Manager) -> None:
        """The manager, and jobs.report listening to it."""
        self.manager = manager
        with private_umask():
            self.report = JobsReport(os.path.join(self.aux_dir, self.config.report_file),
                                     self.config.report_format)
        manager.add_listener(self.report, finals_only=True)
        self.loop.idle_hooks.append(lambda: self.report.flush_soon(self.loop))

    def serve(self, handler) -> None:
        """Answer requests with ``handler``: the requests file, and --net's sockets."""
        self.handler = handler
        if self.config.net:
            self._setup_network()

    def attach_execution(self, executor: TaskExecutor, launcher: Launcher) -> None:
        """What starts the manager's units, and what holds their processes."""
        self.manager.attach_executor(executor)
        self.launcher = launcher

    def open_journal(self, task_env) -> None:
        """Lock the journal (refused when a live service holds it), read it when resuming;
        every task inherits the run token through ``task_env``."""
        with private_umask():
            self._open_journal(task_env)

    def _open_journal(self, task_env) -> None:
        """Lock the journal (refused when a live service holds it), read it when resuming."""
        path = os.path.join(self.aux_dir, JOURNAL_FILE)
        if not self.config.no_journal:
            self.journal = JournalWriter(path, self.loop, resumed=bool(self.config.resume))
        # Every task inherits the run token: what it leaves behind (daemons, also setsid or
        # double-forked ones) is found by it when the service ends, and on a resume.
        self.run_token = self.journal.token if self.journal is not None else uuid4_hex()
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
                self.journal.ends = sum(1 for record in records if isinstance(record, EndRecord))
        if self.journal is not None and not started:
            self.journal.start()
        if self.journal is not None and self.report is not None:
            self._keep_report_with_journal(records if self.config.resume else ())

    def _keep_report_with_journal(self, records) -> None:
        """jobs.report's batches, noted in the journal as they reach the file; on a resume
        first the lines a SIGKILL kept from it (``journal.report_gap``)."""
        gap = report_gap(records)
        if gap is not None and gap[1]:
            added = self.report.add_missing(*gap)
            if added:
                _log.warning("resume: %d units ended just before the earlier service was "
                             "killed had no line in %s; added from the journal (state and "
                             "message only)", added, self.report.path)
        if self.report.all_written():  # (a full disk: the next batch written tells it)
            self.journal.reported(self.report.size())
        self.report.on_written(self.journal.reported)

    def replay_journal(self) -> None:
        """Resume: end leftovers, replay the journal, then journal what happens next."""
        plan = self._resume_plan
        if plan is not None:
            self._resume_plan = None
            kill_leftovers(plan.tokens)
            restored = apply_plan(plan, self.manager, os.path.join(self.aux_dir, JOURNAL_FILE))
            _log.info("resumed from %s: %d jobs, %d finished units restored, %d units "
                      "interrupted by the stop run again", self.aux_dir,
                      self.manager.job_count(), restored, plan.rerun)
        if self.journal is not None:
            self.manager.add_listener(self.journal, finals_only=True)
            self.manager.on_submit.append(self.journal.submitted)
            self.manager.on_remove.append(self.journal.removed)
            # upstream's track.reqs/track.states too (tools look for them), after the replay
            # so a resumed run appends only what happens from now on
            journal = self.journal
            self.track = TrackFiles(self.aux_dir, lambda: journal.stopping)
            self.manager.add_listener(self.track, finals_only=True)
            self.manager.on_submit.append(self.track.submitted)

    def _allocation_ending(self, node: str) -> None:
        """A node's agent was signalled (Slurm does that to every step when the allocation
        ends, the manager's own step included): the tasks ending now are interruptions,
        journaled to run again on --resume. The node takes no new work from here on."""
        self.manager.disable_node(node)
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
        self.hub.finish_all()

    def _setup_network(self) -> None:
        """Bind the request and publisher sockets: ``ipc://`` in an owner-only directory
        unless a TCP address or port was asked for; any TCP endpoint (loopback included:
        other users reach it too) is a CURVE server whose keys only the owner can read."""
        # here, not at the top: a service without --net imports no ZeroMQ (~20 ms)
        import zmq  # noqa: PLC0415

        from .interfaces.network import NetworkInterface, bind  # noqa: PLC0415
        from .publisher import StatusPublisher  # noqa: PLC0415
        from .security import (HandshakeWatcher, ZapHandler, is_loopback,  # noqa: PLC0415
                               make_curve_server, write_keys)
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
            self.manager.add_listener(self._publisher)
            self.manager.on_idle.append(self._publisher.no_jobs)
            _log.info("status publisher on %s", self.pub_address)
        with private_open(os.path.join(self.aux_dir, "address")) as handle:
            handle.write(self.address + "\n")

    def announce(self) -> None:
        """Write the --ready-fd line (addresses and directories) and close that descriptor."""
        if self.config.ready_fd is None:
            return
        fields = {"address": self.address, "pub_address": self.pub_address,
                  "aux_dir": self.aux_dir, "wd": self.wd, "pid": os.getpid(),
                  "keys_dir": self.keys_dir, "id": self.service_id,
                  "run": self.run_token}  # a client ends leftovers if we die
        fields.update(self.hub.ready_fields())
        line = json.dumps(fields)
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
    def status(self) -> dict:
        """The ``status`` data: upstream's keys, and the hub's part (a governor's)."""
        return self.hub.describe(status_data(self.manager, self))

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
        self.hub.finish_all()

    def _stop_when_tasks_gone(self) -> None:
        if len(self.launcher) == 0:
            self.loop.stop()
        else:
            self.loop.call_later(0.01, self._stop_when_tasks_gone)

    def _all_done(self) -> None:
        # a network manager waits for finish (or finishAfterAllTasksDone); a governor with
        # a requests file (or resuming one) ends when its jobs did
        if not self._stopping and (self.stop_when_idle or self._finish_when_idle):
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
        problem = self.hub.wait_until_ready()
        if problem is not None:
            self._fail_start(problem)
            return
        if self.replay_when_serving:
            self.replay_journal()
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
        self.hub.close()
        if self.parent_link is not None:
            self.parent_link.close(self.failure or "finished")
        if self.launcher is not None:
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
                self.report.unfinished(self.manager.jobs(), "not finished: the service "
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
                    json.dump(self.status(), handle, indent=2)
            except OSError as exc:  # a full disk must not turn the exit into a traceback
                print("qcgflow service: cannot write %s: %s" % (path, exc.strerror or exc),
                      file=sys.stderr)
        _log.info("service %s finished", self.service_id)
        if self._log_handler is not None:
            logging.getLogger("qcgflow").removeHandler(self._log_handler)
            self._log_handler.close()
        tighten(self.aux_dir)  # files helpers created meanwhile with the default mode
        self.hub.reap()

    def summary(self) -> Optional[str]:
        """One line about the jobs that did not succeed, or None when all did."""
        counts = self.manager.state_counts()
        bad = {state: n for state, n in counts.items() if n and state is not JobState.SUCCEED}
        if not bad:
            return None
        return "%d of %d jobs did not succeed (%s); details in %s" % (
            sum(bad.values()), self.manager.job_count(),
            ", ".join("%s: %d" % (state.name, n) for state, n in bad.items()),
            os.path.join(self.aux_dir, self.config.report_file))

    def interrupt(self, signum: int) -> None:
        self.hub.finish_all()
        _log.warning("interrupted by %s: killing running tasks", signal.Signals(signum).name)
        self._stopping = True
        self._journal_stop(signal.Signals(signum).name)
        self.manager.halt()
        self.manager.finish_all("canceled: the service was interrupted")
        self.loop.call_soon(self._stop_when_tasks_gone)
        try:
            self.loop.run()
        except Interrupted:
            self.launcher.kill_all()
