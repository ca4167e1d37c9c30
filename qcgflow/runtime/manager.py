"""The manager: accepts jobs, resolves dependencies, schedules and tracks execution.

::

    submit(raw jobs) -- parse + validate all (atomic) --> Registry.add --> DependencyTracker
                                                                             | ready
    Executor.on_done --> Registry.transition --> finals --> tracker.finished -+--> ReadyQueue
                                                                             | omit
                                                    Registry.transition(OMITTED) <--'
    kick() -> (call_soon) Scheduler.step() -> SCHEDULED -> Executor.start -> EXECUTING

Everything runs in the event loop's thread. Omission cascades are processed with a work
list, so a failed head of a 100,000-job chain costs O(chain), not recursion depth.
"""

import logging
from collections import deque
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence

from .deps import Decisions, DependencyTracker, check_cycles
from .errors import InvalidRequest, NotEnoughResources
from .jobs import CODE_STATES, FINAL_STATES, JobSpec, JobState
from .names import shown
from .protocol import LOCAL_MODELS, parse_job
from .registry import Job, Registry
from .resources import CountRange, ResourcePool, ResourceRequest
from .totals import ResourceTotals
from .scheduler import JobEntry, Scheduler
from .tokens import uuid4_hex

_log = logging.getLogger(__name__)

# seconds between SIGTERM and SIGKILL when a running job is canceled (the default of
# Manager(cancel_grace=...), set by the service's --cancel-grace)
CANCEL_GRACE = 10.0


def _gpu_shortfall(spec: JobSpec, pool) -> str:
    """The reason a GPU job can never fit, naming the field ('' for other jobs)."""
    gpus = spec.resources.gpus
    if not gpus:
        return ""
    per_node = [len(ids) for ids in getattr(pool, "gpus", {}).values()]
    most = max(per_node, default=0)
    asks = "resources.nodeCrs.gpu asks for %d GPU%s on each node" % (gpus, "s"[:gpus > 1])
    if most >= gpus:
        return ": %s, too few nodes have them with the cores asked for" % asks
    return ": %s, but no node has more than %d" % (asks, most)

# up to this many iterations of an omitted sweep end OMITTED one by one (waits on them end)
EAGER_OMIT_LIMIT = 10_000

