"""Sessions: submit graph nodes to a service, track them, resolve their futures; ``run``.

::

    Session.start(wd, nodes) ── LocalService (qcgflow.session.localservice) + ServiceClient
    Session.attach()         ── the service of the task we run in (QCG_PM_ZMQ_ADDRESS,
                                QCGFLOW_RUN_DIR): tasks may submit tasks
    submit(target) ─ name new nodes ─ write their call files ─ ONE submit request
       │   (a node waits in the session, HELD, while a predecessor with retries has not
       │    succeeded yet; otherwise predecessors still running are runtime dependencies)
       ▼
    consumer thread: JFI events (a jobStatus re-check when quiet: events may be dropped)
       SUCCEED ─> load the result file ─> future.set_result; submit HELD dependants
       FAILED  ─> retries left? resubmit (``<job>-retry<k>``, or one job per failed
                  iteration ``<job>-<it>-retry<k>``) : future.set_exception(TaskFailed)
       OMITTED ─> DependencyFailed naming the failed root task

``qcgflow.run(target)`` (oneshot.py) is a session that submits the whole graph at
once and waits for the targets. The only graph-API module that talks to the runtime,
through ``runtime.client``.
"""

import concurrent.futures as cf
import copy
import logging
import os
import tempfile
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from qcgflow.build import outputs
from qcgflow.build import payload
from qcgflow.session import cache as _resume
from qcgflow.session import fastpath
from qcgflow.build.compile import command_output, fill_refs, job_description, write_calls
from qcgflow.errors import DependencyFailed, NameClashError, RunError, TaskError, TaskFailed
from qcgflow.graph.graph import COMMAND, TaskNode, TaskRef, target_refs
from qcgflow.session.ray_habits import DONE, HELD, SESSION_ENV_NAMES, SUBMITTED, RayHabits, _Task
from qcgflow.graph.task import take_part
from qcgflow.session.localservice import ADDRESS_ENV, RUN_DIR_ENV, LocalService
from qcgflow.runtime.client import (TOPIC_JOB_FINISHED, TOPIC_JOB_STATUS, ClientError, ServiceClient,
                             ServiceError)

_log = logging.getLogger(__name__)

RECHECK_AFTER = 1.0  # s without an event before the job states are asked for (lost events)
FINAL_STATES = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


class _View:
    """What compile's functions read of a graph: names, edges, order."""

    def __init__(self, names, edges, order):
        self.names, self.edges, self.order = names, edges, order


def _substitute(obj, it: int, value) -> Any:
    """``obj`` (a job's execution part) with ``${it}`` / ``${itval}`` filled for one iteration."""
    if isinstance(obj, str):
        # the value literal through the runtime's two stages ($ as $$$$)
        return obj.replace("${itval}", str(value).replace("$", "$$$$")).replace("${it}", str(it))
    if isinstance(obj, list):
        return [_substitute(item, it, value) for item in obj]
    if isinstance(obj, dict):
        return {key: _substitute(item, it, value) for key, item in obj.items()}
    return obj


