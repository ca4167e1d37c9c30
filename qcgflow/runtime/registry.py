"""The registry of jobs and iterations: the ONLY place where states change.

``Registry.transition`` (the service running a unit) and ``Registry.restore`` (a resume
replaying what an earlier run journaled) are the two doors of one mutator: it validates a
move against ``jobs.TRANSITIONS`` for its kind of edge (``Edge.RUN``, ``Edge.RESTORE``),
stamps the history with the injected clock, derives the parent state of iterative jobs, and
tells the listeners (reports, journal, publisher) about every RUN move (a restored state is
in the journal and jobs.report already). It returns the units that reached a final state,
so the caller can resolve dependencies without scanning.

Iterations are stored compactly: one byte of state per iteration, and a full
``IterationRecord`` (history, runtime, messages) only while the iteration is alive, or
after it ended when the job is small enough or the iteration did not succeed
(``KEEP_RECORDS_UP_TO``). A job of a million iterations costs about a megabyte.
"""

from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .jobs import (CODE_STATES, FINAL_STATES, STATE_CODES, TRANSITIONS, Edge,
                   IllegalTransition, JobSpec, JobState)

KEEP_RECORDS_UP_TO = 10_000

_QUEUED = STATE_CODES[JobState.QUEUED]
_QUEUED_STATE = JobState.QUEUED
_SCHEDULED = JobState.SCHEDULED
_EXECUTING = JobState.EXECUTING
_SUCCEED = JobState.SUCCEED
_RUN = Edge.RUN
_NO_EDGE = frozenset()


class IterationRecord:
    """One iteration of an iterative job: its state history, runtime details and messages."""

    __slots__ = ("position", "index", "state", "history", "runtime", "messages")

    def __init__(self, position: int, index: int):
        self.position = position
        self.index = index
        self.state = JobState.QUEUED
        self.history: List[Tuple[JobState, float]] = []
        self.runtime: Dict[str, str] = {}
        self.messages: Optional[str] = None


class Job:
    """A registered job. Read freely; change only through ``Registry.transition`` (or
    ``Registry.restore``)."""

    __slots__ = ("spec", "seq", "state", "history", "runtime", "messages", "iter_states",
                 "records", "finished", "failed", "active", "parent_final")

    def __init__(self, spec: JobSpec, seq: int):
        self.spec = spec
        self.seq = seq  # submission order: the FIFO order of the queue
        self.state = JobState.QUEUED
        self.history: List[Tuple[JobState, float]] = []
        self.runtime: Dict[str, str] = {}
        self.messages: Optional[str] = None
        count = spec.iteration.count if spec.iteration else 0
        self.iter_states = bytearray(count) if spec.iteration else None
        self.records: Dict[int, IterationRecord] = {}
        self.finished = 0  # iterations in a final state
        self.failed = 0    # iterations FAILED, CANCELED or OMITTED
        self.active = 0    # iterations SCHEDULED or EXECUTING
        # the state the parent takes when its last iteration ends, when not derived from
        # the iterations: CANCELED after a whole-job cancel, OMITTED after a whole-job
        # omission (upstream's ``job.canceled``); None: SUCCEED or FAILED by the counts
        self.parent_final: Optional[JobState] = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def iterative(self) -> bool:
        return self.iter_states is not None

    @property
    def total(self) -> int:
        return len(self.iter_states) if self.iter_states is not None else 1

    def iteration_state(self, position: int) -> JobState:
        return CODE_STATES[self.iter_states[position]]

    def record(self, position: int) -> Optional[IterationRecord]:
        return self.records.get(position)

    def unit_name(self, position: Optional[int]) -> str:
        """``name`` or ``name:index`` (the iteration's index, not its position)."""
        if position is None:
            return self.spec.name
        return "%s:%d" % (self.spec.name, self.spec.iteration.start + position)


Listener = Callable[[Job, Optional[int], JobState], None]


