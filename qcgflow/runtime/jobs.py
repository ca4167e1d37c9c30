"""Job states, the transition table and the typed records of a job description.

One lifecycle for jobs and iterations alike::

    QUEUED --> SCHEDULED --> EXECUTING --> SUCCEED
      |            |             |-------> FAILED
      |            |             '-------> CANCELED
      |            '--> FAILED | CANCELED            (launch failed / canceled before start)
      '--> OMITTED | CANCELED | FAILED               (dependency failed / canceled / all
                                                      iterations of a parent omitted)

A parent of an iterative job follows the same table: it becomes SCHEDULED and EXECUTING
with its first iteration and ends SUCCEED only when every iteration succeeded.

Every edge of ``TRANSITIONS`` says which kind of move may take it (``Edge``): ``RUN``, the
service running the unit, or ``RESTORE``, a resumed service putting a QUEUED unit straight
into the final state an earlier run journaled (QUEUED -> SUCCEED | FAILED | CANCELED |
OMITTED). So QUEUED -> SUCCEED is legal for a restore and illegal for a run.

The records (``JobSpec`` and friends) are frozen: a job description is parsed once on
arrival (``protocol.parse_job``) and never changes afterwards.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Optional, Sequence, Tuple

from .resources import CountRange


class JobState(Enum):
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    EXECUTING = "EXECUTING"
    SUCCEED = "SUCCEED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    OMITTED = "OMITTED"

    # Members are singletons compared by identity: hash them by identity too, in C.
    # Enum's own __hash__ hashes the name in Python, and the per-iteration path looks
    # states up in sets and dicts some thirty times.
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED})

# The states as the wire spells them (jobStatus' "status", jobs.report's "state", the
# publisher's events), named once: programs outside the runtime import them from
# ``protocol`` (which re-exports them) instead of writing the strings.
QUEUED, SCHEDULED, EXECUTING, SUCCEED, FAILED, CANCELED, OMITTED = (s.value for s in JobState)
STATE_NAMES = tuple(state.value for state in JobState)  # in the order of the lifecycle
FINAL_STATE_NAMES = (SUCCEED, FAILED, CANCELED, OMITTED)


class Edge(Enum):
    """What moves a unit along an edge of ``TRANSITIONS``."""

    RUN = "run"          # the service schedules, starts, ends, cancels or omits it
    RESTORE = "restore"  # --resume: the final state an earlier run journaled, not run again

    __hash__ = object.__hash__  # identity hashing in C, as JobState's (hot path)


_RUN = frozenset({Edge.RUN})
_RESTORE = frozenset({Edge.RESTORE})
_BOTH = _RUN | _RESTORE

# THE transition table: start -> {finish: the kinds of move allowed along that edge}.
TRANSITIONS = {
    JobState.QUEUED: {JobState.SCHEDULED: _RUN, JobState.OMITTED: _BOTH,
                      JobState.CANCELED: _BOTH, JobState.FAILED: _BOTH,
                      JobState.SUCCEED: _RESTORE},
    JobState.SCHEDULED: {JobState.EXECUTING: _RUN, JobState.FAILED: _RUN,
                         JobState.CANCELED: _RUN},
    JobState.EXECUTING: {JobState.SUCCEED: _RUN, JobState.FAILED: _RUN,
                         JobState.CANCELED: _RUN},
    JobState.SUCCEED: {},
    JobState.FAILED: {},
    JobState.CANCELED: {},
    JobState.OMITTED: {},
}


def allowed(start: JobState, finish: JobState, edge: Edge = Edge.RUN) -> bool:
    """Whether ``edge`` may move a unit from ``start`` to ``finish``."""
    return edge in TRANSITIONS[start].get(finish, ())


# Compact per-iteration state codes (a bytearray per iterative job keeps a million
# iterations in a megabyte).
STATE_CODES = {state: code for code, state in enumerate(JobState)}
CODE_STATES = list(JobState)


class IllegalTransition(RuntimeError):
    """A state change that the transition table forbids: a bug, never user input.

    Carries what a post-mortem needs (as distributed's ``InvalidTransition``): ``unit``
    (``name`` or ``name:index``), ``start`` and ``finish`` (JobStates), ``edge`` (the kind
    of move tried) and ``history`` (the unit's ``(JobState, time)`` pairs until then).
    Its text names all of them; it pickles with its fields.
    """

    def __init__(self, unit: str, start: "JobState", finish: "JobState",
                 history: Sequence[Tuple["JobState", float]] = (), edge: "Edge" = None):
        self.unit = unit
        self.start = start
        self.finish = finish
        self.history = tuple(history)
        self.edge = edge if edge is not None else Edge.RUN
        super().__init__(unit, start, finish, self.history, self.edge)

    def __str__(self) -> str:
        story = ", ".join("%s at %.3f" % (state.name, when) for state, when in self.history)
        return "%s: %s -> %s is not a %s edge of the transition table (history: %s)" % (
            self.unit, self.start.name, self.finish.name, self.edge.value, story or "none")

    def __reduce__(self):
        return type(self), (self.unit, self.start, self.finish, self.history, self.edge)


@dataclass(frozen=True)
class IterationSpec:
    """``iteration``: indices ``start .. stop-1``, or one per element of ``values``."""

    start: int
    stop: int
    values: Optional[Tuple[str, ...]] = None

    @property
    def count(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ExecutionSpec:
    """``execution``: what to run and how. Exactly one of ``exec`` and ``script`` is set."""

    exec: Optional[str] = None
    args: Tuple[str, ...] = ()
    script: Optional[str] = None
    env: Mapping[str, str] = field(default_factory=dict)
    wd: Optional[str] = None
    stdin: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    modules: Tuple[str, ...] = ()
    venv: Optional[str] = None
    model: str = "default"
    model_opts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerSpec:
    """An iteration resource scheduler (``maximum-iters``, ``split-into``) and its params."""

    name: str
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourcesSpec:
    """``resources``: cores (on any nodes, or per node when ``nodes`` is set), nodes, wt,
    and ``gpus``: GPUs on every node of the allocation (``nodeCrs: {"gpu": n}``, 0 = none)."""

    cores: Optional[CountRange] = None
    nodes: Optional[CountRange] = None
    cores_scheduler: Optional[SchedulerSpec] = None
    nodes_scheduler: Optional[SchedulerSpec] = None
    wt: Optional[float] = None  # seconds
    # why no allocation can ever be made (upstream's InvalidResourceSpec, e.g. a range with
    # min but no max and no iteration scheduler): accepted, as upstream, but every unit of
    # the job ends FAILED with this message when it would be started
    unschedulable: Optional[str] = None
    gpus: int = 0


@dataclass(frozen=True)
class DependencyRef:
    """One entry of ``dependencies.after`` (or of qcgflow's ``dependencies.afterAny``).

    ``a`` -> the whole job a; ``a:3`` -> iteration 3 of a; ``a:${it}`` -> the iteration of a
    with the same index as the dependant's own iteration (``per_iteration``).
    ``any_state`` (an ``afterAny`` entry, Slurm's ``afterany``): the edge is released when
    the predecessor ends in ANY final state, not only SUCCEED.
    """

    job: str
    iteration: Optional[int] = None
    per_iteration: bool = False
    any_state: bool = False

    def __str__(self) -> str:
        if self.per_iteration:
            return "%s:${it}" % self.job
        if self.iteration is not None:
            return "%s:%d" % (self.job, self.iteration)
        return self.job


@dataclass(frozen=True)
class JobSpec:
    """A parsed, validated job description (submit-stage variables already substituted)."""

    name: str
    execution: ExecutionSpec
    resources: ResourcesSpec
    iteration: Optional[IterationSpec] = None
    after: Tuple[DependencyRef, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict)
    description: Mapping[str, object] = field(default_factory=dict)  # as submitted, substituted

    @property
    def iterative(self) -> bool:
        return self.iteration is not None
