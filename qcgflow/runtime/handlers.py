"""Request handlers: typed request in, wire reply out (the same for every interface).

Every handler returns a reply dict built with ``protocol.reply_ok``/``reply_error``; a
deliberate error (``RuntimeLayerError``) becomes an error reply with its message. Anything
else is a bug: it is logged with its traceback and answered with a generic error, so one
bad request never stops the service.

A handler holds the ``Manager`` and a ``roles.Control`` (finish, finishAfterAllTasksDone,
status): the only operations of the service a request may trigger. It never sees the
service itself (tests/test_architecture.py: this module does not import it).
"""

import getpass
import logging
import os
import socket
import sys
from datetime import datetime
from typing import Callable, Dict, Optional

from . import protocol as p
from .errors import RuntimeLayerError
from .limits import MAX_LISTED_CHILDREN, check_depth
from .jobs import JobState
from .names import shown
from .registry import Job
from .roles import Control

_log = logging.getLogger(__name__)


def history_text(history) -> str:
    """Upstream's history string: ``\\n<date>: STATE`` per entry."""
    return "".join("\n%s: %s" % (datetime.fromtimestamp(when), state.name)
                   for state, when in history)


def _name_of(data) -> str:
    name = data.get("request") if isinstance(data, dict) else None
    return "%.40r" % name if isinstance(name, str) else "malformed"


class RequestHandler:
    """Dispatches parsed requests to the manager (and to ``control``: finish, status)."""

    def __init__(self, manager, control: Optional[Control]):
        self.manager = manager
        self._control = control  # not "control": that is the control request's handler
        self._table: Dict[type, Callable] = {
            p.SubmitRequest: self.submit,
            p.ListJobsRequest: self.list_jobs,
            p.JobStatusRequest: self.job_status,
            p.JobInfoRequest: self.job_info,
            p.CancelJobRequest: self.cancel_job,
            p.RemoveJobRequest: self.remove_job,
            p.ResourcesInfoRequest: self.resources_info,
            p.ControlRequest: self.control,
            p.FinishRequest: self.finish,
            p.StatusRequest: self.status,
            p.BlockedRequest: self.blocked,
        }

    def handle(self, data) -> dict:
        """Parse and handle one decoded request; always returns a reply."""
        try:
            check_depth(data)  # before any recursive walk (substitution, logging, copies)
            request = p.parse_request(data)
            return self._table[type(request)](request)
        except RuntimeLayerError as exc:
            return p.reply_error(str(exc))
        except Exception:  # a bug must not stop the service; the reply says so
            # The request itself is not formatted: its repr may be what failed.
            _log.exception("internal error while handling a %s request", _name_of(data))
            return p.reply_error("Internal error while handling the request (see service.log)")

    # ------------------------------------------------------------------ requests
    def submit(self, request: p.SubmitRequest) -> dict:
        names = self.manager.submit(request.jobs)
        return p.reply_ok("%d jobs submitted" % len(names),
                          {"submitted": len(names), "jobs": names})

    def list_jobs(self, request: p.ListJobsRequest) -> dict:
        jobs = {}
        queue_index = self.manager.queue_order()
        for job in self.manager.jobs():
            item = {"status": job.state.name}
            if job.messages:
                item["messages"] = job.messages
            if job.state is JobState.QUEUED and job.name in queue_index:
                item["inQueue"] = queue_index[job.name]
            jobs[job.name] = item
        return p.reply_ok(data={"length": len(jobs), "jobs": jobs})

    def _lookup(self, name: str):
        return self.manager.lookup_unit(name)

    def job_status(self, request: p.JobStatusRequest) -> dict:
        result = {}
        for name in request.names:
            found = self._lookup(name)
            if found is None:
                return p.reply_error("Job '%s' doesn't exist" % shown(name))
            job, position = found
            state = job.state if position is None else job.iteration_state(position)
            data = {"jobName": name, "status": state.name}
            messages = job.messages if position is None else _record_messages(job, position)
            if messages:
                data["messages"] = messages
            result[name] = {"status": p.OK, "data": data}
        return p.reply_ok(data={"jobs": result})

    def job_info(self, request: p.JobInfoRequest) -> dict:
        missing = [n for n in request.names if self._lookup(n) is None]
        if missing:
            return p.reply_error("Job %s doesn't exist" % missing)
        if request.with_childs:
            listed = {job.name: job.total for job, position in map(self._lookup, request.names)
                      if position is None and job.iterative}
            if sum(listed.values()) > MAX_LISTED_CHILDREN:
                return p.reply_error(
                    "Wrong job info request - withChilds would list %d iterations of %s "
                    "(limit %d per request): ask without withChilds (counts), with jobStatus, "
                    "or for single iterations (name:index)"
                    % (sum(listed.values()), ", ".join("'%.80s'" % n for n in listed)[:400],
                       MAX_LISTED_CHILDREN))
        result = {}
        for name in request.names:
            job, position = self._lookup(name)
            data = (self._job_info(job, request.with_childs) if position is None
                    else self._iteration_info(job, position, name))
            result[name] = {"status": p.OK, "data": data}
        return p.reply_ok(data={"jobs": result})

    def _job_info(self, job: Job, with_childs: bool) -> dict:
        data = {"jobName": job.name, "status": job.state.name}
        if job.messages:
            data["messages"] = job.messages
        if job.runtime:
            data["runtime"] = dict(job.runtime)
        if job.iterative:
            it = job.spec.iteration
            data["iterations"] = {"start": it.start, "stop": it.stop, "total": job.total,
                                  "finished": job.finished, "failed": job.failed}
            if with_childs:
                data["childs"] = [self._child(job, pos) for pos in range(job.total)]
        data["history"] = history_text(job.history)
        return data

    @staticmethod
    def _child(job: Job, position: int) -> dict:
        record = job.records.get(position)
        child = {"iteration": job.spec.iteration.start + position,
                 "state": job.iteration_state(position).name}
        if record is not None:
            if record.runtime:
                child["runtime"] = dict(record.runtime)
            if record.messages:
                child["messages"] = record.messages
            child["history"] = history_text(record.history)
        return child

    def _iteration_info(self, job: Job, position: int, name: str) -> dict:
        child = self._child(job, position)
        data = {"jobName": name, "status": child["state"]}
        for key in ("messages", "runtime", "history"):
            if key in child:
                data[key] = child[key]
        return data

    def cancel_job(self, request: p.CancelJobRequest) -> dict:
        if request.force:
            count = self.manager.cancel(request.names, grace=0.0)
        else:
            count = self.manager.cancel(request.names)
        return p.reply_ok("%d jobs canceled" % count, {"canceled": count})

    def remove_job(self, request: p.RemoveJobRequest) -> dict:
        removed = self.manager.remove(request.names)
        return p.reply_ok(data={"removed": removed})

    def blocked(self, request: p.BlockedRequest) -> dict:
        if request.blocked:
            lent = self.manager.lend(request.step)
            return p.reply_ok(data={"lent": lent})
        return p.reply_ok(data={"reclaimed": self.manager.reclaim(request.step)})

    def resources_info(self, request: p.ResourcesInfoRequest) -> dict:
        return p.reply_ok(data=resources_data(self.manager.resource_totals()))

    def control(self, request: p.ControlRequest) -> dict:
        self._control.finish_after_all()
        return p.reply_ok("%s command accepted" % request.command)

    def finish(self, request: p.FinishRequest) -> dict:
        self._control.finish()
        return p.reply_ok(data={"when": "0s"})

    def status(self, request: p.StatusRequest) -> dict:
        if request.all_jobs_finished:
            return p.reply_ok(data={"AllJobsFinished": self.manager.unfinished == 0})
        return p.reply_ok(data=self._control.status())


