"""Sessions: submit graph nodes to a service, track them, resolve their futures.

The decisions are the tracker's (``qcgflow.session.tracker``, pure: events in,
instructions out); this driver owns what the tracker must not touch: the consumer
thread, the lock, the client, the files. It feeds the tracker events and carries out its
instructions::

    Session.start(wd, nodes) ── LocalService (qcgflow.session.localservice) + ServiceClient
    Session.attach()         ── the service of the task we run in (QCG_PM_ZMQ_ADDRESS,
                                QCGFLOW_RUN_DIR): tasks may submit tasks
    submit(target) ─ name new nodes ─ write their call files ─ Added ─> Submit instructions
       │   now: sent by the caller, in ONE request; else the outbox, sent by the thread
       ▼
    consumer thread: JFI events (a jobStatus re-check when quiet: events may be dropped)
       final state ─> tracker.inquiry: what to find out (results, reasons, iteration
                      states; requests made WITHOUT the lock) ─> JobEnded(facts)
                  ─> Resolve / Fail (futures set outside the lock), Submit / Retry (outbox)

Locking: ``lock`` guards the tracker and the outbox, and is never held during a request
or while a future's callbacks run. Requests that submit or cancel go out in the order
their turns were taken under ``lock`` (``_Turns``): a job is never sent before one it runs
after. ``qcgflow.run(target)`` (oneshot.py) is a session that submits the whole graph at
once. The only graph-API module that talks to the runtime, through ``runtime.client``.
"""

import concurrent.futures as cf
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from qcgflow.build import outputs
from qcgflow.build import payload
from qcgflow.build.compile import command_output, fill_refs, write_calls
from qcgflow.errors import NameClashError, RunError, TaskFailed
from qcgflow.session import fastpath
from qcgflow.session.bundled import BundledCalls
from qcgflow.session.bundles import Bundler
from qcgflow.graph.graph import COMMAND, TaskNode, TaskRef, target_refs
from qcgflow.runtime.client import (TOPIC_JOB_FINISHED, TOPIC_JOB_STATUS, ClientError,
                                    ServiceClient, ServiceError)
from qcgflow.runtime.protocol import EXECUTING, FAILED, FINAL_STATE_NAMES, SUCCEED
from qcgflow.session import cache as _resume
from qcgflow.session.events import (Added, Facts, Fail, HandlingFailed, Inquiry, JobEnded, Loaded,
                                    PartWritten, Record, Refused, Resolve, Retry, ServiceDied,
                                    Shutdown, Submit, Unqueue, Withdrawn, WritePart)
from qcgflow.session.localservice import ADDRESS_ENV, RUN_DIR_ENV, LocalService
from qcgflow.session.ray_habits import SESSION_ENV_NAMES, RayHabits, _Future
from qcgflow.session.tracker import Task, Tracker, View

_log = logging.getLogger(__name__)

RECHECK_AFTER = 1.0  # s without an event before the job states are asked for (lost events)


class _Turns:
    """Requests go out in the order their turns were taken (under the session's lock),
    and nobody holds the session's lock while waiting for a turn."""

    def __init__(self):
        self._cond = threading.Condition()
        self._next = self._now = 0

    def take(self) -> int:
        with self._cond:
            self._next += 1
            return self._next - 1

    @contextlib.contextmanager
    def turn(self, ticket: int):
        """Wait for ``ticket``'s turn; the next ticket's comes when the block ends."""
        with self._cond:
            self._cond.wait_for(lambda: self._now == ticket)
        try:
            yield
        finally:
            with self._cond:
                self._now += 1
                self._cond.notify_all()


