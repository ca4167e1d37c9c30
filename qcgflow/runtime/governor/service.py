"""The governor's composition root (``qcgflow service --governor`` or
``--slurm-partition-nodes N``): a ``serving.Service`` built with the governor's roles.

::

    ServiceConfig -> aux dir .qcgpjm-service-<id>/ (service.log, jobs.report, address,
                     governor.address, governor-secrets/, final_status.json)
                  -> GovernorPool + Manager (registry, dependencies, scheduler: unchanged)
                  -> roles: TaskExecutor and Launcher = RemoteExecutor (units -> managers),
                            Hub = Managers (hub.Hub's ROUTER for managers, the partition
                            managers, the directory entry, the managers in ``status``)
                  -> GovernorHandler(manager, Control, Managers): the usual requests (REP)
                     + PUB status publisher
                  -> --slurm-partition-nodes: start the partition managers; serve once
                     they all registered (Managers.wait_until_ready), then replay --resume
                  -> finish: the managers are told to finish too (Hub.finish_all)

The governor has no resources of its own: its totals are the sum over the live managers.
"""

import logging
import os
import time
from typing import Dict, Optional

from .. import protocol as p
from ..errors import NotEnoughResources, RuntimeLayerError
from ..handlers import RequestHandler
from ..manager import Manager
from ..owneronly import private_open
from ..protocol import MODELS
from ..serving import Service
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

    def __init__(self, manager, control, managers: "Managers"):
        super().__init__(manager, control)
        self._managers = managers

    def submit(self, request: p.SubmitRequest) -> dict:
        live = self._managers.live()
        if not live:
            return p.reply_error(self._managers.none_registered())
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
        return p.reply_ok(data=self._managers.resources())


def _queued(item: dict, key: str) -> None:
    if item.get(key) == "SCHEDULED":
        item[key] = "QUEUED"


def _sent_reads_queued(reply: dict, listing: str, key: str) -> dict:
    for item in ((reply.get("data") or {}).get(listing) or {}).values():
        _queued(item, key)
    return reply


class Managers:
    """The governor's Hub role: the managers it leads (roles.Hub), and the facts its
    handler needs about them."""

    def __init__(self, service: Service, hub: Hub, pool: GovernorPool, secrets_dir: str,
                 partitions: Optional[Partitions]):
        self._service = service  # its facts (id, address) and event loop; no control
        self.hub = hub
        self.pool = pool
        self.secrets_dir = secrets_dir
        self.partitions = partitions
        self.directory_entry = None

    def live(self):
        return self.hub.live()

    def none_registered(self) -> str:
        """Why a submit is refused before any manager registered: how to start one."""
        service = self._service
        return ("No manager is registered with governor %s yet (start managers with "
                "--parent %s, from another user or host with --parent %s --parent-secrets "
                "%s)" % (service.service_id, service.address, self.hub.address,
                         self.secrets_dir))

    def resources(self) -> dict:
        """``resourcesInfo``: reserved cores counted as upstream, in the total and used."""
        pool = self.pool
        reserved = pool.reserved_cores
        return {"total_nodes": pool.total_nodes, "total_cores": pool.total_cores + reserved,
                "used_cores": pool.used_cores + reserved,
                "free_cores": pool.total_cores - pool.used_cores}

    # ------------------------------------------------------------------ roles.Hub
    def ready_fields(self) -> Dict[str, object]:
        return {"governor_address": self.hub.address, "governor_secrets": self.secrets_dir}

    def describe(self, status: dict) -> dict:
        """A manager's ``status`` keys plus ``System.Role`` and ``Managers``."""
        pool = self.pool  # free = real total - used (the dispatch capacity may be larger)
        status["Resources"]["FreeCores"] = pool.total_cores - pool.used_cores
        status["Resources"]["TotalCores"] = pool.total_cores + pool.reserved_cores
        status["Resources"]["UsedCores"] = pool.used_cores + pool.reserved_cores
        status["System"]["Role"] = "governor"
        status["System"]["GovernorAddress"] = self.hub.address
        status["Managers"] = [record.describe() for record in self.hub.records.values()]
        return status

    def wait_until_ready(self) -> Optional[str]:
        """Serve only once every partition manager registered (or say why not)."""
        partitions = self.partitions
        if partitions is None:
            return None
        config, loop = self._service.config, self._service.loop
        expected = {partitions.manager_id(k) for k in range(len(partitions.ranges))}
        deadline = time.monotonic() + config.nl_init_timeout
        problems = []

        def check():
            registered = {r.manager_id for r in self.hub.live()}
            problem = partitions.problem(registered)
            if problem is None and time.monotonic() > deadline:
                problem = "partition managers %s did not register in %.0f s" % (
                    ", ".join(sorted(expected - registered)), config.nl_init_timeout)
            if problem is not None:
                problems.append(problem)
                loop.stop()
            elif expected <= registered:
                _log.info("all %d partition managers registered", len(expected))
                loop.stop()
            else:
                loop.call_later(0.05, check)

        loop.call_soon(check)
        loop.run()
        return problems[0] if problems else None

    def finish_all(self) -> None:
        self.hub.finish_all()

    def close(self) -> None:
        directory.withdraw(self.directory_entry)
        self.directory_entry = None
        self.hub.finish_all()
        self.hub.close()

    def reap(self) -> None:
        if self.partitions is not None:
            self.partitions.stop(told=set(self.hub.records))


