"""The governor's composition root (``qcgflow service --governor`` or
``--slurm-partition-nodes N``).

::

    ServiceConfig -> aux dir .qcgpjm-service-<id>/ (service.log, jobs.report, address,
                     governor.address, governor-secrets/, final_status.json)
                  -> GovernorPool + Manager (registry, dependencies, scheduler: unchanged)
                     + RemoteExecutor (units -> managers) + Hub (ROUTER for managers)
                  -> GovernorHandler: the usual requests (REP) + PUB status publisher
                  -> --slurm-partition-nodes: start the partition managers, wait until they
                     all registered, then serve
                  -> finish: the managers are told to finish too

The governor has no resources of its own: its totals are the sum over the live managers.
"""

import json
import logging
import os
import time
from typing import Optional

from .. import protocol as p
from ..errors import NotEnoughResources, RuntimeLayerError
from ..handlers import RequestHandler, status_data
from ..manager import Manager
from ..owneronly import make_private_dir, private_open, private_umask
from ..protocol import MODELS
from ..reports import JobsReport
from ..service import Service
from . import directory
from .dispatcher import RemoteExecutor
from .hub import Hub
from .partitions import Partitions
from .pool import GovernorPool

_log = logging.getLogger(__name__)

SECRETS_DIR = "governor-secrets"
ADDRESS_FILE = "governor.address"


class GovernorHandler(RequestHandler):
    """The usual requests, answered over the managers' resources."""

    def submit(self, request: p.SubmitRequest) -> dict:
        live = self.service.hub.live()
        if not live:
            return p.reply_error("No manager is registered with governor %s yet (start "
                                 "managers with --parent %s, from another user or host "
                                 "with --parent %s --parent-secrets %s)" % (
                                     self.service.service_id, self.service.address,
                                     self.service.hub.address, self.service.secrets_dir))
        try:
            return super().submit(request)
        except NotEnoughResources as exc:
            largest = max(live, key=lambda r: r.cores)
            return p.reply_error("%s: it fits no registered manager (%d managers, the "
                                 "largest has %d nodes and %d cores)" % (
                                     exc, len(live), len(largest.nodes), largest.cores))

    # A unit the governor has sent to a manager is SCHEDULED in its registry (and in the
    # history), but waits there until the manager starts it: clients see it QUEUED until
    # the manager reports it EXECUTING. Upstream's governor shows QUEUED until the end, and
    # its tests accept QUEUED (or SUCCEED) for a job right after its submit.
    def list_jobs(self, request: p.ListJobsRequest) -> dict:
        return _sent_reads_queued(super().list_jobs(request), "jobs", "status")

    def job_status(self, request: p.JobStatusRequest) -> dict:
        reply = super().job_status(request)
        for entry in ((reply.get("data") or {}).get("jobs") or {}).values():
            _queued(entry.get("data") or {}, "status")
        return reply

    def job_info(self, request: p.JobInfoRequest) -> dict:
        reply = super().job_info(request)
        for entry in ((reply.get("data") or {}).get("jobs") or {}).values():
            data = entry.get("data") or {}
            _queued(data, "status")
            for child in data.get("childs") or ():
                _queued(child, "state")
        return reply

    def resources_info(self, request: p.ResourcesInfoRequest) -> dict:
        pool = self.manager.pool
        reserved = pool.reserved_cores  # counted as upstream: in the total, and used
        return p.reply_ok(data={"total_nodes": pool.total_nodes,
                                "total_cores": pool.total_cores + reserved,
                                "used_cores": pool.used_cores + reserved,
                                "free_cores": pool.total_cores - pool.used_cores})

    def status(self, request: p.StatusRequest) -> dict:
        reply = super().status(request)
        if not request.all_jobs_finished:
            reply["data"] = governor_status(self.manager, self.service)
        return reply


def _queued(item: dict, key: str) -> None:
    if item.get(key) == "SCHEDULED":
        item[key] = "QUEUED"


def _sent_reads_queued(reply: dict, listing: str, key: str) -> dict:
    for item in ((reply.get("data") or {}).get(listing) or {}).values():
        _queued(item, key)
    return reply


def governor_status(manager, service) -> dict:
    """``status`` of a governor: a manager's keys plus ``System.Role`` and ``Managers``."""
    data = status_data(manager, service)
    pool = manager.pool  # free = real total - used (the dispatch capacity may be larger)
    data["Resources"]["FreeCores"] = pool.total_cores - pool.used_cores
    data["Resources"]["TotalCores"] = pool.total_cores + pool.reserved_cores
    data["Resources"]["UsedCores"] = pool.used_cores + pool.reserved_cores
    data["System"]["Role"] = "governor"
    data["System"]["GovernorAddress"] = service.hub.address
    data["Managers"] = [record.describe() for record in service.hub.records.values()]
    return data


