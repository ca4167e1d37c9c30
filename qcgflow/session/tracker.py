"""The life of a graph node in a session: one enum, one transition table, ``handle``.

PURE: no threads, locks, sockets, clock or requests. The driver (``session/driver.py``)
feeds it events (what happened) and carries out the instructions it returns (what to do),
as dask distributed's ``WorkerState.handle_stimulus``. What a decision needs to know
from the service or the disk (a result, a reason, the states of iterations) the driver
finds out BEFORE the event, as ``inquiry(job, state)`` asks, and brings it as ``Facts``::

    HELD ──> SUBMITTED ──> DONE            (its result loaded: Resolve)
      │          │   └───> RETRYING ─┬──> DONE
      │          │                   ├──> FAILED
      │          │                   └──> CANCELLED
      │          ├───────> FAILED      (own error, refused, a dependency, the service died)
      │          └───────> CANCELLED   (qcgflow.cancel / future.cancel)
      ├──> DONE        (reused from an earlier run, put, a num_returns part)
      ├──> FAILED      (a predecessor failed, shutdown)
      └──> CANCELLED   (canceled before it was sent)

HELD: waiting here for predecessors (one with retries must succeed first: its dependants
are sent with the result in place) or for its part to be written. SUBMITTED: its job is
sent, or in the driver's outbox. RETRYING: a failed attempt runs again, as ``<job>-retry<k>``
or one job per failed iteration ``<job>-<it>-retry<k>``. DONE, FAILED and CANCELLED are
final: the future holds the outcome, and dependants held here follow (a failure fails
them with ``DependencyFailed``, except ``any_outcome`` dependants, which then run).
"""

import copy
import enum
from typing import Any, Dict, List, Optional, Tuple

from qcgflow.build.compile import job_description
from qcgflow.errors import DependencyFailed, RunError, TaskCancelled, TaskError, TaskFailed
from qcgflow.graph.graph import COMMAND, TaskNode, any_outcome_preds
from qcgflow.graph.task import take_part
from qcgflow.runtime.protocol import CANCELED, FAILED, SUCCEED
from qcgflow.session.events import (Added, Adopted, Cancel, CancelJobs, CancelSent, Facts, Fail,
                                    HandlingFailed, Inquiry, JobEnded, Loaded, PartWritten,
                                    Put, Record, Refused, Resolve, Retry, ServiceDied,
                                    Shutdown, Submit, Unqueue, Withdrawn, WritePart)


class TaskState(enum.Enum):
    HELD = "held"
    SUBMITTED = "submitted"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


HELD, SUBMITTED, RETRYING = TaskState.HELD, TaskState.SUBMITTED, TaskState.RETRYING
DONE, FAILED_, CANCELLED = TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED
OPEN = frozenset({SUBMITTED, RETRYING})  # a job of the task is with the service
FINAL = frozenset({DONE, FAILED_, CANCELLED})

