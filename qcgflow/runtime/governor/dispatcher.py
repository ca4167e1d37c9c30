"""The governor's executor: units go to managers, their reported states come back.

::

    Manager._schedule --start(job, position, allocation)--> RemoteExecutor
        (allocation from GovernorPool: which manager)        | outbox per manager,
                                                             v one ``submit`` per loop turn
    Manager.task_executing / task_done <-- on_events <-- Hub <-- manager ``states``
                                        <-- on_lost: every unit of the manager ends FAILED
                                            "manager m2 lost: why"

It has the interface ``Manager`` expects of ``executor.Executor`` (``start``, ``stop``,
``stop_all``, ``len``), so the governor reuses the manager's registry, dependency tracker
and scheduler unchanged: dependencies (also across managers) are resolved here and the
managers never see ``after``. Guarantees: every started unit ends exactly once through
``task_done``: with the state its manager reported, CANCELED when stopped before it was
sent or by ``stop_all``, or FAILED with the cause when its manager is lost.
"""

import logging
from typing import Dict, List, Optional, Tuple

from ..executor import Outcome
from ..jobs import FINAL_STATES, JobState
from ..variables import escape_stage, substitute_all
from .messages import remote_name
from .pool import manager_of

_log = logging.getLogger(__name__)


class _Unit:
    __slots__ = ("job", "position", "allocation", "manager_id", "name", "sent", "stop")

    def __init__(self, job, position, allocation, manager_id, name):
        self.job = job
        self.position = position
        self.allocation = allocation
        self.manager_id = manager_id
        self.name = name
        self.sent = False
        self.stop: Optional[Tuple[str, JobState]] = None


