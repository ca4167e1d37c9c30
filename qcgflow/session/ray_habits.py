"""What a Ray user expects of a session (issue 22), as a part of ``Session``: ``put``,
refs that travel (``adopt``), ``cancel`` and ``future.cancel()``, ``num_returns`` parts
(``_split``), the ``retry_exceptions`` filter, ``init(env=...)``; and the per-node record
``_Task`` with its future. Only ``qcgflow.session.driver`` uses this module.
"""

import concurrent.futures as cf
import logging
import os
from typing import Any, Dict, List, Optional

from qcgflow.build import payload
from qcgflow.errors import RunError, TaskCancelled, TaskError, TaskFailed
from qcgflow.graph.graph import COMMAND, PYTHON, TaskNode, TaskRef, any_outcome_preds
from qcgflow.graph.task import take_part

_log = logging.getLogger("qcgflow.session.driver")

HELD, SUBMITTED, DONE = "held", "submitted", "done"
SESSION_ENV_NAMES = "QCGFLOW_SESSION_ENV"  # the names of init(env=...)'s variables


class _Task:
    """A node in a session: its state, retries and future."""

    def __init__(self, node: TaskNode, name: str, preds: List[TaskNode]):
        self.node, self.name, self.preds = node, name, preds
        # predecessors given as qcgflow.any_outcome(ref): their failure is an input, not ours
        self.loose = any_outcome_preds(node) if preds else set()
        self.dependants: List["_Task"] = []
        self.state = HELD
        self.job: Optional[Dict[str, Any]] = None
        self.retries = int(node.options.get("retries") or 0)
        self.attempts: Dict[Any, int] = {}  # None or iteration -> retries used
        self.open_iterations: set = set()  # iterations being retried
        self.skip: set = set()  # iterations reused from an earlier run (qcgflow.session.cache)
        self.iteration_error: Optional[TaskError] = None
        self.error: Optional[TaskError] = None
        self.cancel_requested = False  # qcgflow.cancel: its end is a TaskCancelled
        self.future: cf.Future = _Future()
        self.future.set_running_or_notify_cancel()


class _Future(cf.Future):
    """A task's future: ``cancel()`` cancels the task while it has not started (queued in
    the service, or not sent yet) and then returns True, as a ``concurrent.futures``
    future does for work not begun; a started task is not touched (False: use
    ``qcgflow.cancel``)."""

    session: Optional["Session"] = None
    node: Optional[TaskNode] = None

    def cancel(self) -> bool:
        if self.session is None or self.done():
            return False
        return self.session.cancel(self.node, only_queued=True)

    def mark_cancelled(self) -> bool:
        """RUNNING -> CANCELLED, waking ``result()``, ``concurrent.futures.wait`` and the
        callbacks as ``Future.cancel`` would (ours is RUNNING from the start)."""
        with self._condition:
            if self._state != cf._base.RUNNING:
                return False
            self._state = cf._base.CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()
        return True