class Manager:
    """Owns the registry, the dependency tracker, the scheduler and the executor's callbacks."""

    def __init__(self, pool: ResourcePool, clock, loop, *, cluster_name: str = "local",
                 models: Sequence[str] = LOCAL_MODELS, cancel_grace: float = CANCEL_GRACE):
        self.pool = pool
        self.cancel_grace = cancel_grace
        self.clock = clock
        self.loop = loop
        self.registry = Registry(clock)
        self.tracker = DependencyTracker()
        self.scheduler = Scheduler(pool)
        self.executor = None  # attach_executor (the executor needs the manager's callbacks)
        self.entries: Dict[str, JobEntry] = {}
        self.cluster_name = cluster_name
        self.models = tuple(models)
        self.request_counter = 0
        self.unfinished = 0
        self.started_at = clock.now()
        self._kicked = False
        self._halted = False
        self._paused = False
        self._idle_notified = False
        self.on_idle: List[Callable[[], None]] = []  # called when no job is unfinished
        # told about every accepted submit request (the JobSpecs) and removal (the names),
        # before any state of those jobs changes (the resume journal)
        self.on_submit: List[Callable[[List[JobSpec]], None]] = []
        self.on_remove: List[Callable[[List[str]], None]] = []
        # when the allocation ends (clock.now() seconds), if known: jobs whose wt would
        # outlast it are not started (they stay QUEUED, unfinished for a resume)
        self.deadline: Optional[float] = None
        # (job, position) of a running task blocked in qcgflow.get -> what it holds: None
        # while its cores are lent to others, _Owed once it woke up and found none free
        # (_Owed: it runs over the pool until cores come free), an Allocation once repaid
        self.lent: Dict[tuple, object] = {}

    # ------------------------------------------------------------------ composition
    def attach_executor(self, executor) -> None:
        """Give the manager what starts and stops its units (a ``roles.TaskExecutor``),
        once, before the event loop runs: it is built with ``task_executing`` and
        ``task_done`` as its callbacks, so it cannot be given to the constructor.

        Raises:
            RuntimeError: an executor is attached already.
        """
        if self.executor is not None:
            raise RuntimeError("the manager has an executor already")
        self.executor = executor

    def add_listener(self, listener, finals_only: bool = False) -> None:
        """Tell ``listener(job, position or None, state)`` about every state change of a
        run (not of a restore: see ``Registry.restore``), after the earlier listeners.

        ``finals_only``: about final states only. Such listeners hear a final state before
        every listener of all states (a journal before a publisher)."""
        (self.registry.final_listeners if finals_only else
         self.registry.listeners).append(listener)

    # ------------------------------------------------------------------ read-only views
    def jobs(self):
        """Every registered job, in submission order."""
        return iter(self.registry)

    def job_count(self) -> int:
        return len(self.registry)

    def state_counts(self) -> Dict[JobState, int]:
        """Jobs (parents and single jobs) per state, O(1)."""
        return self.registry.counts()

    @property
    def unit_stats(self):
        """Running counts of units: iterations, and single jobs as one each (O(1))."""
        return self.registry.unit_stats

    def queue_order(self) -> Dict[str, int]:
        """Job name -> its place in the ready queue (jobs waiting for cores only)."""
        return {entry.job.name: i for i, entry in enumerate(self.scheduler.queue.entries())}

    def resource_totals(self) -> ResourceTotals:
        """The resources' counts now (nodes, cores, GPUs), a read-only snapshot."""
        return ResourceTotals.of(self.pool)

    def node_cores(self):
        """``(node name, core ids)`` of every node of the resources, in order."""
        return list(self.pool.nodes)

    @property
    def has_gpus(self) -> bool:
        return getattr(self.pool, "total_gpus", 0) > 0

    def disable_node(self, node: str) -> None:
        """``node`` takes no new work (its agent is lost or ending)."""
        self.pool.disable(node)

    def enable_node(self, node: str) -> None:
        """``node`` takes work again (its agent came up)."""
        self.pool.enable(node)

    # ------------------------------------------------------------------ submit
    def submit(self, raw_jobs: Sequence[dict], substituted: bool = False) -> List[str]:
        """Validate and register a whole submit request (all or nothing).

        ``substituted``: the descriptions went through the submit stage already (a
        resumed journal holds them so): it is not applied again.

        Returns:
            The names of the registered jobs, in order.

        Raises:
            InvalidRequest: the first problem found; nothing of the request is registered.
            NotEnoughResources: a job can never fit the available resources.
        """
        self.request_counter += 1
        specs = self._parse_all(raw_jobs, substituted)
        by_name = {spec.name: spec for spec in specs}
        check_cycles(specs)

        def lookup_spec(name):
            if name in by_name:
                return by_name[name]
            job = self.registry.get(name)
            return job.spec if job is not None else None

        entries = []
        for spec in specs:
            self.tracker.validate(spec, lookup_spec)
            entry = JobEntry(Job(spec, 0), self.pool)
            if not self.pool.fits_ever(entry.max_request()):
                raise NotEnoughResources("Not enough resources for job %s%s"
                                         % (spec.name, _gpu_shortfall(spec, self.pool)))
            entries.append(entry)
        self._idle_notified = False  # new work: the next idle moment is a new one
        for listener in self.on_submit:
            listener(specs)
        for entry in entries:
            job = self.registry.add(entry.job.spec)
            entry.job, entry.seq = job, job.seq
            self.entries[job.name] = entry
            self.unfinished += 1
        for entry in entries:
            self._apply(self.tracker.register(entry, self.registry.get))
        self.kick()
        return [spec.name for spec in specs]

    def _parse_all(self, raw_jobs: Sequence[dict], substituted: bool) -> List[JobSpec]:
        now = datetime.fromtimestamp(self.clock.now())
        specs: List[JobSpec] = []
        seen = set()
        for raw in raw_jobs:
            submit_vars = {
                "rcnt": str(self.request_counter),
                "uniq": uuid4_hex(),
                "sname": self.cluster_name,
                "date": now.strftime("%Y-%m-%d"),
                "time": now.strftime("%H-%M-%S"),
                "dateTime": now.strftime("%Y-%m-%d_%H-%M-%S"),
            }
            spec = parse_job(raw, None if substituted else submit_vars)
            if spec.name in seen or spec.name in self.registry:
                raise InvalidRequest("Job %s already exist" % spec.name)
            if spec.execution.model not in self.models:
                raise InvalidRequest(
                    "Job '%s': execution model '%s' is not available in this mode (available: "
                    "%s)" % (spec.name, spec.execution.model, ", ".join(self.models)))
            seen.add(spec.name)
            specs.append(spec)
        return specs

    # ------------------------------------------------------------------ scheduling
    def kick(self) -> None:
        """Ask for a scheduling pass (coalesced: one pass per loop turn)."""
        if not self._kicked:
            self._kicked = True
            self.loop.call_soon(self._schedule)

    def halt(self) -> None:
        """Start nothing more (the service is stopping)."""
        self._halted = True

    def pause(self) -> None:
        """Accept jobs but start none until :meth:`resume` (node agents not ready yet)."""
        self._paused = True

    def resume(self) -> None:
        """Start jobs again after :meth:`pause`."""
        self._paused = False
        self.kick()

    def _schedule(self) -> None:
        self._kicked = False
        if self._halted or self._paused:
            return
        time_left = None if self.deadline is None else self.deadline - self.clock.now()
        held = set(self.scheduler.held) if self.deadline is not None else None
        starts = self.scheduler.step(time_left)
        if held is not None and len(self.scheduler.held) > len(held):
            _log.warning("not started, their wall time outlasts the allocation (%.0f s left): "
                         "%s; they stay QUEUED for a resume", time_left,
                         ", ".join(sorted(self.scheduler.held - held)))
        refused = []
        for start in starts:
            job = start.entry.job
            if start.allocation is None:
                refused.extend(self.registry.transition(job, start.position, JobState.FAILED,
                                                        start.refusal))
                continue
            self.registry.transition(job, start.position, JobState.SCHEDULED)
            self.executor.start(job, start.position, start.allocation)
        if refused:
            self._resolve(refused)
            self.kick()

    def task_executing(self, job: Job, position: Optional[int]) -> None:
        self.registry.transition(job, position, JobState.EXECUTING)  # mark_executing

    def task_done(self, job: Job, position: Optional[int], allocation, outcome) -> None:
        """An iteration ended: release its cores, record the outcome, resolve dependants."""
        if self.lent and (job.name, position) in self.lent:
            # it blocked: only what it holds now goes back
            held = self.lent.pop((job.name, position))
            if held is not None and type(held) is not _Owed:
                self.pool.release(held)
        else:
            self.pool.release(allocation)
        if self.lent:
            self._repay()
        record = job if position is None else job.records.get(position)
        if record is not None:
            record.runtime = dict(outcome.runtime)
        if position is not None and CODE_STATES[job.iter_states[position]] in FINAL_STATES:
            finals = []  # already ended (its whole job was canceled while it ran)
        else:
            finals = self.registry.transition(job, position, outcome.state, outcome.message)
        self._resolve(finals)
        self.kick()
        self.check_idle()

    # ------------------------------------------------------------------ blocked tasks
    def lend(self, step: str) -> bool:
        """The running task ``step`` (its QCG_PM_STEP_ID) waits for other tasks: its cores
        go back to the pool for them (as Ray releases a blocked worker's CPUs). False when
        no such task runs or its cores are lent already (idempotent)."""
        found = self.executor.running_step(step) if self.executor is not None else None
        if found is None:
            return False
        job, position, allocation = found
        key = (job.name, position)
        held = self.lent.get(key, allocation)  # what it holds now (it may block again)
        if held is None:
            return False
        if type(held) is not _Owed:  # an owed debt is simply forgiven
            self.pool.release(held)
        self.lent[key] = None
        self.kick()
        return True

    def reclaim(self, step: str) -> bool:
        """The blocked task ``step`` goes on: it takes as many cores back (any free ones;
        it stays bound to its first ones). When none are free it runs anyway, over the
        pool, and the next cores freed are its before new tasks start (Ray lets the CPU
        count go negative). True when the cores were taken at once."""
        found = self.executor.running_step(step) if self.executor is not None else None
        if found is None:
            return False
        job, position, allocation = found
        key = (job.name, position)
        if key not in self.lent or self.lent[key] is not None:
            return False
        request = ResourceRequest(cores=CountRange.exact(allocation.total_cores), nodes=None)
        taken = self.pool.allocate(request)
        self.lent[key] = taken if taken is not None else _Owed(request)
        return taken is not None

    def _repay(self) -> None:
        """Give freed cores to woken tasks that run over the pool, before new tasks."""
        for key, held in self.lent.items():
            if type(held) is _Owed:
                taken = self.pool.allocate(held.request)
                if taken is None:
                    return
                self.lent[key] = taken

    # ------------------------------------------------------------------ dependencies
    def _resolve(self, finals) -> None:
        work = deque(finals)
        waits_on = self.tracker.waits_on_iteration
        while work:
            job, position = work.popleft()
            if position is None:
                self._job_ended(job)
            elif not waits_on(job.name, job.spec.iteration.start + position):
                continue  # nobody waits on this iteration (most of a sweep): nothing to do
            self._apply(self.tracker.finished(job, position, _final_state(job, position)), work)

    def _apply(self, decisions: Decisions, work: Optional[deque] = None) -> None:
        follow = work if work is not None else deque()
        for entry in decisions.ready:
            if not entry.job.state.is_final and entry.job.parent_final is None:
                self.scheduler.queue.add(entry)
        for entry, cause in decisions.omit_jobs:
            follow.extend(self._omit_job(entry, cause))
        for entry, position, cause in decisions.omit_iterations:
            job = entry.job
            if job.state.is_final or job.iteration_state(position).is_final:
                continue
            follow.extend(self.registry.transition(job, position, JobState.OMITTED, cause))
        if work is None and follow:
            self._resolve(follow)
        if decisions.ready:
            self.kick()

    def _omit_job(self, entry: JobEntry, cause: str):
        """OMIT a whole job; one that already started iterations has its queued ones
        OMITTED instead (its parent then ends FAILED). Returns the resulting finals."""
        job = entry.job
        if job.state.is_final:
            return []
        self.scheduler.queue.discard(entry)
        self.tracker.forget(entry)
        if job.state is JobState.QUEUED and (
                not job.iterative or job.total - job.finished > EAGER_OMIT_LIMIT):
            # a huge sweep is omitted whole, its iterations left as they are (upstream's
            # way): ending each one costs a report line and a journal record, ~50 us, and a
            # 10,000,000-iteration sweep would stall the service for minutes
            return self.registry.transition(job, None, JobState.OMITTED, cause)
        finals = []
        if job.state is JobState.QUEUED:
            # every iteration OMITTED, then the parent (so a wait on ``name:3`` ends, the
            # counts add up, and per-iteration dependants see each iteration end first)
            self.registry.settle_parent(job, JobState.OMITTED, cause)
        for position in range(job.total):
            if job.iteration_state(position) is JobState.QUEUED:
                entry.omitted.add(position)
                finals.extend(self.registry.transition(job, position, JobState.OMITTED, cause))
        return finals

    def _job_ended(self, job: Job) -> None:
        entry = self.entries.pop(job.name, None)
        if entry is not None:
            self.scheduler.queue.discard(entry)
        self.unfinished -= 1
        self.check_idle()

    def is_idle(self) -> bool:
        """No job is unfinished and no process is left running."""
        if self.unfinished:
            return False
        running = len(self.executor) if hasattr(self.executor, "__len__") else 0
        return not running

    def check_idle(self) -> None:
        """Call ``on_idle`` once per idle period (new submissions start a new period)."""
        if not self.is_idle():
            self._idle_notified = False
        elif not self._idle_notified:
            self._idle_notified = True
            for callback in list(self.on_idle):
                callback()

    # ------------------------------------------------------------------ cancel
    def cancel(self, names: Sequence[str], grace: Optional[float] = None) -> int:
        """Cancel jobs (``name``) or single iterations (``name:index``).

        Queued units end CANCELED at once (their dependants OMITTED); running ones get
        SIGTERM, SIGKILL after ``grace`` seconds (default: the manager's ``cancel_grace``),
        and end CANCELED. A whole iterative job
        has every iteration that has not ended canceled, and ends CANCELED itself when the
        last of them has ended (never before). Units that already ended are left as they
        are.

        Returns:
            The number of units that were canceled or are being stopped.

        Raises:
            InvalidRequest: an unknown name (nothing is canceled then).
        """
        grace = self.cancel_grace if grace is None else grace
        units = []
        for name in names:
            unit = self.lookup_unit(name)
            if unit is None:
                raise InvalidRequest("Job '%s' doesn't exist" % shown(name))
            units.append(unit)
        count = 0
        finals = []
        for job, position in units:
            if position is None and job.iterative:
                count += self._cancel_iterative(job, grace, finals)
            elif position is None:
                count += self._cancel_unit(job, None, job.state, grace, finals)
            else:
                count += self._cancel_unit(job, position, job.iteration_state(position), grace,
                                           finals)
        self._resolve(finals)
        self.check_idle()
        return count

    def _cancel_unit(self, job: Job, position, state: JobState, grace: float, finals) -> int:
        if state.is_final:
            return 0
        if state is JobState.QUEUED:
            entry = self.entries.get(job.name)
            if position is None:
                if entry is not None:
                    self.scheduler.queue.discard(entry)
            elif entry is not None:
                entry.omitted.add(position)
            finals.extend(self.registry.transition(job, position, JobState.CANCELED,
                                                   "canceled by user"))
            return 1
        self.executor.stop(job, position, "canceled by user", JobState.CANCELED, grace)
        return 1

    def _cancel_iterative(self, job: Job, grace: float, finals) -> int:
        """Cancel every iteration that has not ended; the parent ends CANCELED only when
        the last of them has (as upstream's ``Job.set_state``), so a ``wait4`` on it
        returns with every iteration final and counts that add up."""
        if job.state.is_final or job.parent_final is JobState.CANCELED:
            return 0
        self.registry.settle_parent(job, JobState.CANCELED, "canceled by user")
        entry = self.entries.get(job.name)
        if entry is not None:
            self.scheduler.queue.discard(entry)
        count = 1
        running = []
        for position in range(job.total):
            state = job.iteration_state(position)
            if state is JobState.QUEUED:
                if entry is not None:
                    entry.omitted.add(position)
                finals.extend(self.registry.transition(job, position, JobState.CANCELED,
                                                       "canceled by user"))
                count += 1
            elif not state.is_final:
                running.append(position)
        for position in running:  # their ends (task_done) make the parent final
            self.executor.stop(job, position, "canceled by user", JobState.CANCELED, grace)
            count += 1
        return count

    def lookup_unit(self, name: str):
        """``name`` or ``name:index`` -> (job, position or None), or None if unknown."""
        job = self.registry.get(name)
        if job is not None:
            return job, None
        base, _, index = name.rpartition(":")
        job = self.registry.get(base) if base else None
        if job is None or not job.iterative or not index.lstrip("-").isdigit():
            return None
        position = int(index) - job.spec.iteration.start
        if not 0 <= position < job.total:
            return None
        return job, position

    # ------------------------------------------------------------------ queries
    def queue_position(self, job: Job) -> Optional[int]:
        for position, entry in enumerate(self.scheduler.queue.entries()):
            if entry.job is job:
                return position
        return None

    def remove(self, names: Sequence[str]) -> int:
        for name in names:
            job = self.registry.get(name)
            if job is None:
                raise InvalidRequest("Job '%s' doesn't exist" % shown(name))
            if not job.state.is_final:
                raise InvalidRequest("Job '%s' is %s: only finished jobs can be removed"
                                     % (name, job.state.name))
        for name in names:
            self.registry.remove(name)
        for listener in self.on_remove:
            listener(list(names))
        return len(names)

    def restore_final(self, name: str, index: Optional[int], state: JobState,
                      message: Optional[str] = None) -> int:
        """Resume: mark a unit (job, or iteration ``index``) finished in ``state`` without
        running it; dependants see it as they would have seen it end. Returns 1 when the
        unit was restored, 0 when it is unknown or already final."""
        job = self.registry.get(name)
        if job is None or (index is not None and not job.iterative):
            return 0
        position = None
        if index is not None:
            position = index - job.spec.iteration.start
            if not 0 <= position < job.total:
                return 0
            entry = self.entries.get(name)
            if entry is not None:
                entry.omitted.add(position)  # never started by the scheduler
        finals = self.registry.restore(job, position, state, message)
        self._resolve(finals)
        return 1 if finals else 0

    def settle_parent(self, name: str, state: JobState, message: Optional[str]) -> None:
        """Resume: an iterative job whose whole-job final state was CANCELED or OMITTED
        (recorded after its iterations) ends so again when its iterations are restored."""
        job = self.registry.get(name)
        if (job is not None and job.iterative and not job.state.is_final
                and state in (JobState.CANCELED, JobState.OMITTED)):
            self.registry.settle_parent(job, state, message or "")

    def finish_all(self, reason: str) -> None:
        """Stop every running task (SIGKILL); used by ``finish`` and on shutdown."""
        if self.executor is not None:
            self.executor.stop_all(reason, JobState.CANCELED)


class _Owed:
    """Manager.lent: a woken task that found no free cores; ``request`` is what it is owed."""

    __slots__ = ("request",)

    def __init__(self, request: ResourceRequest):
        self.request = request


def _final_state(job: Job, position: Optional[int]) -> JobState:
    return job.state if position is None else job.iteration_state(position)