class RemoteExecutor:
    """Sends scheduled units to the managers of their allocations."""

    def __init__(self, loop, hub, pool, on_executing, on_done):
        self._loop = loop
        self._hub = hub
        self._pool = pool
        self._on_executing = on_executing
        self._on_done = on_done
        self._units: Dict[str, Dict[str, _Unit]] = {}  # manager id -> remote name -> unit
        self._where: Dict[Tuple[str, Optional[int]], _Unit] = {}
        self._outbox: Dict[str, List[Tuple[_Unit, dict]]] = {}
        self._flush_pending = False
        self.dispatched = 0
        self.send_seconds = 0.0  # time spent building and sending submit messages

    def __len__(self) -> int:
        return len(self._where)

    def running_step(self, step: str) -> None:
        """A unit's process runs on its manager, which answers taskBlocked itself: the
        governor has no step of its own to lend (roles.TaskExecutor)."""
        return None

    # ------------------------------------------------------------------ start
    def start(self, job, position: Optional[int], allocation) -> None:
        manager_id = manager_of(allocation)
        index = None if position is None else job.spec.iteration.start + position
        unit = _Unit(job, position, allocation, manager_id, remote_name(job.name, index))
        self._units.setdefault(manager_id, {})[unit.name] = unit
        self._where[(job.name, position)] = unit
        self._outbox.setdefault(manager_id, []).append(
            (unit, unit_description(job.spec, position, index, allocation)))
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        outbox, self._outbox = self._outbox, {}
        records = self._hub.records
        for manager_id, items in outbox.items():
            record = records.get(manager_id)
            if record is None or record.state != "up":
                continue  # lost meanwhile: on_lost has ended these units
            where = self._where  # a unit stopped or ended before this turn is not sent
            items = [(unit, desc) for unit, desc in items
                     if unit.stop is None and where.get((unit.job.name, unit.position)) is unit]
            for unit, _ in items:
                unit.sent = True
            record.dispatched += len(items)
            self.dispatched += len(items)
            if items:
                self._hub.send(record, "submit", jobs=[desc for _, desc in items])

    # ------------------------------------------------------------------ stop
    def stop(self, job, position: Optional[int], reason: str, state: JobState,
             grace: float = 0.0) -> None:
        """Cancel a unit: at once when not sent yet, else through its manager."""
        unit = self._where.get((job.name, position))
        if unit is None or unit.stop is not None:
            return
        unit.stop = (reason, state)
        if not unit.sent:
            self._loop.call_soon(lambda: self._end(unit, state, reason, {}))
            return
        record = self._hub.records.get(unit.manager_id)
        if record is not None and record.state == "up":
            self._hub.send(record, "cancel", names=[unit.name])

    def stop_all(self, reason: str, state: JobState) -> None:
        """End every unit now with ``state`` (the governor is stopping; its managers are
        told to finish, which kills what they run)."""
        for unit in list(self._where.values()):
            self._end(unit, state, reason, {})

    # ------------------------------------------------------------------ reports
    def on_events(self, record, events) -> None:
        units = self._units.get(record.manager_id, {})
        for event in events:
            try:
                name, state_name, message, runtime = event
                state = JobState[state_name]
            except (TypeError, ValueError, KeyError):
                _log.warning("manager %s sent a malformed event %.200r", record.manager_id,
                             event)
                continue
            unit = units.get(name)
            if unit is None:
                continue  # already ended here (canceled, or the governor is stopping)
            if state is JobState.EXECUTING:
                if self._unit_state(unit) is JobState.SCHEDULED:
                    self._on_executing(unit.job, unit.position)
                    record_ = (unit.job if unit.position is None
                               else unit.job.records.get(unit.position))
                    if record_ is not None:  # jobInfo shows where it runs while it runs
                        record_.runtime = {"manager": unit.manager_id}
                continue
            if state not in FINAL_STATES:
                continue
            if state is JobState.OMITTED:  # the manager had no reason to omit: say so
                state, message = JobState.FAILED, "omitted by manager %s: %s" % (
                    record.manager_id, message)
            if unit.stop is not None and state is JobState.CANCELED:
                message = unit.stop[0]
            record.ended += 1
            self._end(unit, state, message, runtime if isinstance(runtime, dict) else {})

    def on_lost(self, record, why: str) -> None:
        """Every unit of a lost manager ends FAILED with the cause; its cores are gone."""
        self._pool.drop(record.manager_id)
        self._outbox.pop(record.manager_id, None)
        units = list(self._units.get(record.manager_id, {}).values())
        cause = "manager %s lost: %s" % (record.manager_id, why)
        for unit in units:
            self._end(unit, JobState.FAILED, cause, {})
        if units:
            _log.error("%d units of manager %s end FAILED: %s", len(units), record.manager_id,
                       cause)

    def _end(self, unit: _Unit, state: JobState, message, runtime) -> None:
        if self._where.get((unit.job.name, unit.position)) is not unit:
            return  # ended already
        del self._where[(unit.job.name, unit.position)]
        self._units.get(unit.manager_id, {}).pop(unit.name, None)
        if state in (JobState.SUCCEED, JobState.FAILED) and \
                self._unit_state(unit) is JobState.SCHEDULED:
            if state is JobState.SUCCEED:
                self._on_executing(unit.job, unit.position)
        runtime = dict(runtime or {})
        runtime.setdefault("manager", unit.manager_id)
        self._on_done(unit.job, unit.position, unit.allocation,
                      Outcome(state, message, runtime))

    @staticmethod
    def _unit_state(unit: _Unit) -> JobState:
        job = unit.job
        return job.state if unit.position is None else job.iteration_state(unit.position)

    def close(self) -> None:
        """The governor's launcher interface (nothing to release)."""

    def kill_all(self) -> None:
        """The governor's launcher interface: the managers kill their own tasks."""


def unit_description(spec, position: Optional[int], index: Optional[int], allocation) -> dict:
    """The job description a manager runs for one unit: the submitted description (already
    substituted), without dependencies, one iteration, and exactly the allocated size."""
    desc = {key: value for key, value in spec.description.items()
            if key not in ("dependencies", "iteration", "name")}
    if index is not None and spec.iteration.values:
        # The manager would see a range iteration, whose ${itval} is the index: put the
        # value in here, written so that the manager's execution stage gives it back
        value = spec.iteration.values[position].replace("$", "$$")
        desc = substitute_all(desc, {"itval": value}, unescape=False)
    # The manager's submit stage runs again: every $ doubled gives it back this text
    # (``$${it}`` was submitted, ``${it}`` is here and must reach the execution stage)
    desc = escape_stage(desc)
    desc["name"] = remote_name(spec.name, index)
    if index is not None:
        desc["iteration"] = {"start": index, "stop": index + 1}  # ${it} stays the index
    resources = {k: v for k, v in (desc.get("resources") or {}).items()
                 if k not in ("numCores", "numNodes")}
    counts = [len(part.cores) for part in allocation.parts]
    if spec.resources.nodes is not None:
        resources["numNodes"] = {"exact": len(counts)}
        if spec.resources.cores is not None:  # cores per node (whole nodes otherwise)
            low, high = min(counts), max(counts)
            resources["numCores"] = ({"exact": low} if low == high
                                     else {"min": low, "max": high})
    else:
        resources["numCores"] = {"exact": sum(counts)}
    desc["resources"] = resources
    return desc