def assemble_governor(service: Service) -> None:
    """Build a governor (setup): a Manager over the managers' resources, the hub they
    register with, the RemoteExecutor that sends them units, the partition managers."""
    config = service.config
    if config.file_path and not config.slurm_partition_nodes:
        raise RuntimeLayerError("--governor with --file-path needs its managers first: "
                                "use --slurm-partition-nodes N, or --net and submit once "
                                "managers registered")
    secrets_dir = os.path.join(service.aux_dir, SECRETS_DIR)
    partitions = None
    if config.slurm_partition_nodes:
        partitions = Partitions(config, service.service_id, service.wd, service.aux_dir)
        partitions.plan()  # refuses outside an allocation, before any file is made
    service.open_workdir()
    _log.info("governor %s starting in %s (tags: %s), pid %d", service.service_id,
              service.wd, ",".join(service.tags) or "-", os.getpid())
    pool = GovernorPool(config.manager_queue_depth)
    manager = Manager(pool, service.clock, service.loop, models=MODELS)
    # The governor's journal is the workflow's: submissions and ended units. It is
    # replayed (--resume) once the partition managers registered (run_file), because
    # a replayed job must fit the managers' resources as any submitted one.
    service.open_journal({})
    service.replay_when_serving = True
    # with a requests file (or resuming one) the governor ends once every job ended
    # (its network interface serves while they run), as a manager does
    service.stop_when_idle = bool(config.file_path or config.resume)
    service.attach_manager(manager)
    dispatcher = None

    def up(record) -> None:
        pool.add(record.manager_id, record.nodes, record.reserved)
        manager.kick()

    def lost(record, why: str) -> None:
        dispatcher.on_lost(record, why)
        manager.kick()

    hub = Hub(service.loop, secrets_dir, heartbeat=min(1.0, config.manager_timeout / 4),
              timeout=config.manager_timeout, on_up=up,
              on_events=lambda record, events: dispatcher.on_events(record, events),
              on_lost=lost)
    managers = Managers(service, hub, pool, secrets_dir, partitions)
    service.hub = managers
    service.serve(GovernorHandler(manager, service, managers))
    hub.start(config.net_address, config.net_port_min, config.net_port_max)
    with private_open(os.path.join(service.aux_dir, ADDRESS_FILE)) as handle:
        handle.write(hub.address + "\n")
    dispatcher = RemoteExecutor(service.loop, hub, pool, manager.task_executing,
                                manager.task_done)
    service.attach_execution(dispatcher, dispatcher)
    # managers started as upstream's (--parent <client address>, no secrets) find
    # the endpoint and the secrets through this user's private entry
    managers.directory_entry = directory.publish(service.service_id, [service.address],
                                                 hub.address, secrets_dir)
    if managers.directory_entry is None:
        _log.warning("cannot write an entry in %s: managers need --parent %s "
                     "--parent-secrets %s", directory.directory(), hub.address, secrets_dir)
    if partitions is not None:
        partitions.start(hub.address, secrets_dir)
