"""Dependency resolution by counters of unfinished predecessors: O(edges), no scans.

Each ``after`` entry of a dependant is one edge, registered once at submit:

* ``a``        -> the dependant's ``pending`` counter; released when job a SUCCEEDs.
* ``a:3``      -> the dependant's ``pending`` counter; released when a:3 SUCCEEDs.
* ``a:${it}``  -> iteration i of the dependant waits for a:i (``per_iteration``).

When a predecessor ends in any other final state the dependant (or, per iteration, the
matching iteration) is OMITTED with the cause -- unless the edge came from ``afterAny``
(qcgflow's extension, Slurm's ``afterany``; ``DependencyRef.any_state``): such an edge is
released by ANY final state, so a fan-in still runs after failed members. One exception: a
per-iteration ``afterAny`` dependant of an iterative job canceled or omitted AS A WHOLE is
omitted (its missing iterations never end one by one, so there is nothing to wait for).

The tracker only decides; the manager applies the decisions through the registry and feeds
the resulting final states back in (``finished``), which makes omission cascades iterative
rather than recursive.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .errors import DependencyError
from .jobs import DependencyRef, JobState
from .scheduler import JobEntry


@dataclass
class Decisions:
    """What the manager must do after an event."""

    ready: List[JobEntry] = field(default_factory=list)             # add to the queue
    omit_jobs: List[Tuple[JobEntry, str]] = field(default_factory=list)
    omit_iterations: List[Tuple[JobEntry, int, str]] = field(default_factory=list)


def check_cycles(specs) -> None:
    """Reject self-dependencies and cycles among the jobs of one submit request.

    Jobs registered earlier cannot depend on jobs submitted now (names resolve at submit),
    so a cycle can only be formed inside one request.

    Raises:
        DependencyError: naming the cycle, e.g. ``a -> b -> a``.
    """
    names = {spec.name for spec in specs}
    edges = {spec.name: [ref.job for ref in spec.after if ref.job in names] for spec in specs}
    for spec in specs:
        if spec.name in edges[spec.name]:
            raise DependencyError("Job '%s' depends on itself" % spec.name)
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(names, white)
    for root in edges:
        if colour[root] != white:
            continue
        stack = [(root, iter(edges[root]))]
        path = [root]
        colour[root] = grey
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                colour[node] = black
            elif colour[child] == grey:
                cycle = path[path.index(child):] + [child]
                raise DependencyError("Dependency cycle: %s" % " -> ".join(reversed(cycle)))
            elif colour[child] == white:
                colour[child] = grey
                stack.append((child, iter(edges[child])))
                path.append(child)


class DependencyTracker:
    """Edges from predecessors to waiting dependants, keyed by the predecessor."""

    def __init__(self):
        # waiters as (entry, any_state): any_state edges are released by every final state
        self._on_job: Dict[str, List[Tuple[JobEntry, bool]]] = {}
        self._on_iteration: Dict[Tuple[str, int], List[Tuple[JobEntry, bool]]] = {}
        self._per_iteration: Dict[str, List[Tuple[JobEntry, bool]]] = {}
        self._iteration_keys: Dict[str, set] = {}  # job -> indices waited on by ``a:3``

    def validate(self, spec, lookup: Callable[[str], Optional[object]]) -> None:
        """Submit-time checks of iteration references (the job may still be omitted later).

        ``lookup(name)`` returns the predecessor's spec (same request or registered) or None.
        """
        for ref in spec.after:
            target = lookup(ref.job)
            if target is None:
                continue  # unknown: OMITTED at registration, with the reason
            if ref.iteration is not None:
                it = target.iteration
                if it is None or not it.start <= ref.iteration < it.stop:
                    raise DependencyError("Job '%s': dependency '%s' names an iteration that job "
                                          "'%s' does not have" % (spec.name, ref, ref.job))
            if ref.per_iteration:
                if spec.iteration is None:
                    raise DependencyError("Job '%s': per-iteration dependency '%s' needs job '%s' "
                                          "to be iterative" % (spec.name, ref, spec.name))
                it, own = target.iteration, spec.iteration
                if it is None or own.start < it.start or own.stop > it.stop:
                    raise DependencyError(
                        "Job '%s': per-iteration dependency '%s' needs iterations %d..%d in job "
                        "'%s'" % (spec.name, ref, own.start, own.stop - 1, ref.job))

    def register(self, entry: JobEntry, lookup_job: Callable[[str], Optional[object]]) -> Decisions:
        """Wire a newly registered job to its predecessors.

        Args:
            entry: the new job's entry.
            lookup_job: name -> registered ``Job`` (predecessors are registered first).
        """
        decisions = Decisions()
        job = entry.job
        for ref in job.spec.after:
            pred = lookup_job(ref.job)
            if pred is None:
                decisions.omit_jobs.append(
                    (entry, "dependency '%s' is not a known job" % ref.job))
                return decisions
            cause = self._edge(entry, ref, pred)
            if cause:
                decisions.omit_jobs.append((entry, cause))
                return decisions
        if entry.per_iteration:
            self._replay_finished(entry, lookup_job, decisions)
            if decisions.omit_jobs:
                return decisions
        if not entry.pending and (not decisions.ready or decisions.ready[-1] is not entry):
            decisions.ready.append(entry)
        return decisions

    def _edge(self, entry: JobEntry, ref: DependencyRef, pred) -> Optional[str]:
        """Register one edge; returns an omission cause when the predecessor already failed."""
        if ref.per_iteration:
            entry.per_iteration += 1
            self._per_iteration.setdefault(pred.name, []).append((entry, ref.any_state))
            return None
        if ref.iteration is not None:
            position = ref.iteration - pred.spec.iteration.start
            state = pred.iteration_state(position)
            key = (pred.name, ref.iteration)
        else:
            state, key = pred.state, None
        if state is JobState.SUCCEED or (ref.any_state and state.is_final):
            return None
        if state.is_final:
            return "dependency '%s' %s" % (ref, state.name)
        entry.pending += 1
        if key is None:
            self._on_job.setdefault(pred.name, []).append((entry, ref.any_state))
        else:
            self._on_iteration.setdefault(key, []).append((entry, ref.any_state))
            self._iteration_keys.setdefault(pred.name, set()).add(key[1])
        return None

    def _replay_finished(self, entry: JobEntry, lookup_job, decisions: Decisions) -> None:
        """Per-iteration predecessors may have finished iterations already: count them now."""
        own = entry.job.spec.iteration
        for ref in entry.job.spec.after:
            if not ref.per_iteration:
                continue
            pred = lookup_job(ref.job)
            if pred.state.is_final and pred.finished < pred.total:
                decisions.omit_jobs.append(
                    (entry, "dependency '%s' %s" % (pred.name, pred.state.name)))
                return
            if pred.finished == 0:
                continue
            offset = own.start - pred.spec.iteration.start
            for position in range(entry.total):
                state = pred.iteration_state(position + offset)
                if state.is_final:
                    self._iteration_done(entry, position, "%s:%d" % (pred.name, own.start + position),
                                         state, decisions, ref.any_state)

    def _iteration_done(self, entry: JobEntry, position: int, unit: str, state: JobState,
                        decisions: Decisions, any_state: bool = False) -> None:
        if position in entry.omitted:
            return
        if state is JobState.SUCCEED or any_state:
            left = entry.remaining.get(position, entry.per_iteration) - 1
            if left == 0:
                entry.remaining.pop(position, None)
                entry.mark_ready(position)
                if not entry.pending and (not decisions.ready or decisions.ready[-1] is not entry):
                    decisions.ready.append(entry)  # it may have left the queue meanwhile
            else:
                entry.remaining[position] = left
        else:
            entry.remaining.pop(position, None)
            entry.omitted.add(position)
            decisions.omit_iterations.append(
                (entry, position, "dependency '%s' %s" % (unit, state.name)))

    def waits_on_iteration(self, name: str, index: int) -> bool:
        """Whether a dependant waits on iteration ``name:index`` (an ``after`` on it or a
        per-iteration dependency on ``name``): if not, its end decides nothing."""
        return (name, index) in self._on_iteration or name in self._per_iteration

    def finished(self, job, position: Optional[int], state: JobState) -> Decisions:
        """A job (``position`` None) or an iteration reached ``state`` (final)."""
        decisions = Decisions()
        if position is None:
            waiters = self._on_job.pop(job.name, ())
            unit = job.name
            for index in self._iteration_keys.pop(job.name, ()):
                # ``a:3`` waiters whose iteration will never end on its own (the whole job
                # was omitted or canceled before it ran); finished ones were popped already
                for entry, any_state in self._on_iteration.pop((job.name, index), ()):
                    self._release(entry, any_state, "%s:%d" % (job.name, index), state,
                                  decisions)
            per_iteration = self._per_iteration.pop(job.name, ())
            if job.iterative and job.finished < job.total:
                # the whole predecessor ended while some of its iterations never will (a
                # resumed final state): no remaining iteration of a per-iteration dependant
                # can ever run. A cancel or omission ends every iteration first, and each
                # one has already been passed on to the matching dependant iteration.
                for entry, _ in per_iteration:
                    decisions.omit_jobs.append(
                        (entry, "dependency '%s' %s" % (job.name, state.name)))
        else:
            index = job.spec.iteration.start + position
            unit = "%s:%d" % (job.name, index)
            waiters = self._on_iteration.pop((job.name, index), ())
            for entry, any_state in self._per_iteration.get(job.name, ()):
                own = entry.job.spec.iteration
                if own.start <= index < own.stop:
                    self._iteration_done(entry, index - own.start, unit, state, decisions,
                                         any_state)
        for entry, any_state in waiters:
            self._release(entry, any_state, unit, state, decisions)
        return decisions

    @staticmethod
    def _release(entry: JobEntry, any_state: bool, unit: str, state: JobState,
                 decisions: Decisions) -> None:
        """One job-level edge of ``entry`` saw ``unit`` end in ``state``."""
        if state is JobState.SUCCEED or any_state:
            entry.pending -= 1
            if entry.pending == 0:
                decisions.ready.append(entry)
        else:
            decisions.omit_jobs.append((entry, "dependency '%s' %s" % (unit, state.name)))

    def forget(self, entry: JobEntry) -> None:
        """Drop a dependant that ended (e.g. omitted) from the per-iteration lists."""
        for waiters in self._per_iteration.values():
            waiters[:] = [waiter for waiter in waiters if waiter[0] is not entry]