class RayHabits:
    """Methods of ``Session`` (which holds ``lock``, ``tasks``, ``jobs``, ``outbox``,
    ``client``, ``base``, ``root`` and the event handling they rely on)."""

    def set_env(self, env: Optional[Dict[str, str]]) -> None:
        """Environment variables for every task submitted from now on (a task's own
        ``env`` option wins).

        Raises:
            TypeError: not a dict of strings to strings.
        """
        if env is None:
            env = {}
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and k and "=" not in k and isinstance(v, str)
                for k, v in env.items()):
            raise TypeError("env must be a dict of variable names to strings, e.g. "
                            "env={'OMP_NUM_THREADS': '1'}; got %r" % (env,))
        self.env = dict(env)
        if self.env:
            self.env[SESSION_ENV_NAMES] = ",".join(sorted(env))

    def put(self, value: Any) -> TaskRef:
        """Store ``value`` once in the run directory (``.qcgflow/put-<n>/result.pkl``, a
        result file) and return a ref to it: every task given the ref loads that one file,
        and ``get`` returns ``value``. No job is submitted."""
        node = TaskNode(PYTHON, base="put", options={}, fn=None)
        with self.lock:
            if self.closed:
                raise RunError("the session is shut down: call qcgflow.init() again")
            name = self._name(node)
            directory = os.path.join(self.base, name)
            os.makedirs(directory, exist_ok=True)
            payload.write_value(os.path.join(self.base, payload.result_file(name)), value)
            task = self.tasks[node] = _Task(node, name, [])
            node.future = task.future
            task.future.session, task.future.node = self, node
            task.state = DONE
            task.future.set_result(value)
        return TaskRef(node)

    def adopt(self, name: str, iterations: Optional[int], stored: bool,
              root: str) -> TaskRef:
        """A ref that travelled here (in a result or a stored value) for the job ``name``
        of this service: tracked from now on like one of ours (its state asked for at
        once: it may have ended already). The same name gives the same node."""
        if os.path.realpath(root) != os.path.realpath(self.root):
            raise RunError("a ref of job %r of the run in %s reached a session of %s: refs "
                           "travel only within one run" % (name, root, self.root))
        with self.lock:
            node = self.adopted.get(name)
            if node is None:
                node = next((n for n, t in self.tasks.items() if t.name == name), None)
            if node is not None:
                self.adopted[name] = node
                return TaskRef(node)
            mapped = None if iterations is None else ("values", range(iterations))
            node = TaskNode(PYTHON, base=name, options={}, fn=None, mapped=mapped)
            task = self.tasks[node] = _Task(node, name, [])
            self.taken.add(name)
            self.adopted[name] = node
            node.future = task.future
            task.future.session, task.future.node = self, node
            if stored:  # a put value: a result file, no job
                self._reused(task)
            else:
                task.state = SUBMITTED
                self.jobs[name] = (task, None)
                self._recheck([name])
            return TaskRef(node)

    def _split(self, task: _Task) -> None:
        """A ``num_returns`` ref: item i of its task's result, written as its own result
        file (what its dependants' calls read), without a job."""
        source, index, count = task.node.args
        try:
            value = take_part(self.tasks[source.node].future.result(0), index, count)
            directory = os.path.join(self.base, task.name)
            os.makedirs(directory, exist_ok=True)
            payload.write_value(os.path.join(self.base, payload.result_file(task.name)),
                                value)
        except Exception as exc:  # noqa: BLE001 - a wrong count fails the refs
            return self._fail(task, TaskFailed(task.name, exc))
        self._done(task, value)

    # ------------------------------------------------------------------ cancel
    def cancel(self, node: TaskNode, force: bool = False, iterations=None,
               only_queued: bool = False) -> bool:
        """Cancel a task (or some iterations of a mapped one): not sent yet or held here,
        it fails at once with ``TaskCancelled``; queued in the service, it is canceled
        there; running, it gets SIGTERM (``force``: SIGKILL) and fails with
        ``TaskCancelled`` when it ended. Dependants fail with ``DependencyFailed``.
        ``only_queued`` (``future.cancel()``): only a task that has not started, and its
        future is then cancelled. False when there was nothing to cancel."""
        if iterations is not None and self.outbox:
            self._flush()  # the service must know the job to cancel some iterations
        with self.lock:
            task = self.tasks.get(node)
            if task is None or task.future.done():
                return False
            if task.state == SUBMITTED and iterations is None:
                waiting = [job for job in self.outbox if self.jobs.get(job["name"], (None,))[0]
                           is task]
                if waiting:  # not sent yet: never will be
                    self.outbox = [job for job in self.outbox if job not in waiting]
                    for job in waiting:
                        self.jobs.pop(job["name"], None)
                    task.state = HELD
            if task.state == HELD:
                if only_queued:
                    task.future.mark_cancelled()
                self._fail(task, TaskCancelled(task.name))
                return True
            if task.state != SUBMITTED:
                return False
            names = [name for name, (owner, it) in self.jobs.items() if owner is task
                     and (iterations is None or it in iterations)]
            if iterations is not None:
                names += ["%s:%d" % (task.name, it) for it in iterations
                          if task.node.iterations is not None
                          and 0 <= it < task.node.iterations]
            if not names:
                return False
            if only_queued:
                reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
                found = reply.get("jobs") or {}
                if any(((found.get(name) or {}).get("data") or {}).get("status") != "QUEUED"
                       for name in names):
                    return False
            task.cancel_requested = True
            try:
                with self.sending:  # after a batch in flight that holds these jobs
                    self.client.request({"request": "cancelJob", "jobNames": names,
                                         "force": bool(force)})
            except self.client_errors as exc:
                _log.warning("cancel of %s: %s", task.name, exc)
                return False
            if only_queued:
                task.future.mark_cancelled()
            return True

    def _cancelled_error(self, task: _Task, job: str) -> TaskCancelled:
        """The TaskCancelled of a task that ended after a cancel (a mapped one: the first
        iteration canceled)."""
        if task.node.iterations is not None and job == task.name:
            for it, state in sorted(self._iteration_states(task).items()):
                if state == "CANCELED":
                    return TaskCancelled("%s:%d" % (task.name, it))
        return TaskCancelled(task.name)

    def _retryable(self, task: _Task, job: str, it) -> bool:
        """Whether the ``retry_exceptions`` filter lets this failure be retried: a task
        that did not raise (killed, crashed, out of wall time, a command's exit code) is
        always retried, as Ray retries system failures; one that raised, when the filter
        is True or names a class of its exception."""
        allowed = task.node.options.get("retry_exceptions", True)
        if allowed is True:
            return True
        if task.node.kind == COMMAND:
            return True
        own = self._own_failure(task, job, it)
        if not own.cause_type:
            return True
        if allowed is False:
            return False
        if own.cause is not None:
            return isinstance(own.cause, allowed)
        return own.cause_type in {cls.__qualname__ for cls in allowed}