class Session(RayHabits):
    """Submits nodes to one service and resolves one ``concurrent.futures.Future`` per node.

    Thread-safe: ``submit`` may be called from any thread (also from a future's callback).
    """

    client_errors = (ClientError,)  # what a request may raise (for RayHabits)

    def __init__(self, client: ServiceClient, root: str, service: Optional[LocalService] = None,
                 pub_address: Optional[str] = None, prefix: str = "",
                 on_executing: Optional[Callable[[str], None]] = None):
        self.client, self.root, self.service, self.prefix = client, root, service, prefix
        self.on_executing = on_executing  # called (consumer thread) with a started job's name
        self.base = os.path.join(root, payload.RUN_DIR)
        self.tasks: Dict[TaskNode, _Task] = {}
        self.jobs: Dict[str, Any] = {}  # submitted job name -> (task, iteration or None)
        self.taken: set = set()
        self.counters: Dict[str, int] = {}
        self.lock = threading.RLock()
        self.sending = threading.Lock()  # submit requests in order (taken after ``lock``)
        self.outbox: List[Dict[str, Any]] = []  # jobs for the consumer thread to submit
        self.closed = False
        self.memo: Optional[_resume.Memo] = None  # set by run(): records and reuses results
        self.adopted: Dict[str, TaskNode] = {}  # job name -> node of a ref that travelled
        self.env: Dict[str, str] = {}  # init(env=...): added to every task's environment
        self.fast = fastpath.FastPath(self.base, use_store=service is not None)  # issue 19
        topics = (TOPIC_JOB_FINISHED,) + ((TOPIC_JOB_STATUS,) if on_executing else ())
        self.stream = client.subscribe(topics, address=pub_address)
        self.thread = threading.Thread(target=self._consume, name="qcgflow-session",
                                       daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ lifetime
    @classmethod
    def start(cls, wd: Optional[str] = None, nodes: Optional[Any] = None,
              service_args: Sequence[str] = (),
              on_executing: Optional[Callable[[str], None]] = None,
              start_timeout: Optional[float] = None,
              zygote_template: bool = False) -> "Session":
        """A session on a new local service working in ``wd`` (default: a new temp dir);
        ``service_args``: more ``qcgflow service`` options; ``on_executing(job)`` is called
        when a job starts executing (from the publisher's events, which may be dropped);
        ``start_timeout``: seconds for the service to start (default: localservice's);
        ``zygote_template``: see ``LocalService.start`` (Python tasks start with this
        process's imports)."""
        root = os.path.abspath(wd) if wd else tempfile.mkdtemp(prefix="qcgflow-run-")
        os.makedirs(root, exist_ok=True)
        service = LocalService.start(root, nodes, extra_args=service_args,
                                     zygote_template=zygote_template,
                                     **({} if start_timeout is None
                                        else {"timeout": start_timeout}))
        client = None
        try:
            client = ServiceClient(service.ready["address"], liveness=service.liveness,
                                   keys_dir=service.ready.get("keys_dir"))
            return cls(client, root, service, service.ready["pub_address"],
                       on_executing=on_executing)
        except BaseException:
            service.stop(client)
            if client is not None:
                client.close()
            raise

    @classmethod
    def attach(cls) -> Optional["Session"]:
        """A session on the service this process runs under as a task (None elsewhere)."""
        address, root = os.environ.get(ADDRESS_ENV), os.environ.get(RUN_DIR_ENV)
        if not address or not root:
            return None
        client = ServiceClient(address)
        try:
            session = cls(client, root, prefix="t%d." % os.getpid())
            # the session's env (init(env=...)) reaches tasks that tasks submit too
            names = [n for n in os.environ.get(SESSION_ENV_NAMES, "").split(",") if n]
            session.set_env({n: os.environ[n] for n in names if n in os.environ})
            return session
        except BaseException:
            client.close()
            raise

    def shutdown(self) -> None:
        """Stop tracking; unfinished futures fail with RunError; a service we started stops."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.stream.wakeup()
        self.thread.join(10.0)
        with self.lock:
            for task in self.tasks.values():
                if not task.future.done():
                    task.future.set_exception(RunError(
                        "the session was shut down before task %r finished" % task.name))
        try:
            if self.service is not None:
                self.service.stop(self.client)
        finally:
            self.client.close()
            self.fast.close()

    # ------------------------------------------------------------------ submit
    def submit(self, target: Any, names: Optional[Dict[TaskNode, str]] = None,
               now: bool = True) -> List[cf.Future]:
        """Submit every node ``target`` needs that this session has not seen; return the
        futures of the target's refs. ``names`` fixes job names (``run`` uses the graph's).
        ``now=False`` leaves the submit request to the consumer thread, which sends what
        accumulated in one request (a refusal then fails the futures).

        Raises:
            RunError: the session is shut down, or (``now``) the service refused the jobs.
            NameClashError: an explicit ``name`` option is taken in this session.
        """
        refs = target_refs(target)
        with self.lock:
            if self.closed:
                raise RunError("the session is shut down: call qcgflow.init() again")
            new = self._collect(refs)
            plans: Dict[TaskNode, Any] = {}
            if self.memo is not None:  # reuse earlier results (qcgflow.session.cache)
                names = {n: self._name(n) for n in new} if names is None else names
                new, plans = self.memo.plan(new, [ref.node for ref in refs], names)
            reused = {node for node, plan in plans.items() if plan.full}
            for node in new:
                name = names[node] if names is not None else self._name(node)
                preds = [] if node in reused else \
                    list(dict.fromkeys(ref.node for ref, _ in node.dependencies()))
                task = self.tasks[node] = _Task(node, name, preds)
                node.future = task.future
                task.future.session, task.future.node = self, node
                for pred in preds:
                    self.tasks[pred].dependants.append(task)
            names_now = {}  # of the new nodes and their predecessors: what calls refer to
            for node in new:
                for known in [node] + self.tasks[node].preds:
                    names_now[known] = self.tasks[known].name
            todo = [n for n in new if n not in reused]  # inline unless the memo adds skips
            self.fast.calls.update(write_calls(_View(names_now, {}, todo), self.root, not plans))
            if plans:
                _resume.write_skips(self.root, plans, names_now)
                for node, plan in plans.items():
                    self.tasks[node].skip = set(plan.skip)
            for node in reused:
                self._reused(self.tasks[node])
            jobs: List[Dict[str, Any]] = []
            for node in new:
                if self.tasks[node].state == HELD:
                    self._advance(self.tasks[node], jobs)
            if now:
                self._send(jobs)
            elif jobs:  # sent within fastpath.WINDOW: a loop of .remote calls is batched
                self.fast.add(self.outbox, jobs, self.stream.wakeup)
            return [self.tasks[ref.node].future for ref in refs]

    def _collect(self, refs: List[TaskRef]) -> List[TaskNode]:
        """Nodes not in this session that ``refs`` need, predecessors first."""
        order, seen = [], set()
        for ref in refs:
            stack = [(ref.node, False)]
            while stack:
                node, expanded = stack.pop()
                if node in self.tasks or (node in seen and not expanded):
                    continue
                if expanded:
                    order.append(node)
                    continue
                seen.add(node)
                stack.append((node, True))
                for pred_ref, _ in reversed(list(node.dependencies())):
                    if pred_ref.node not in seen and pred_ref.node not in self.tasks:
                        stack.append((pred_ref.node, False))
        return order

    def _name(self, node: TaskNode) -> str:
        explicit = node.options.get("name")
        if explicit is not None:
            if explicit in self.taken:
                raise NameClashError(explicit)
            self.taken.add(explicit)
            return explicit
        number = self.counters.get(node.base, 0)
        while True:
            name = "%s-%s%d" % (node.base, self.prefix, number)
            number += 1
            if name not in self.taken:
                break
        self.counters[node.base] = number
        self.taken.add(name)
        return name

    def _advance(self, task: _Task, jobs: List[Dict[str, Any]]) -> None:
        """Submit a held task whose predecessors allow it, or fail it when one failed."""
        waiting = False
        part = task.node.fn is take_part
        for pred in task.preds:
            other = self.tasks[pred]
            if other.error is not None and pred not in task.loose:
                self._fail(task, other.error if part else
                           self._dependency_error(task.name, other.error))
                return
            if other.state == HELD or (other.state == SUBMITTED and (other.retries or part)):
                waiting = True
        if waiting:
            return
        if part:  # num_returns: item i of a finished task's result, split here
            return self._split(task)
        running = {pred for pred in task.preds if self.tasks[pred].state == SUBMITTED}
        edges = [(pred, element) for pred, element in
                 ((ref.node, element) for ref, element in task.node.dependencies())
                 if pred in running]
        names = {node: self.tasks[node].name for node in task.preds}
        names[task.node] = task.name
        task.job = job_description(_View(names, {task.node: edges}, None), task.node,
                                   sys.executable)
        if self.env:  # init(env=...): every task's, its own env option wins
            execution = task.job["execution"]
            execution["env"] = dict(self.env, **execution.get("env", {}))
        if not self.fast.apply(task.node, task.job):  # True: it removed old streams itself
            outputs.clean(self.root, task.node, task.job, task.skip)  # never append to them
        task.state = SUBMITTED
        self.jobs[task.name] = (task, None)
        jobs.append(task.job)

    def _send(self, jobs: List[Dict[str, Any]]) -> None:
        if not jobs:
            return
        try:
            with self.sending:  # after a batch of the consumer thread in flight (_flush)
                self.client.request({"request": "submit", "jobs": jobs})
        except ClientError as exc:
            self._refuse(jobs, exc)
            raise RunError("the service refused the jobs: %s" % exc) from None

    def _refuse(self, jobs: List[Dict[str, Any]], exc: ClientError) -> None:
        for job in jobs:
            task, _ = self.jobs.pop(job["name"], (None, None))
            if task is not None and task.state == SUBMITTED:
                task.state = HELD
                refused = isinstance(exc, ServiceError)  # else no answer: RunError, as in
                # _check_service; task.error is a TaskFailed for the DependencyFailed chain
                self._fail(task, TaskFailed(task.name, messages="%s%s" % (
                    "refused by the service: " if refused else "", exc)),
                           None if refused else RunError(str(exc)))

    # ------------------------------------------------------------------ outcomes
    def _reused(self, task: _Task) -> None:
        """Its result files were put in place by the memo: done, never submitted."""
        try:
            task.future.set_result(self._value(task))
            task.state = DONE
        except Exception as exc:  # noqa: BLE001 - a broken result file fails the task
            self._fail(task, TaskFailed(task.name, messages="cannot load: %s" % exc))

    def _succeed(self, task: _Task) -> None:
        try:
            value = self._value(task)
        except FileNotFoundError as exc:
            if task.node.kind != COMMAND and task.node.mapped is None:
                # exit status 0 without a result (os._exit(0)): a lost process, as Ray's
                # worker crash, retried as one
                if task.attempts.get(None, 0) < task.retries:
                    return self._retry(task)
                return self._fail(task, TaskFailed(task.name, messages=(
                    "its process ended (exit status 0) without writing a result: "
                    "os._exit() or a killed worker")))
            return self._fail(task, TaskFailed(task.name, messages="cannot load the "
                                               "result: %s" % exc))
        except Exception as exc:  # noqa: BLE001 - a broken result file fails the task
            self._fail(task, TaskFailed(task.name, messages="cannot load the result: %s"
                                        % exc))
            return
        if self.memo is not None:
            self.memo.record(task.node, task.name)
        self._done(task, value)

    def _done(self, task: _Task, value: Any) -> None:
        task.state = DONE
        task.future.set_result(value)
        jobs: List[Dict[str, Any]] = []
        for dependant in task.dependants:
            if dependant.state == HELD:
                self._advance(dependant, jobs)
        self._send(jobs)

    def _fail(self, task: _Task, error: TaskError, raised: Optional[Exception] = None) -> None:
        task.state, task.error = DONE, error
        if not task.future.done():  # it may be cancelled (future.cancel)
            task.future.set_exception(raised or error.as_instanceof_cause())
        jobs: List[Dict[str, Any]] = []
        for dependant in task.dependants:
            if dependant.state != HELD:
                continue
            if task.node in dependant.loose:  # any_outcome: it may run now
                self._advance(dependant, jobs)
            else:  # a num_returns ref fails as its task did
                self._fail(dependant, error if dependant.node.fn is take_part else
                           self._dependency_error(dependant.name, error))
        if jobs:
            self.outbox.extend(jobs)  # sent by the consumer thread: _fail may run in _send
            self.stream.wakeup()

    @staticmethod
    def _dependency_error(name: str, upstream: TaskError) -> DependencyFailed:
        if isinstance(upstream, DependencyFailed):
            return DependencyFailed(name, upstream.root, upstream.root_error)
        return DependencyFailed(name, upstream.task.split(":")[0], upstream)

    def _value(self, task: _Task) -> Any:
        node, name = task.node, task.name
        if node.kind == COMMAND:
            output = command_output(node, name)
            if node.iterations is None:
                return output.load(self.base, None)
            return [output.result(self.root, i) for i in range(node.iterations)]
        return payload.ResultOf(name, node.iterations).load(self.base, None)

    def _own_failure(self, task: _Task, job: str, it=None) -> TaskFailed:
        """A Python task's error result file, else the runtime's reason (exit code, wt)."""
        label = task.name if it is None else "%s:%s" % (task.name, it)
        if task.node.kind != COMMAND or fill_refs(task.node):  # a fill error: its file
            if it is not None or task.node.iterations is None:
                iterations = [it]
            else:
                iterations = range(task.node.iterations)
            for number in iterations:
                path = os.path.join(self.base, payload.result_file(task.name, number))
                if os.path.exists(path):
                    result = payload.read_result(path)
                    if result[0] == "error":
                        where = task.name if number is None else "%s:%s" % (task.name, number)
                        return TaskFailed(where, result[1], result[3], cause_type=result[2])
        return TaskFailed(label, messages=self._messages(job) or "failed")

    def _messages(self, job: str) -> str:
        reply = self.client.request({"request": "jobStatus", "jobNames": [job]}) or {}
        entry = (reply.get("jobs") or {}).get(job) or {}
        return str((entry.get("data") or {}).get("messages") or "")

    def _iteration_states(self, task: _Task) -> Dict[int, str]:
        names = ["%s:%d" % (task.name, i) for i in range(task.node.iterations)]
        reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
        jobs = reply.get("jobs") or {}
        return {i: str(((jobs.get(n) or {}).get("data") or {}).get("status"))
                for i, n in enumerate(names)}

    def _retry(self, task: _Task, it=None) -> None:
        """Resubmit the task (or one iteration of it, as a plain job) without dependencies:
        its predecessors have succeeded."""
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
            job["execution"] = _substitute(job["execution"], it, value)
        if task.node.kind != COMMAND:  # no stale error result from the last attempt
            path = os.path.join(self.base, payload.result_file(task.name, it))
            if os.path.exists(path):
                os.unlink(path)
        _log.info("retry %d of %s", used, job["name"])
        self.jobs[job["name"]] = (task, it)
        self._send([job])

    def _on_final(self, job: str, state: str) -> None:
        entry = self.jobs.pop(job, None)
        if entry is None:
            return
        task, it = entry
        if task.state != SUBMITTED:
            return
        if it is not None:
            return self._on_iteration_retry(task, it, job, state)
        if state == "SUCCEED":
            return self._succeed(task)
        if task.cancel_requested:
            return self._fail(task, self._cancelled_error(task, job))
        if state == "FAILED" and task.retries:
            if task.node.mapped is None:
                if task.attempts.get(None, 0) < task.retries and \
                        self._retryable(task, job, None):
                    return self._retry(task)
            else:
                states = self._iteration_states(task)
                failed = [i for i, s in states.items() if s == "FAILED"]
                if failed and all(s in ("SUCCEED", "FAILED") for s in states.values()) \
                        and all(self._retryable(task, job, i) for i in failed):
                    task.open_iterations = set(failed)
                    for i in failed:
                        self._retry(task, i)
                    return
        if state in ("FAILED", "CANCELED"):
            own = self._own_failure(task, job)
            if own.cause_type or not self._failed_predecessor(task):
                return self._fail(task, own)
        upstream = self._failed_predecessor(task)
        if upstream is not None:
            return self._fail(task, self._dependency_error(task.name, upstream))
        self._fail(task, TaskFailed(task.name, messages=self._messages(job) or state.lower()))

    def _on_iteration_retry(self, task: _Task, it: int, job: str, state: str) -> None:
        if state != "SUCCEED":
            if state == "FAILED" and task.attempts[it] < task.retries and \
                    self._retryable(task, job, it):
                return self._retry(task, it)
            if task.iteration_error is None:
                task.iteration_error = self._own_failure(task, job, it)
        task.open_iterations.discard(it)
        if task.open_iterations:
            return
        if task.iteration_error is not None:
            return self._fail(task, task.iteration_error)
        self._succeed(task)

    def _failed_predecessor(self, task: _Task) -> Optional[TaskError]:
        """The error of a failed predecessor; one whose final event was lost is asked for."""
        for pred in task.preds:
            if pred in task.loose:  # any_outcome: its failure does not fail this task
                continue
            other = self.tasks[pred]
            if other.state == SUBMITTED:
                self._recheck([n for n, (t, _) in self.jobs.items() if t is other])
            if other.error is not None:
                return other.error
        return None

    # ------------------------------------------------------------------ events
    def _consume(self) -> None:
        quiet_since = time.monotonic()
        while not self.closed:
            try:  # every event received meanwhile (None: none), handled under one lock
                events = self.fast.receive(self.stream, self.outbox, RECHECK_AFTER)
            except ClientError:
                break
            if self.closed:
                break
            if self.outbox and self.fast.due(self.outbox):
                self._flush()
            with self.lock:
                for event in events:
                    try:
                        if event is not None:
                            quiet_since = time.monotonic()
                            if event.topic == TOPIC_JOB_FINISHED:
                                self._on_final(event.job, event.state)
                            elif event.state == "EXECUTING" and self.on_executing is not None:
                                self.on_executing(event.job)
                        elif self.jobs and time.monotonic() - quiet_since >= RECHECK_AFTER:
                            quiet_since = time.monotonic()
                            self._check_service()
                            unsent = {job["name"] for job in self.outbox}  # unknown there
                            self._recheck([name for name in self.jobs if name not in unsent])
                    except Exception as exc:  # noqa: BLE001 - the thread must go on
                        _log.exception("session event handling failed")
                        self._fail_job(event.job if event is not None else None, exc)

    def _flush(self) -> None:
        """Send what ``submit(now=False)`` left in the outbox (consumer thread).

        The request goes out without holding the session's lock, so ``.remote`` calls made
        meanwhile do not wait for the service's reply (they land in the next batch). The
        send lock is taken before the session's lock is released: no submit of another
        thread (``_send``) overtakes this batch, whose jobs it may depend on."""
        with self.lock:
            jobs, self.outbox = self.outbox, []
            jobs = [job for job in jobs if not self._after_refused(job)]
            if not jobs:
                return
            self.sending.acquire()
        try:
            self.client.request({"request": "submit", "jobs": jobs})
            return
        except ClientError as exc:
            error = exc
        finally:
            self.sending.release()
        with self.lock:
            if not isinstance(error, ServiceError) or len(jobs) == 1:
                # no answer (sending again could submit twice), or its one job refused
                self._refuse(jobs, error)
                _log.warning("the service refused the jobs: %s", error)
                return
            # .remote calls batched into one request, which the service refuses as a
            # whole: then each is sent alone (predecessors first), so a bad call fails alone
            for job in jobs:
                if self._after_refused(job):
                    continue
                try:
                    self._send([job])
                except RunError as exc:  # the futures of the jobs carry it
                    _log.warning("%s", exc)

    def _after_refused(self, job: Dict[str, Any]) -> bool:
        """Fail (and leave unsent) a job that runs after one the service refused."""
        task, _ = self.jobs.get(job["name"], (None, None))
        after = {name.split(":")[0] for name in job.get("dependencies", {}).get("after", ())}
        for pred in (self.tasks[node] for node in task.preds) if task is not None else ():
            if pred.name in after and pred.error is not None:
                del self.jobs[job["name"]]
                task.state = HELD
                self._fail(task, self._dependency_error(task.name, pred.error))
                return True
        return False

    def _fail_job(self, job: Optional[str], exc: Exception) -> None:
        entry = self.jobs.pop(job, None) if job else None
        if entry is not None and not entry[0].future.done():
            self._fail(entry[0], TaskFailed(entry[0].name, messages="qcgflow: %s" % exc))

    def _check_service(self) -> None:
        dead = self.service.liveness() if self.service is not None else None
        if dead:
            for task, _ in list(self.jobs.values()):
                if not task.future.done():
                    task.state, task.error = DONE, TaskFailed(task.name, messages=dead)
                    task.future.set_exception(RunError(dead))
            self.jobs.clear()

    def _recheck(self, names: List[str]) -> None:
        """Ask for the states of ``names``; handle the final ones in submission order."""
        if not names:
            return
        reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
        found = reply.get("jobs") or {}
        for name in names:
            state = ((found.get(name) or {}).get("data") or {}).get("status")
            if state in FINAL_STATES:
                self._on_final(name, state)
