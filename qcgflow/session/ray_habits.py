"""What a Ray user expects of a session (issue 22), as a part of ``Session``: ``put``,
refs that travel (``adopt``), ``cancel`` and ``future.cancel()``, ``init(env=...)``; and the
future of a task. Their decisions are the tracker's (``qcgflow.session.tracker``: the
``retry_exceptions`` filter, ``num_returns`` parts, what a cancel does); this part of the
driver carries them out. Only ``qcgflow.session.driver`` uses this module.
"""

import concurrent.futures as cf
import logging
import os
from typing import Any, Dict, Optional, Tuple

from qcgflow.build import payload
from qcgflow.errors import RunError
from qcgflow.graph.graph import PYTHON, TaskNode, TaskRef
from qcgflow.runtime.protocol import QUEUED
from qcgflow.session.events import Adopted, CancelJobs, CancelSent, Cancel, Put

_log = logging.getLogger("qcgflow.session.driver")

SESSION_ENV_NAMES = "QCGFLOW_SESSION_ENV"  # the names of init(env=...)'s variables


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
    """Methods of ``Session`` (which holds ``lock``, ``tracker``, ``outbox``, ``turns``,
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
        with self.lock:
            self.tracker.env = dict(env)
            if env:
                self.tracker.env[SESSION_ENV_NAMES] = ",".join(sorted(env))

    def put(self, value: Any) -> TaskRef:
        """Store ``value`` once in the run directory (``.qcgflow/put-<n>/result.pkl``, a
        result file) and return a ref to it: every task given the ref loads that one file,
        and ``get`` returns ``value``. No job is submitted."""
        node = TaskNode(PYTHON, base="put", options={}, fn=None)
        with self.lock:
            if self.closed:
                raise RunError("the session is shut down: call qcgflow.init() again")
            name = self._name(node)
        os.makedirs(os.path.join(self.base, name), exist_ok=True)
        payload.write_value(os.path.join(self.base, payload.result_file(name)), value)
        self._feed(Put(self._new_task(node, name, []), value))
        return TaskRef(node)

    def adopt(self, name: str, iterations: Optional[int], stored: bool,
              root: str, watch: Optional[str] = None) -> TaskRef:
        """A ref that travelled here (in a result or a stored value) for the job ``name``
        of this service: tracked from now on like one of ours (the consumer thread asks
        for its state at once: it may have ended already). The same name gives the same
        node."""
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
            task = self._new_task(node, name, [])
            self.taken.add(name)
            self.adopted[name] = node
            # a put value: its result file, no job
            later = self._handle(Adopted(task, self._load(task) if stored else None))
            if not stored:
                if watch is not None:  # a call in a bundle (bundles.py): its bundle's end
                    self.bundler.watch(watch, name)
                self.checks.append(watch or name)
        self._apply(later)
        if not stored:
            self.stream.wakeup()
        return TaskRef(node)

    def travelling(self, task) -> Tuple[bool, Optional[str]]:
        """A ref of ``task`` is pickled here (``TaskRef.__reduce__``): ``(ended, bundle)``
        (``bundles.Bundler.travelling``)."""
        with self.lock:
            return self.bundler.travelling(task.name)

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
            unsent = frozenset(item.job["name"] for item in self.outbox) | \
                self.bundler.parked_names
            later = self._handle(Cancel(node, None if iterations is None else
                                        tuple(iterations), only_queued, unsent))
        asks = [i for i in later if type(i) is CancelJobs]
        self._apply([i for i in later if type(i) is not CancelJobs])
        if not asks:
            return bool(later)  # canceled here (never sent), or nothing to cancel
        names = list(asks[0].jobs)
        with self.lock:
            bundled = [name for name in names if name in self.bundler.home]
        if bundled:  # calls in a bundle in flight (qcgflow/session/bundles.py)
            if only_queued:
                return False  # a bundled call counts as started: its bundle was sent
            self._feed(CancelSent(task, only_queued))
            with self.lock:
                homes = {self.bundler.home[name] for name in bundled
                         if name in self.bundler.home}
                whole = [home.name for home in homes
                         if all(item.task.cancel_requested for item in home.items)]
            names = [name for name in names if name not in bundled] + whole
            if not names:
                return True  # it fails with TaskCancelled when its bundle ends
        if only_queued:
            reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
            found = reply.get("jobs") or {}
            if any(((found.get(name) or {}).get("data") or {}).get("status") != QUEUED
                   for name in names):
                return False
        self._feed(CancelSent(task, only_queued))
        try:
            with self.turns.turn(self.turns.take()):  # after a batch that holds these jobs
                self.client.request({"request": "cancelJob", "jobNames": names,
                                     "force": bool(force)})
        except self.client_errors as exc:
            _log.warning("cancel of %s: %s", task.name, exc)
            return False
        if only_queued:
            task.future.mark_cancelled()
        return True