class Registry:
    """All jobs by name, in submission order, and the single state mutator."""

    def __init__(self, clock, listeners: Tuple[Listener, ...] = ()):
        self._clock = clock
        self._jobs: Dict[str, Job] = {}
        self._seq = 0
        # Running counts, so that status requests cost O(1) whatever the number of jobs.
        self._job_counts: Dict[JobState, int] = {state: 0 for state in JobState}
        self.unit_stats = UnitStats()
        self.listeners: List[Listener] = list(listeners)  # told every state
        # told final states only, before ``listeners``: a sweep's two other moves per
        # iteration skip them, and the journal's end record is written before a
        # publisher tells anyone (write-ahead)
        self.final_listeners: List[Listener] = []

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> Optional[Job]:
        return self._jobs.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    # ------------------------------------------------------------------ membership
    def add(self, spec: JobSpec) -> Job:
        """Register a new job in state QUEUED (history stamped now)."""
        if spec.name in self._jobs:
            raise KeyError(spec.name)
        self._seq += 1
        job = Job(spec, self._seq)
        job.history.append((JobState.QUEUED, self._clock.now()))
        self._jobs[spec.name] = job
        self._job_counts[JobState.QUEUED] += 1
        self.unit_stats.total += job.total
        for listener in self.listeners:
            listener(job, None, JobState.QUEUED)
        return job

    def remove(self, name: str) -> Job:
        """Forget a job (the caller checks that it has ended)."""
        job = self._jobs.pop(name)
        self._job_counts[job.state] -= 1
        stats = self.unit_stats
        stats.total -= job.total
        stats.finished -= job.finished if job.iterative else int(job.state.is_final)
        stats.failed -= job.failed if job.iterative else int(
            job.state.is_final and job.state is not _SUCCEED)
        return job

    # ------------------------------------------------------------------ the mutator
    def transition(self, job: Job, position: Optional[int], state: JobState,
                   message: Optional[str] = None) -> List[Tuple[Job, Optional[int]]]:
        """Move a job (``position`` None) or one of its iterations to ``state``.

        Returns:
            The units that reached a final state by this call: the unit itself and, for an
            iteration, its parent when that was the last one to finish.

        Raises:
            IllegalTransition: the move is not a RUN edge of ``jobs.TRANSITIONS`` (a bug).
        """
        if position is None:
            return self._move_job(job, state, message, _RUN)
        return self._move_iteration(job, position, state, message, _RUN)

    def _move_job(self, job: Job, state: JobState, message: Optional[str], edge: Edge):
        if edge not in TRANSITIONS[job.state].get(state, _NO_EDGE):
            raise IllegalTransition(job.name, job.state, state, job.history, edge)
        old = job.state
        job.state = state
        job.history.append((state, self._clock.now()))
        self._job_counts[old] -= 1
        self._job_counts[state] += 1
        if not job.iterative:
            self.unit_stats.moved(old, state)
        if message:
            job.messages = message if not job.messages else "%s; %s" % (job.messages, message)
        final = state in FINAL_STATES
        if edge is _RUN:
            if final:
                for listener in self.final_listeners:
                    listener(job, None, state)
            for listener in self.listeners:
                listener(job, None, state)
        return [(job, None)] if final else []

    def _move_iteration(self, job: Job, position: int, state: JobState,
                        message: Optional[str], edge: Edge):
        # The hot path of every sweep (three calls per iteration): UnitStats.moved,
        # _follow_parent and _forget are inlined here, with the same effects.
        old = CODE_STATES[job.iter_states[position]]
        if edge not in TRANSITIONS[old].get(state, _NO_EDGE):
            record = job.records.get(position)
            history = record.history if record is not None else job.history[:1]
            raise IllegalTransition(job.unit_name(position), old, state, history, edge)
        record = job.records.get(position)
        if record is None:
            record = IterationRecord(position, job.spec.iteration.start + position)
            record.history.append((_QUEUED_STATE, job.history[0][1]))
            job.records[position] = record
        now = self._clock.now()
        record.state = state
        record.history.append((state, now))
        if message:
            record.messages = message
        job.iter_states[position] = STATE_CODES[state]
        final = state in FINAL_STATES
        stats = self.unit_stats
        if old is _QUEUED_STATE:
            job.active += 1
            if state in _ACTIVE:
                stats.active += 1
        finished: List[Tuple[Job, Optional[int]]] = []
        parent = job.state
        if state is _SCHEDULED:  # a parent becomes SCHEDULED/EXECUTING with its first one
            if parent is _QUEUED_STATE:
                self._move_job(job, _SCHEDULED, None, _RUN)
        elif state is _EXECUTING:
            if parent is _SCHEDULED:
                self._move_job(job, _EXECUTING, None, _RUN)
        elif final:
            if old in _ACTIVE:
                stats.active -= 1
            stats.finished += 1
            job.active -= 1
            job.finished += 1
            if state is not _SUCCEED:
                stats.failed += 1
                job.failed += 1
            finished.append((job, position))
        if edge is _RUN:
            if final:
                for listener in self.final_listeners:
                    listener(job, position, state)
            for listener in self.listeners:
                listener(job, position, state)
        if final:
            if state is _SUCCEED and len(job.iter_states) > KEEP_RECORDS_UP_TO:
                del job.records[position]  # _forget
            if job.finished == len(job.iter_states) and job.state not in FINAL_STATES:
                if edge is _RUN:
                    finished.extend(self._finish_parent(job, *_parent_outcome(job)))
                else:  # every iteration restored: the parent, still QUEUED, too
                    finished.extend(self._move_job(job, *_parent_outcome(job), edge))
        return finished

    def _follow_parent(self, job: Job, state: JobState, message: Optional[str]) -> None:
        """A parent becomes SCHEDULED/EXECUTING with its first iteration."""
        if state is JobState.SCHEDULED and job.state is JobState.QUEUED:
            self._move_job(job, JobState.SCHEDULED, message, _RUN)
        elif state is JobState.EXECUTING and job.state is JobState.SCHEDULED:
            self._move_job(job, JobState.EXECUTING, message, _RUN)

    def _finish_parent(self, job: Job, final: JobState, why: Optional[str]):
        if job.parent_final is not None:
            pass  # set only where the move is legal (CANCELED: any; OMITTED: from QUEUED)
        elif job.state is JobState.QUEUED:
            # every iteration ended without running (all omitted): QUEUED -> final
            final = JobState.FAILED if final is not JobState.SUCCEED else final
        elif job.state is JobState.SCHEDULED and final is not JobState.FAILED:
            self._move_job(job, JobState.EXECUTING, None, _RUN)
        return self._move_job(job, final, why, _RUN)

    def settle_parent(self, job: Job, state: JobState, message: str) -> None:
        """Decide now that the parent of iterative ``job`` ends in ``state`` (CANCELED, or
        OMITTED while it is QUEUED) with ``message``; it gets there when its last
        iteration ends, not before."""
        job.parent_final = state
        if message:
            job.messages = message if not job.messages else "%s; %s" % (job.messages, message)

    def mark_executing(self, job: Job, position: Optional[int]) -> None:
        """SCHEDULED -> EXECUTING, also lifting the parent when needed."""
        self.transition(job, position, JobState.EXECUTING)

    def restore(self, job: Job, position: Optional[int], state: JobState,
                message: Optional[str] = None) -> List[Tuple[Job, Optional[int]]]:
        """Put a QUEUED unit straight into the final ``state`` it reached in an earlier run
        (resume): a RESTORE edge of the table. Listeners are not told: the journal and
        jobs.report already hold it.

        Returns:
            The units that became final, as ``transition`` does (an iterative parent follows
            when its last iteration is restored); empty when the unit was already final
            (a journal records an iterative job's end after its iterations').

        Raises:
            IllegalTransition: the unit is not QUEUED, or ``state`` is not final.
        """
        if job.state in FINAL_STATES:
            return []
        if position is None:
            return self._move_job(job, state, message, Edge.RESTORE)
        if CODE_STATES[job.iter_states[position]] in FINAL_STATES:
            return []
        return self._move_iteration(job, position, state, message, Edge.RESTORE)

    @staticmethod
    def _forget(job: Job, position: int, record: IterationRecord, state: JobState) -> None:
        if state is _SUCCEED and job.total > KEEP_RECORDS_UP_TO:
            del job.records[position]

    # ------------------------------------------------------------------ statistics
    def counts(self) -> Dict[JobState, int]:
        """Number of jobs (parents and single jobs) per state (O(1))."""
        return dict(self._job_counts)


def _parent_outcome(job: Job) -> Tuple[JobState, Optional[str]]:
    """The final state (and message) of a parent whose last iteration just ended."""
    if job.parent_final is not None:
        return job.parent_final, None  # the message was recorded by ``settle_parent``
    if job.failed == 0:
        return JobState.SUCCEED, None
    return JobState.FAILED, "%d of %d iterations did not succeed" % (job.failed, job.total)


class UnitStats:
    """Running counts of units (iterations, and single jobs as one unit each)."""

    __slots__ = ("total", "finished", "failed", "active")

    def __init__(self):
        self.total = self.finished = self.failed = self.active = 0

    def moved(self, old: JobState, new: JobState) -> None:
        if old is JobState.QUEUED and new in _ACTIVE:
            self.active += 1
        if new in FINAL_STATES:
            if old in _ACTIVE:
                self.active -= 1
            self.finished += 1
            if new is not _SUCCEED:
                self.failed += 1


_ACTIVE = frozenset({JobState.SCHEDULED, JobState.EXECUTING})
