"""The events a session's tracker handles and the instructions it returns
(``qcgflow.session.tracker``): frozen records, no behaviour.

Events say what happened (a job ended, the service refused jobs, a cancel was asked for);
instructions say what the driver must do (send a job, resolve or fail a future, cancel
jobs in the service). ``Facts`` carry what the driver found out for an ``Inquiry`` before
it fed a ``JobEnded``: the tracker itself never asks the service or reads a file.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from qcgflow.errors import TaskFailed
from qcgflow.graph.graph import TaskNode

Task = Any  # a qcgflow.session.tracker.Task (not imported: the tracker imports this module)


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Loaded:
    """A result file read by the driver: its value, or why it could not be read."""
    value: Any = None
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Added:
    """New tasks (predecessors first); ``reused``: those whose results an earlier run left
    (session.cache), as loaded."""
    tasks: Tuple[Task, ...]
    reused: Mapping[Task, Loaded] = field(default_factory=dict)


@dataclass(frozen=True)
class Put:
    task: Task
    value: Any


@dataclass(frozen=True)
class Adopted:
    """A ref that travelled here: its job is with the service (``loaded``: a put value)."""
    task: Task
    loaded: Optional[Loaded] = None


@dataclass(frozen=True)
class Facts:
    """What the driver found out for ``inquiry``: the loaded result, the job's own failure
    (a Python task's error result, else the runtime's reason), the runtime's messages, the
    states of a mapped task's iterations and their own failures."""
    loaded: Optional[Loaded] = None
    own: Optional[TaskFailed] = None
    messages: str = ""
    states: Mapping[int, str] = field(default_factory=dict)
    own_iterations: Mapping[int, TaskFailed] = field(default_factory=dict)


@dataclass(frozen=True)
class JobEnded:
    job: str
    state: str  # SUCCEED, FAILED, CANCELED or OMITTED
    facts: Facts = Facts()


@dataclass(frozen=True)
class PartWritten:
    """The file of a num_returns part is written (``error``: it could not be)."""
    task: Task
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Refused:
    """The service refused these jobs (``answered``), or a request got no answer."""
    jobs: Tuple[str, ...]
    reason: str
    answered: bool = True


@dataclass(frozen=True)
class Withdrawn:
    """A job left unsent: a job it runs after was refused."""
    job: str


@dataclass(frozen=True)
class Cancel:
    """``qcgflow.cancel`` (``iterations``: only those) or ``future.cancel()``
    (``only_queued``); ``unsent``: the jobs still in the driver's outbox."""
    node: TaskNode
    iterations: Optional[Tuple[int, ...]] = None
    only_queued: bool = False
    unsent: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class CancelSent:
    """The service is asked to cancel the task's jobs (``only_queued``: by
    ``future.cancel()``, whose future ends cancelled)."""
    task: Task
    only_queued: bool = False


@dataclass(frozen=True)
class ServiceDied:
    reason: str


@dataclass(frozen=True)
class HandlingFailed:
    """The driver could not handle the end of ``job`` (a bug or a broken file)."""
    job: str
    error: BaseException


@dataclass(frozen=True)
class Shutdown:
    pass


# --------------------------------------------------------------------------- instructions
@dataclass(frozen=True)
class Submit:
    """Send ``job`` (after removing the outputs an earlier run left)."""
    task: Task
    job: Dict[str, Any]


@dataclass(frozen=True)
class Retry:
    """Send ``job``, attempt ``attempt`` of the task (or of iteration ``it``), after
    removing the error result of the last attempt."""
    task: Task
    job: Dict[str, Any]
    it: Optional[int]
    attempt: int


@dataclass(frozen=True)
class Unqueue:
    """Take these jobs out of the outbox: they are never sent."""
    jobs: Tuple[str, ...]


@dataclass(frozen=True)
class WritePart:
    """Write ``value`` as the result file of a num_returns part, then feed PartWritten."""
    task: Task
    value: Any


@dataclass(frozen=True)
class Record:
    """The task succeeded: the result cache (session.cache) records it, if there is one."""
    task: Task


@dataclass(frozen=True)
class Resolve:
    future: Any
    value: Any


@dataclass(frozen=True)
class Fail:
    """Set ``error`` on the future unless it is done (``mark_cancelled``: mark it
    cancelled first, ``future.cancel()``'s contract)."""
    future: Any
    error: BaseException
    mark_cancelled: bool = False


@dataclass(frozen=True)
class CancelJobs:
    """Ask the service to cancel ``jobs`` (``only_queued``: only if all are QUEUED), then
    feed CancelSent."""
    task: Task
    jobs: Tuple[str, ...]
    only_queued: bool


@dataclass(frozen=True)
class Inquiry:
    """What to find out before feeding ``JobEnded``: first the final states of the
    predecessors' jobs ``recheck`` (their events may have been lost), then the result
    (``load``), the own failure of the job (of iteration ``it`` for a retry job), the
    runtime's ``messages``, the ``states`` of the iterations, their ``own_iterations``."""
    task: Task
    it: Optional[int]
    recheck: Tuple[str, ...] = ()
    load: bool = False
    own: bool = False
    messages: bool = False
    states: bool = False
    own_iterations: bool = False