class GovernorService(Service):
    """A service whose jobs run on registered managers instead of local resources."""

    hub: Hub
    partitions: Optional[Partitions] = None

    def setup(self) -> None:
        config = self.config
        if config.file_path and not config.slurm_partition_nodes:
            raise RuntimeLayerError("--governor with --file-path needs its managers first: "
                                    "use --slurm-partition-nodes N, or --net and submit once "
                                    "managers registered")
        self.resources_info = None
        self.secrets_dir = os.path.join(self.aux_dir, SECRETS_DIR)
        if config.slurm_partition_nodes:
            self.partitions = Partitions(config, self.service_id, self.wd, self.aux_dir)
            self.partitions.plan()  # refuses outside an allocation, before any file is made
        make_private_dir(self.aux_dir)  # owner-only, as a manager's (owneronly)
        os.chdir(self.wd)
        with private_umask():
            self._setup_logging()
        _log.info("governor %s starting in %s (tags: %s), pid %d", self.service_id, self.wd,
                  ",".join(self.tags) or "-", os.getpid())
        self.pool = GovernorPool(config.manager_queue_depth)
        self.manager = Manager(self.pool, self.clock, self.loop, models=MODELS)
        # The governor's journal is the workflow's: submissions and ended units. It is
        # replayed (--resume) once the partition managers registered (run_file), because
        # a replayed job must fit the managers' resources as any submitted one.
        with private_umask():
            self._open_journal({})
            self.report = JobsReport(os.path.join(self.aux_dir, config.report_file),
                                     config.report_format)
        self.manager.registry.listeners.append(self.report)
        self.loop.idle_hooks.append(lambda: self.report.flush_soon(self.loop))
        self.handler = GovernorHandler(self.manager, self)
        self._setup_network()
        self.hub = Hub(self.loop, self.secrets_dir,
                       heartbeat=min(1.0, config.manager_timeout / 4),
                       timeout=config.manager_timeout, on_up=self._manager_up,
                       on_events=lambda record, events: self.dispatcher.on_events(record,
                                                                                   events),
                       on_lost=self._manager_lost)
        self.hub.start(config.net_address, config.net_port_min, config.net_port_max)
        with private_open(os.path.join(self.aux_dir, ADDRESS_FILE)) as handle:
            handle.write(self.hub.address + "\n")
        self.dispatcher = RemoteExecutor(self.loop, self.hub, self.pool,
                                         self.manager.task_executing, self.manager.task_done)
        self.manager.executor = self.dispatcher
        self.launcher = self.dispatcher
        # managers started as upstream's (--parent <client address>, no secrets) find
        # the endpoint and the secrets through this user's private entry
        self.directory_entry = directory.publish(self.service_id, [self.address],
                                                 self.hub.address, self.secrets_dir)
        if self.directory_entry is None:
            _log.warning("cannot write an entry in %s: managers need --parent %s "
                         "--parent-secrets %s", directory.directory(), self.hub.address,
                         self.secrets_dir)
        if self.partitions is not None:
            self.partitions.start(self.hub.address, self.secrets_dir)

    # ------------------------------------------------------------------ managers
    def _manager_up(self, record) -> None:
        self.pool.add(record.manager_id, record.nodes, record.reserved)
        self.manager.kick()

    def _manager_lost(self, record, why: str) -> None:
        self.dispatcher.on_lost(record, why)
        self.manager.kick()

    def announce(self) -> None:
        """The --ready-fd line also names the governor's endpoint and secrets."""
        if self.config.ready_fd is None:
            return
        line = json.dumps({"address": self.address, "pub_address": self.pub_address,
                           "aux_dir": self.aux_dir, "wd": self.wd, "pid": os.getpid(),
                           "keys_dir": self.keys_dir, "id": self.service_id,
                           "governor_address": self.hub.address,
                           "governor_secrets": self.secrets_dir})
        try:
            with os.fdopen(self.config.ready_fd, "w") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            _log.warning("cannot write the ready line to fd %d: %s", self.config.ready_fd, exc)

    def _wait_for_partitions(self) -> None:
        """Serve only once every partition manager registered (or stop with the cause)."""
        expected = {self.partitions.manager_id(k) for k in range(len(self.partitions.ranges))}
        deadline = time.monotonic() + self.config.nl_init_timeout

        def check():
            registered = {r.manager_id for r in self.hub.live()}
            problem = self.partitions.problem(registered)
            if problem is None and time.monotonic() > deadline:
                problem = "partition managers %s did not register in %.0f s" % (
                    ", ".join(sorted(expected - registered)), self.config.nl_init_timeout)
            if problem is not None:
                self._fail_start(problem)
            elif expected <= registered:
                _log.info("all %d partition managers registered", len(expected))
                self.loop.stop()
            else:
                self.loop.call_later(0.05, check)

        self.loop.call_soon(check)
        self.loop.run()

    def run_file(self, requests) -> None:
        if self.partitions is not None:
            self._wait_for_partitions()
            if self.failure is not None:
                return
        self._replay_journal()
        super().run_file(requests)

    # ------------------------------------------------------------------ stopping
    def _all_done(self) -> None:
        """With a requests file (or resuming one), or after finishAfterAllTasksDone, the
        governor ends once every job ended (its network interface serves while they run),
        as a manager does."""
        if not self._stopping and (self.config.file_path or self.config.resume
                                   or self._finish_when_idle):
            _log.info("all jobs finished")
            self.loop.stop()

    def finish(self) -> None:
        super().finish()
        self.hub.finish_all()

    def _fail_start(self, message: str) -> None:
        super()._fail_start(message)
        self.hub.finish_all()

    def interrupt(self, signum: int) -> None:
        self.hub.finish_all()
        super().interrupt(signum)

    def close(self) -> None:
        directory.withdraw(getattr(self, "directory_entry", None))
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.finish_all()
            hub.close()
        super().close()
        if self.manager is not None:  # final_status.json with the managers' list too
            path = os.path.join(self.aux_dir, "final_status.json")
            try:
                with private_open(path) as handle:
                    json.dump(governor_status(self.manager, self), handle, indent=2)
            except OSError as exc:
                _log.warning("cannot write %s: %s", path, exc)
        if self.partitions is not None:
            self.partitions.stop(told=set(hub.records) if hub is not None else ())