TRANSITIONS = {
    HELD: frozenset({SUBMITTED, DONE, FAILED_, CANCELLED}),
    SUBMITTED: frozenset({RETRYING, DONE, FAILED_, CANCELLED}),
    RETRYING: frozenset({DONE, FAILED_, CANCELLED}),
    DONE: frozenset(),
    FAILED_: frozenset(),
    CANCELLED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A move the transition table forbids (a bug, never user input): ``task`` is the job
    name, ``start`` and ``finish`` the states."""

    def __init__(self, task: str, start: TaskState, finish: TaskState):
        super().__init__("task %r: %s -> %s is not a transition of the session's table"
                         % (task, start.value, finish.value))
        self.task, self.start, self.finish = task, start, finish


class Task:
    """A node in a session: its state, retries and future (the future is the driver's:
    the tracker only names it in instructions)."""

    def __init__(self, node: TaskNode, name: str, preds: List[TaskNode], future: Any):
        self.node, self.name, self.preds, self.future = node, name, preds, future
        # predecessors given as qcgflow.any_outcome(ref): their failure is an input, not ours
        self.loose = any_outcome_preds(node) if preds else set()
        self.dependants: List["Task"] = []
        self.state = HELD
        self.job: Optional[Dict[str, Any]] = None
        self.retries = int(node.options.get("retries") or 0)
        self.attempts: Dict[Any, int] = {}  # None or iteration -> retries used
        self.open_iterations: set = set()  # iterations being retried
        self.skip: set = set()  # iterations reused from an earlier run (session.cache)
        self.iteration_error: Optional[TaskError] = None
        self.error: Optional[TaskError] = None
        self.value: Any = None  # the result, once DONE (a num_returns part splits it)
        self.cancel_requested = False  # qcgflow.cancel was sent: its end is a TaskCancelled
        self.mark_cancelled = False  # future.cancel() was sent: the future ends cancelled
        self.splitting = False  # a num_returns part whose file is being written

    def __repr__(self) -> str:
        return "<Task %s %s>" % (self.name, self.state.value)


class View:
    """What compile's functions read of a graph: names, edges, order."""

    def __init__(self, names, edges, order):
        self.names, self.edges, self.order = names, edges, order


def dependency_error(name: str, upstream: TaskError) -> DependencyFailed:
    """The error of ``name``, which did not run because of ``upstream``."""
    if isinstance(upstream, DependencyFailed):
        return DependencyFailed(name, upstream.root, upstream.root_error)
    return DependencyFailed(name, upstream.task.split(":")[0], upstream)


def substitute(obj, it: int, value) -> Any:
    """``obj`` (a job's execution part) with ``${it}`` / ``${itval}`` filled for one iteration."""
    if isinstance(obj, str):
        # the value literal through the runtime's two stages ($ as $$$$)
        return obj.replace("${itval}", str(value).replace("$", "$$$$")).replace("${it}", str(it))
    if isinstance(obj, list):
        return [substitute(item, it, value) for item in obj]
    if isinstance(obj, dict):
        return {key: substitute(item, it, value) for key, item in obj.items()}
    return obj


class Tracker:
    """The tasks of one session and their jobs; ``handle(event) -> instructions``.

    ``python`` is the interpreter Python tasks run with; ``env`` is added to every task's
    environment (``init(env=...)``; a task's own ``env`` option wins).
    """

    def __init__(self, python: str):
        self.python = python
        self.env: Dict[str, str] = {}
        self.tasks: Dict[TaskNode, Task] = {}
        self.jobs: Dict[str, Tuple[Task, Optional[int]]] = {}  # job awaited -> (task, it)
        self._out: List[Any] = []

    # ------------------------------------------------------------------ entry points
    def handle(self, event: Any) -> List[Any]:
        """The instructions that ``event`` calls for, in the order to carry them out.

        Raises:
            InvalidTransition: a move the table forbids (a bug).
            TypeError: not an event of this module.
        """
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is None:
            raise TypeError("not a session event: %r" % (event,))
        self._out = []
        handler(event)
        out, self._out = self._out, []
        return out

    def inquiry(self, job: str, state: str) -> Optional[Inquiry]:
        """What the driver must find out before feeding ``JobEnded(job, state)`` (None: the
        event changes nothing, e.g. a job not awaited)."""
        entry = self.jobs.get(job)
        if entry is None or entry[0].state not in OPEN:
            return None
        task, it = entry
        if it is not None:  # a retry of one iteration
            if state == SUCCEED:
                return Inquiry(task, it, load=not task.open_iterations - {it}
                               and task.iteration_error is None)
            sure = state == FAILED and task.attempts[it] < task.retries and \
                not self._filtered(task)
            return Inquiry(task, it, own=not sure)
        if state == SUCCEED:
            return Inquiry(task, None, load=True)
        mapped = task.node.mapped is not None
        if task.cancel_requested:
            return Inquiry(task, None, states=mapped and job == task.name)
        retrying = state == FAILED and task.retries > 0
        sure = retrying and not mapped and task.attempts.get(None, 0) < task.retries \
            and not self._filtered(task)  # retried whatever it raised
        return Inquiry(task, None, recheck=self._open_preds(task),
                       own=state in (FAILED, CANCELED) and not sure,
                       messages=state not in (FAILED, CANCELED)
                       and self._failed_predecessor(task) is None,
                       states=retrying and mapped,
                       own_iterations=retrying and mapped and self._filtered(task))

    def open_jobs(self) -> List[str]:
        """The jobs whose final state is awaited, in submission order."""
        return list(self.jobs)

    def after_refused(self, job: Dict[str, Any]) -> bool:
        """Whether ``job`` runs after a predecessor that failed (was refused) meanwhile."""
        entry = self.jobs.get(job["name"])
        if entry is None:
            return False
        after = {name.split(":")[0] for name in job.get("dependencies", {}).get("after", ())}
        return any(self.tasks[pred].name in after and self.tasks[pred].error is not None
                   for pred in entry[0].preds)

    # ------------------------------------------------------------------ events
    def _on_Added(self, event: Added) -> None:
        for task in event.tasks:
            self.tasks[task.node] = task
            for pred in task.preds:
                self.tasks[pred].dependants.append(task)
        for task, loaded in event.reused.items():
            self._loaded(task, loaded)
        for task in event.tasks:
            if task.state is HELD:
                self._advance(task)

    def _on_Put(self, event: Put) -> None:
        self.tasks[event.task.node] = event.task
        self._done(event.task, event.value)

    def _on_Adopted(self, event: Adopted) -> None:
        task = self.tasks[event.task.node] = event.task
        if event.loaded is not None:
            return self._loaded(task, event.loaded)
        self._move(task, SUBMITTED)
        self.jobs[task.name] = (task, None)

    def _on_JobEnded(self, event: JobEnded) -> None:
        entry = self.jobs.pop(event.job, None)
        if entry is None or entry[0].state not in OPEN:
            return
        task, it = entry
        state, facts = event.state, event.facts
        if it is not None:
            return self._iteration_ended(task, it, state, facts)
        if state == SUCCEED:
            return self._succeeded(task, facts.loaded)
        if task.cancel_requested:
            return self._fail(task, self._cancelled_error(task, event.job, facts))
        if state == FAILED and task.retries:
            if task.node.mapped is None:
                if task.attempts.get(None, 0) < task.retries and \
                        self._retryable(task, facts.own):
                    return self._retry(task)
            else:
                failed = [i for i, s in facts.states.items() if s == FAILED]
                if failed and all(s in (SUCCEED, FAILED) for s in facts.states.values()) \
                        and all(self._retryable(task, facts.own_iterations.get(i))
                                for i in failed):
                    task.open_iterations = set(failed)
                    for i in failed:
                        self._retry(task, i)
                    return
        upstream = self._failed_predecessor(task)
        if state in (FAILED, CANCELED):
            own = facts.own or TaskFailed(task.name, messages=facts.messages or "failed")
            if own.cause_type or upstream is None:
                return self._fail(task, own)
        if upstream is not None:
            return self._fail(task, dependency_error(task.name, upstream))
        self._fail(task, TaskFailed(task.name, messages=facts.messages or state.lower()))

    def _on_PartWritten(self, event: PartWritten) -> None:
        task = event.task
        if task.state is not HELD or not task.splitting:
            return
        task.splitting = False
        if event.error is not None:
            return self._fail(task, TaskFailed(task.name, event.error))
        self._done(task, task.value)

    def _on_Refused(self, event: Refused) -> None:
        for job in event.jobs:
            task, _ = self.jobs.pop(job, (None, None))
            if task is not None and task.state in OPEN:
                # task.error is a TaskFailed for the DependencyFailed chain; the future's
                # error: TaskFailed when the service refused, RunError when it did not answer
                error = TaskFailed(task.name, messages="%s%s" % (
                    "refused by the service: " if event.answered else "", event.reason))
                self._fail(task, error, None if event.answered else RunError(event.reason))

    def _on_Withdrawn(self, event: Withdrawn) -> None:
        entry = self.jobs.get(event.job)
        if entry is None or entry[0].state not in OPEN:
            return
        task = entry[0]
        for pred in (self.tasks[node] for node in task.preds):
            if pred.error is not None:
                del self.jobs[event.job]
                return self._fail(task, dependency_error(task.name, pred.error))

    def _on_Cancel(self, event: Cancel) -> None:
        task = self.tasks.get(event.node)
        if task is None or task.state in FINAL:
            return
        only = event.only_queued
        if task.state in OPEN and event.iterations is None:
            own = [name for name, (owner, _) in self.jobs.items() if owner is task]
            if own and all(name in event.unsent for name in own):  # never sent: never will be
                for name in own:
                    del self.jobs[name]
                self._out.append(Unqueue(tuple(own)))
                return self._fail(task, TaskCancelled(task.name), mark_cancelled=only)
        if task.state is HELD:
            return self._fail(task, TaskCancelled(task.name), mark_cancelled=only)
        wanted = event.iterations
        names = [name for name, (owner, it) in self.jobs.items() if owner is task
                 and (wanted is None or it in wanted) and name not in event.unsent]
        if wanted is not None and task.node.iterations is not None:
            names += ["%s:%d" % (task.name, it) for it in wanted
                      if 0 <= it < task.node.iterations]
        if names:
            self._out.append(CancelJobs(task, tuple(names), only))

    def _on_CancelSent(self, event: CancelSent) -> None:
        if event.task.state not in FINAL:
            event.task.cancel_requested = True
            event.task.mark_cancelled |= event.only_queued

    def _on_ServiceDied(self, event: ServiceDied) -> None:
        for task, _ in list(self.jobs.values()):
            if task.state in OPEN:
                self._fail(task, TaskFailed(task.name, messages=event.reason),
                           RunError(event.reason))
        self.jobs.clear()

    def _on_HandlingFailed(self, event: HandlingFailed) -> None:
        task, _ = self.jobs.pop(event.job, (None, None))
        if task is not None and task.state in OPEN:
            self._fail(task, TaskFailed(task.name, messages="qcgflow: %s" % event.error))

    def _on_Shutdown(self, event: Shutdown) -> None:
        for task in self.tasks.values():  # each fails alone: no DependencyFailed cascade
            if task.state not in FINAL:
                message = "the session was shut down before task %r finished" % task.name
                self._move(task, FAILED_)
                task.error = TaskFailed(task.name, messages=message)
                self._out.append(Fail(task.future, RunError(message)))
        self.jobs.clear()

    # ------------------------------------------------------------------ moves
    def _move(self, task: Task, finish: TaskState) -> None:
        """THE mutator of ``task.state``: a move the table lacks raises."""
        if finish not in TRANSITIONS[task.state]:
            raise InvalidTransition(task.name, task.state, finish)
        task.state = finish

    def _advance(self, task: Task) -> None:
        """Submit a held task whose predecessors allow it, or fail it when one failed."""
        if task.splitting:
            return
        part = task.node.fn is take_part
        waiting = False
        for pred in task.preds:
            other = self.tasks[pred]
            if other.error is not None and pred not in task.loose:
                return self._fail(task, other.error if part else
                                  dependency_error(task.name, other.error))
            if other.state is HELD or (other.state in OPEN and (other.retries or part)):
                waiting = True
        if waiting:
            return
        if part:  # num_returns: item i of a finished task's result, split here
            return self._split(task)
        running = {pred for pred in task.preds if self.tasks[pred].state in OPEN}
        edges = [(pred, element) for pred, element in
                 ((ref.node, element) for ref, element in task.node.dependencies())
                 if pred in running] if running else []  # no walk of the arguments
        names = {node: self.tasks[node].name for node in task.preds}
        names[task.node] = task.name
        task.job = job_description(View(names, {task.node: edges}, None), task.node,
                                   self.python)
        if self.env:  # init(env=...): every task's, its own env option wins
            execution = task.job["execution"]
            execution["env"] = dict(self.env, **execution.get("env", {}))
        self._move(task, SUBMITTED)
        self.jobs[task.name] = (task, None)
        self._out.append(Submit(task, task.job))

    def _split(self, task: Task) -> None:
        source, index, count = task.node.args
        try:
            task.value = take_part(self.tasks[source.node].value, index, count)
        except Exception as exc:  # noqa: BLE001 - a wrong count fails the refs
            return self._fail(task, TaskFailed(task.name, exc))
        task.splitting = True
        self._out.append(WritePart(task, task.value))

    def _loaded(self, task: Task, loaded: Loaded) -> None:
        """A result put in place without a job (reused, a put value): done, or failed."""
        if loaded.error is not None:
            return self._fail(task, TaskFailed(task.name, messages="cannot load: %s"
                                               % loaded.error))
        self._done(task, loaded.value)

    def _succeeded(self, task: Task, loaded: Optional[Loaded]) -> None:
        error = loaded.error if loaded is not None else RuntimeError("result not loaded")
        if error is None:
            self._out.append(Record(task))
            return self._done(task, loaded.value)
        if isinstance(error, FileNotFoundError) and task.node.kind != COMMAND \
                and task.node.mapped is None:
            # exit status 0 without a result (os._exit(0)): a lost process, as Ray's
            # worker crash, retried as one
            if task.attempts.get(None, 0) < task.retries:
                return self._retry(task)
            return self._fail(task, TaskFailed(task.name, messages=(
                "its process ended (exit status 0) without writing a result: "
                "os._exit() or a killed worker")))
        self._fail(task, TaskFailed(task.name, messages="cannot load the result: %s" % error))

    def _iteration_ended(self, task: Task, it: int, state: str, facts: Facts) -> None:
        if state != SUCCEED:
            if state == FAILED and task.attempts[it] < task.retries and \
                    self._retryable(task, facts.own):
                return self._retry(task, it)
            if task.iteration_error is None:
                task.iteration_error = facts.own or TaskFailed(
                    "%s:%s" % (task.name, it), messages=facts.messages or "failed")
        task.open_iterations.discard(it)
        if task.open_iterations:
            return
        if task.iteration_error is not None:
            return self._fail(task, task.iteration_error)
        self._succeeded(task, facts.loaded)

    def _done(self, task: Task, value: Any) -> None:
        self._move(task, DONE)
        task.value = value
        self._out.append(Resolve(task.future, value))
        for dependant in task.dependants:
            if dependant.state is HELD:
                self._advance(dependant)

    def _fail(self, task: Task, error: TaskError, raised: Optional[BaseException] = None,
              mark_cancelled: bool = False) -> None:
        self._move(task, CANCELLED if isinstance(error, TaskCancelled) else FAILED_)
        task.error = error
        self._out.append(Fail(task.future, raised or error.as_instanceof_cause(),
                              mark_cancelled or task.mark_cancelled))
        for dependant in task.dependants:
            if dependant.state is not HELD:
                continue
            if task.node in dependant.loose:  # any_outcome: it may run now
                self._advance(dependant)
            else:  # a num_returns ref fails as its task did
                self._fail(dependant, error if dependant.node.fn is take_part else
                           dependency_error(dependant.name, error))

    def _retry(self, task: Task, it: Optional[int] = None) -> None:
        """Run the task (or one iteration of it, as a plain job) again without
        dependencies: its predecessors have succeeded."""
        used = task.attempts[it] = task.attempts.get(it, 0) + 1
        job = copy.deepcopy(task.job)
        job.pop("dependencies", None)
        if it is None:
            job["name"] = "%s-retry%d" % (task.name, used)
        else:
            job["name"] = "%s-%d-retry%d" % (task.name, it, used)
            how, values = task.node.mapped
            value = values[it] if how == "values" else it
            job.pop("iteration")
            job["execution"] = substitute(job["execution"], it, value)
        if task.state is SUBMITTED:
            self._move(task, RETRYING)
        self.jobs[job["name"]] = (task, it)
        self._out.append(Retry(task, job, it, used))

    # ------------------------------------------------------------------ reading
    def _open_preds(self, task: Task) -> Tuple[str, ...]:
        """The jobs of (strict) predecessors still awaited: when a task did not succeed
        while one of them seems to run, that one's final event was lost."""
        names: List[str] = []
        for pred in (self.tasks[node] for node in task.preds if node not in task.loose):
            if pred.state is SUBMITTED and pred.name in self.jobs:
                names.append(pred.name)
            elif pred.state is RETRYING:
                names += [name for name, (owner, _) in self.jobs.items() if owner is pred]
        return tuple(names)

    def _failed_predecessor(self, task: Task) -> Optional[TaskError]:
        for pred in task.preds:
            if pred not in task.loose and self.tasks[pred].error is not None:
                return self.tasks[pred].error
        return None

    @staticmethod
    def _filtered(task: Task) -> bool:
        """Whether a retry depends on the exception raised (``retry_exceptions``)."""
        return task.node.options.get("retry_exceptions", True) is not True and \
            task.node.kind != COMMAND

    @staticmethod
    def _retryable(task: Task, own: Optional[TaskFailed]) -> bool:
        """Whether the ``retry_exceptions`` filter lets this failure be retried: a task
        that did not raise (killed, crashed, out of wall time, a command's exit code) is
        always retried, as Ray retries system failures; one that raised, when the filter
        is True or names a class of its exception."""
        allowed = task.node.options.get("retry_exceptions", True)
        if allowed is True or task.node.kind == COMMAND or own is None \
                or not own.cause_type:
            return True
        if allowed is False:
            return False
        if own.cause is not None:
            return isinstance(own.cause, allowed)
        return own.cause_type in {cls.__qualname__ for cls in allowed}

    @staticmethod
    def _cancelled_error(task: Task, job: str, facts: Facts) -> TaskCancelled:
        """The TaskCancelled of a task that ended after a cancel (a mapped one: the first
        iteration canceled)."""
        if task.node.iterations is not None and job == task.name:
            for it, state in sorted(facts.states.items()):
                if state == CANCELED:
                    return TaskCancelled("%s:%d" % (task.name, it))
        return TaskCancelled(task.name)