class Session(RayHabits, BundledCalls):
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
        self.tracker = Tracker(sys.executable)
        self.taken: set = set()
        self.counters: Dict[str, int] = {}
        self.lock = threading.RLock()
        self.turns = _Turns()  # submit and cancel requests in the order they were decided
        self.outbox: List[Any] = []  # Submit / Retry instructions not sent yet
        self.checks: List[str] = []  # adopted jobs whose states the consumer asks for
        self.closed = False
        self.memo: Optional[_resume.Memo] = None  # set by run(): records and reuses results
        self.adopted: Dict[str, TaskNode] = {}  # job name -> node of a ref that travelled
        self.fast = fastpath.FastPath(self.base, use_store=service is not None)  # issue 19
        self.bundler = Bundler(self._bundle_name)  # several short calls in one job
        topics = (TOPIC_JOB_FINISHED,) + ((TOPIC_JOB_STATUS,) if on_executing else ())
        self.stream = client.subscribe(topics, address=pub_address)
        self.thread = threading.Thread(target=self._consume, name="qcgflow-session",
                                       daemon=True)
        self.thread.start()

    @property
    def tasks(self) -> Dict[TaskNode, Task]:
        """Node -> its ``tracker.Task`` (``name``, ``state``, ``future``)."""
        return self.tracker.tasks

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
        self._feed(Shutdown())
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
            preds_of: Dict[TaskNode, List[TaskNode]] = {}
            new = self._collect(refs, preds_of)
            plans: Dict[TaskNode, Any] = {}
            if self.memo is not None:  # reuse earlier results (qcgflow.session.cache)
                names = {n: self._name(n) for n in new} if names is None else names
                new, plans = self.memo.plan(new, [ref.node for ref in refs], names)
            reused = {node for node, plan in plans.items() if plan.full}
            created: Dict[TaskNode, Task] = {}
            for node in new:
                name = names[node] if names is not None else self._name(node)
                preds = [] if node in reused else preds_of[node]
                created[node] = self._new_task(node, name, preds)
            names_now = {}  # of the new nodes and their predecessors: what calls refer to
            for task in created.values():
                for known in [task.node] + task.preds:
                    names_now[known] = (created.get(known) or self.tasks[known]).name
            todo = [n for n in new if n not in reused]  # inline unless the memo adds skips
            self.fast.calls.update(write_calls(View(names_now, {}, todo), self.root, not plans))
            if plans:
                _resume.write_skips(self.root, plans, names_now)
                for node, plan in plans.items():
                    created[node].skip = set(plan.skip)
            loaded = {created[node]: self._load(created[node]) for node in reused}
            queued = len(self.outbox)
            later = self._handle(Added(tuple(created.values()), loaded))
            futures = [(created.get(ref.node) or self.tasks[ref.node]).future for ref in refs]
            if now:  # ours go alone, after what was decided before
                earlier, mine, self.outbox = self.outbox[:queued], self.outbox[queued:], []
                ticket = self.turns.take()
            else:  # sent within fastpath.WINDOW: a loop of .remote calls is batched
                self.fast.queued(queued, len(self.outbox), self.stream.wakeup)
        if now:
            with self.turns.turn(ticket):
                refused, withdrawn = self._deliver(earlier, whole=False)
                mine_refused, _ = self._deliver(mine, whole=True)
            self._settle_refusals(refused + mine_refused, withdrawn)
        self._apply(later)
        if now:
            self._flush()  # what the refusals let run (any_outcome), a part's dependants
            if mine_refused:
                raise RunError("the service refused the jobs: %s" % mine_refused[0][1])
        else:
            self.fast.nudge(self.outbox, self.stream.wakeup)  # the window may be over
        return futures

    def _new_task(self, node: TaskNode, name: str, preds: List[TaskNode]) -> Task:
        future = _Future()
        future.set_running_or_notify_cancel()
        future.session, future.node = self, node
        node.future = future
        return Task(node, name, preds, future)

    def _collect(self, refs: List[TaskRef],
                 preds_of: Dict[TaskNode, List[TaskNode]]) -> List[TaskNode]:
        """Nodes not in this session that ``refs`` need, predecessors first; ``preds_of``
        gets each one's distinct predecessors (its arguments walked once per submit)."""
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
                preds = preds_of[node] = list(dict.fromkeys(
                    pred_ref.node for pred_ref, _ in node.dependencies()))
                for pred in reversed(preds):
                    if pred not in seen and pred not in self.tasks:
                        stack.append((pred, False))
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

    # ------------------------------------------------------------------ instructions
    def _handle(self, event: Any) -> List[Any]:
        """Feed ``event`` to the tracker (``lock`` held): sends go to the outbox; the rest
        is returned, for ``_apply`` once the lock is released."""
        later = []
        for instruction in self.tracker.handle(event):
            kind = type(instruction)
            if kind is Submit or kind is Retry:
                self.outbox.append(instruction)
            elif kind is Unqueue:
                gone = set(instruction.jobs)
                self.outbox = [item for item in self.outbox if item.job["name"] not in gone]
                self.bundler.unpark(gone)
            else:
                later.append(instruction)
        return later

    def _feed(self, event: Any) -> None:
        with self.lock:
            later = self._handle(event)
        self._apply(later)

    def _apply(self, instructions: List[Any]) -> None:
        """Carry out what the tracker decided (no lock held: callbacks of futures run)."""
        for instruction in instructions:
            kind = type(instruction)
            if kind is Resolve:
                with contextlib.suppress(cf.InvalidStateError):  # cancelled meanwhile
                    instruction.future.set_result(instruction.value)
            elif kind is Fail:
                if instruction.mark_cancelled:
                    instruction.future.mark_cancelled()
                with contextlib.suppress(cf.InvalidStateError):  # it may be cancelled
                    instruction.future.set_exception(instruction.error)
            elif kind is Record:
                if self.memo is not None:
                    self.memo.record(instruction.task.node, instruction.task.name)
            elif kind is WritePart:
                self._feed(PartWritten(instruction.task, self._write_part(instruction)))
            else:
                raise TypeError("not an instruction for _apply: %r" % (instruction,))

    def _write_part(self, instruction: WritePart) -> Optional[Exception]:
        """A ``num_returns`` ref's item, written as its own result file (what its
        dependants' calls read), without a job."""
        name = instruction.task.name
        try:
            os.makedirs(os.path.join(self.base, name), exist_ok=True)
            payload.write_value(os.path.join(self.base, payload.result_file(name)),
                                instruction.value)
        except Exception as exc:  # noqa: BLE001 - the part fails with it
            return exc
        return None

    # ------------------------------------------------------------------ sending
    def _flush(self) -> None:
        """Send the outbox in one request (no lock held: ``.remote`` calls made meanwhile
        go in the next batch, in their own window: a loop must not keep us from events)."""
        with self.lock:
            items, self.outbox = self.outbox, []
            blocked = [item for item in items if self.tracker.after_refused(item.job)]
            if blocked:
                items = [item for item in items if all(item is not b for b in blocked)]
            later = []
            for item in blocked:  # a job it runs after was refused meanwhile
                later += self._handle(Withdrawn(item.job["name"]))
            ticket = self.turns.take() if items else None
        refused = withdrawn = ()
        if ticket is not None:  # used before any callback runs: one may wait for a turn
            with self.turns.turn(ticket):
                refused, withdrawn = self._deliver(items, whole=False, bundle=True)
            self._settle_refusals(refused, withdrawn)
        self._apply(later)
        if self.outbox and (blocked or refused or withdrawn):  # any_outcome dependants
            self._flush()

    def _deliver(self, items: List[Any], whole: bool, bundle: bool = False):
        """Send the jobs of ``items`` (in one's turn, no lock): ``(refused, withdrawn)``,
        the refused jobs with the error, the jobs left unsent.

        ``bundle``: short calls go in bundles (qcgflow/session/bundles.py). A batch the
        service refuses as a whole is sent again one job at a time (predecessors first) so
        that a bad call fails alone, unless ``whole`` or no answer came (sending again
        could submit twice)."""
        unprepared = []
        for item in items:
            try:
                self._prepare(item)
            except OSError as exc:  # old outputs that cannot be removed: it does not run
                unprepared.append(((item.job["name"],), exc))
        if unprepared:
            gone = {names[0] for names, _ in unprepared}
            items = [item for item in items if item.job["name"] not in gone]
        if items:
            bundle = bundle and self.memo is None and self.on_executing is None
            cores = self._cores() if bundle and self.bundler.durations else 1  # unlocked
            with self.lock:
                items = self.bundler.route(items, lambda: cores, bundle)
        if not items:
            return unprepared, []
        try:
            self.client.request({"request": "submit", "jobs": [i.job for i in items]})
            return unprepared, []
        except ClientError as exc:
            error = exc
        names = tuple(item.job["name"] for item in items)
        if whole or not isinstance(error, ServiceError) or len(items) == 1:
            return unprepared + [(names, error)], []
        refused, withdrawn = unprepared, []
        gone = {names[0] for names, _ in unprepared}
        for item in items:
            name = item.job["name"]
            after = {n.split(":")[0] for n in item.job.get("dependencies", {}).get("after", ())}
            if after & gone:
                withdrawn.append(name)
                gone.add(name)
                continue
            try:
                self.client.request({"request": "submit", "jobs": [item.job]})
            except ClientError as exc:
                refused.append(((name,), exc))
                gone.add(name)
        return refused, withdrawn

    def _prepare(self, item: Any) -> None:
        """The files a job's run must not find: outputs of an earlier run (never append
        to old files), the error result of the attempt before a retry."""
        task = item.task
        if type(item) is Submit:
            if not self.fast.apply(task.node, item.job):  # True: it removed old streams
                outputs.clean(self.root, task.node, item.job, task.skip)  # never append
            if task.node in self.chunk_maps and self.fast.env:  # a big map: in chunks
                fastpath.chunk(item.job, self._cores())
            return
        if task.node.kind != COMMAND:
            path = os.path.join(self.base, payload.result_file(task.name, item.it))
            if os.path.exists(path):
                os.unlink(path)
        _log.info("retry %d of %s", item.attempt, item.job["name"])

    def _settle_refusals(self, refused, withdrawn) -> None:
        if not refused and not withdrawn:
            return
        with self.lock:
            later = []
            refused = [(self._members(names), error) for names, error in refused]
            for names, error in refused:
                _log.warning("the service refused the jobs: %s", error)
                later += self._handle(Refused(names, str(error),
                                              isinstance(error, ServiceError)))
            for name in self._members(withdrawn):
                later += self._handle(Withdrawn(name))
            released = self.bundler.released()  # what waited for a refused bundle
            if released:
                self.outbox[:0] = released
                self.fast.hurry()
        self._apply(later)

    # ------------------------------------------------------------------ outcomes
    def _settle(self, job: str, state: str) -> None:
        """A job reached a final state: find out what the tracker needs, then tell it."""
        if job in self.bundler.bundles or job in self.bundler.watched:
            return self._settle_bundle(job, state)
        with self.lock:
            ask = self.tracker.inquiry(job, state)
        if ask is not None and ask.recheck:  # a predecessor's end first: its event was lost
            self._recheck(list(ask.recheck))
            with self.lock:
                ask = self.tracker.inquiry(job, state)
        if ask is None:
            return
        self._feed(JobEnded(job, state, self._find_out(ask, job)))
        if state == SUCCEED and ask.it is None and self.fast.env:
            self._learn(ask.task)

    def _find_out(self, ask: Inquiry, job: str) -> Facts:
        task, it = ask.task, ask.it
        states = self._iteration_states(task) if ask.states else {}
        return Facts(loaded=self._load(task) if ask.load else None,
                     own=self._own_failure(task, job, it) if ask.own else None,
                     messages=self._messages(job) if ask.messages else "",
                     states=states,
                     own_iterations={i: self._own_failure(task, job, i)
                                     for i, s in states.items() if s == FAILED}
                     if ask.own_iterations else {})

    def _load(self, task: Task) -> Loaded:
        try:
            return Loaded(self._value(task))
        except Exception as exc:  # noqa: BLE001 - a broken result file fails the task
            return Loaded(error=exc)

    def _value(self, task: Task) -> Any:
        node, name = task.node, task.name
        if node.kind == COMMAND:
            output = command_output(node, name)
            if node.iterations is None:
                return output.load(self.base, None)
            return [output.result(self.root, i) for i in range(node.iterations)]
        return payload.ResultOf(name, node.iterations).load(self.base, None)

    def _own_failure(self, task: Task, job: str, it=None) -> TaskFailed:
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
        job = self.bundler.sent_in.get(job, job)  # a bundled call: its bundle's messages
        reply = self.client.request({"request": "jobStatus", "jobNames": [job]}) or {}
        entry = (reply.get("jobs") or {}).get(job) or {}
        return str((entry.get("data") or {}).get("messages") or "")

    def _iteration_states(self, task: Task) -> Dict[int, str]:
        names = ["%s:%d" % (task.name, i) for i in range(task.node.iterations)]
        reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
        jobs = reply.get("jobs") or {}
        return {i: str(((jobs.get(n) or {}).get("data") or {}).get("status"))
                for i, n in enumerate(names)}

    # ------------------------------------------------------------------ events
    def _consume(self) -> None:
        quiet_since = time.monotonic()
        while not self.closed:
            try:  # every event received meanwhile ([None]: none came)
                events = self.fast.receive(self.stream, self.outbox, RECHECK_AFTER)
            except ClientError:
                break
            if self.closed:
                break
            self._guarded(None, self._send_due)
            if self.checks:  # adopted refs: their jobs may have ended already
                with self.lock:
                    names, self.checks = self.checks, []
                self._guarded(None, self._recheck, names)
            for event in events:
                if event is not None:
                    quiet_since = time.monotonic()
                    if event.topic == TOPIC_JOB_FINISHED:
                        self._guarded(event.job, self._settle, event.job, event.state)
                    elif event.state == EXECUTING and self.on_executing is not None:
                        self._guarded(event.job, self.on_executing, event.job)
                elif self.tracker.jobs and time.monotonic() - quiet_since >= RECHECK_AFTER:
                    quiet_since = time.monotonic()
                    self._guarded(None, self._check_quiet)
            self._guarded(None, self._send_due)

    def _guarded(self, job: Optional[str], action: Callable, *args) -> None:
        """Run ``action`` (consumer thread): what it raises is logged and fails the task of
        ``job`` if one is named; the thread goes on."""
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - the thread must go on
            _log.exception("session event handling failed")
            if job is not None:
                self._fail_handling(job, exc)

    def _send_due(self) -> None:
        """Send the outbox once its batching window is over (fastpath.FastPath.due)."""
        if self.outbox and self.fast.due(self.outbox):
            self._flush()

    def _check_quiet(self) -> None:
        """No event for RECHECK_AFTER: is the service alive, and have jobs ended unseen?"""
        self._check_service()
        with self.lock:
            unsent = {item.job["name"] for item in self.outbox}  # unknown there
            unsent |= self.bundler.parked_names
            names = [n for n in self.tracker.open_jobs() if n not in unsent]
        self._recheck(names)

    def _fail_handling(self, job: str, exc: Exception) -> None:
        """The task of ``job`` fails with what went wrong while its end was handled."""
        try:
            self._feed(HandlingFailed(job, exc))
        except Exception:  # noqa: BLE001 - a bug in the tracker: logged, the thread goes on
            _log.exception("failing the task of %s failed", job)

    def _check_service(self) -> None:
        dead = self.service.liveness() if self.service is not None else None
        if dead:
            self._feed(ServiceDied(dead))

    def _recheck(self, names: List[str]) -> None:
        """Ask for the states of ``names``; handle the final ones in submission order."""
        with self.lock:
            names = self.bundler.asked(names)
        if not names:
            return
        reply = self.client.request({"request": "jobStatus", "jobNames": names}) or {}
        found = reply.get("jobs") or {}
        for name in names:
            state = ((found.get(name) or {}).get("data") or {}).get("status")
            if state in FINAL_STATE_NAMES:
                self._settle(name, state)