def _record_messages(job: Job, position: int) -> Optional[str]:
    record = job.records.get(position)
    return record.messages if record is not None else None


def resources_data(pool) -> dict:
    """The ``resourcesInfo`` reply; GPU counts are added when the pool has GPUs.

    ``pool``: a ``totals.ResourceTotals`` (or anything with its attributes: a pool).

    ``--system-core`` cores are counted in the total and as used, as upstream does."""
    reserved = pool.reserved_cores
    data = {"total_nodes": pool.total_nodes, "total_cores": pool.total_cores + reserved,
            "used_cores": pool.used_cores + reserved, "free_cores": pool.free_cores}
    total_gpus = getattr(pool, "total_gpus", 0)
    if total_gpus:
        free = pool.free_gpus
        data.update(total_gpus=total_gpus, used_gpus=total_gpus - free, free_gpus=free,
                    gpus={name: list(ids) for name, ids in dict(pool.gpus).items()})
    return data


def _status_resources(pool) -> dict:
    data = {"TotalNodes": pool.total_nodes,
            "TotalCores": pool.total_cores + pool.reserved_cores,
            "UsedCores": pool.used_cores + pool.reserved_cores,
            "FreeCores": pool.free_cores}
    total_gpus = getattr(pool, "total_gpus", 0)
    if total_gpus:  # only then: the reply stays upstream's for pools without GPUs
        data.update(TotalGPUs=total_gpus, UsedGPUs=total_gpus - pool.free_gpus,
                    FreeGPUs=pool.free_gpus)
    return data


def status_data(manager, service) -> dict:
    """The ``status`` reply (also written as final_status.json), upstream's keys.

    ``service``: its facts (service_id, tags, address, interfaces, pub_address, wd)."""
    counts = manager.state_counts()
    failed = counts[JobState.FAILED] + counts[JobState.OMITTED] + counts[JobState.CANCELED]
    iterations = _iteration_stats(manager.unit_stats)
    now = datetime.fromtimestamp(manager.clock.now())
    started = datetime.fromtimestamp(manager.started_at)
    pool = manager.resource_totals()
    return {
        "System": {
            "InstanceId": service.service_id,
            "Tags": list(service.tags),
            "Started": str(started),
            "Generated": str(now),
            "Uptime": str(now - started),
            "Zmqaddress": service.address,
            "Ifaces": list(service.interfaces),
            "StatusPublisher": service.pub_address,
            "Host": socket.gethostname(),
            "Account": getpass.getuser(),
            "Wd": service.wd,
            "PythonVersion": sys.version.replace("\n", " "),
            "Python": sys.executable,
            "Platform": sys.platform,
            "Pid": os.getpid(),
        },
        "Resources": _status_resources(pool),
        "JobStats": {
            "TotalJobs": manager.job_count(),
            "InScheduleJobs": counts[JobState.QUEUED] + counts[JobState.SCHEDULED],
            "FailedJobs": failed,
            "FinishedJobs": counts[JobState.SUCCEED] + failed,
            "ExecutingJobs": counts[JobState.EXECUTING],
        },
        "IterationStats": iterations,
    }


def _iteration_stats(stats) -> dict:
    return {"TotalIterations": stats.total,
            "InScheduleIterations": stats.total - stats.finished - stats.active,
            "FailedIterations": stats.failed, "FinishedIterations": stats.finished,
            "ExecutingIterations": stats.active}
