"""The dynamic, Ray-style API: ``init``, ``shutdown``, ``f.remote``, ``get``, ``wait``.

::

    with qcgflow.init(nodes=2):            # a local service for this process
        a = f.remote(1)                    # submitted now; a.future is a real Future
        b = g.remote(a)                    # waits for a in the runtime (a dependency)
        print(qcgflow.get([a, b]))         # blocks; raises the task's own exception
        ready, not_ready = qcgflow.wait([a, b], num_returns=1, timeout=5)

One session per process (``qcgflow.session.driver.Session``). ``.remote`` without ``init``:

* inside a task of a session (``QCGFLOW_RUN_DIR`` and ``QCG_PM_ZMQ_ADDRESS`` set by the
  service): attach to that session's service, so tasks may submit tasks and ``get`` them;
* elsewhere: start an implicit local session on every CPU of this host, in a new
  ``$TMPDIR/qcgflow-run-*`` directory (like Ray). ``shutdown()`` stops it; a session left
  running is stopped when the interpreter exits.
"""

import atexit
import concurrent.futures as cf
import contextlib
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qcgflow.errors import GetTimeoutError, RunError
from qcgflow.graph import port
from qcgflow.graph.graph import CONTAINERS, TaskRef, find_refs
from qcgflow.session.localservice import rt_stats_args
from qcgflow.session.driver import Session

_lock = threading.RLock()
_current: Optional["Context"] = None


class Context:
    """The session of ``qcgflow.init``: a context manager that shuts it down on exit."""

    def __init__(self, session: Session, implicit: bool):
        self.session = session
        self.implicit = implicit

    @property
    def wd(self) -> str:
        """The run directory (call, result and output files)."""
        return self.session.root

    def shutdown(self) -> None:
        shutdown(self)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc_info) -> None:
        shutdown(self)

    def __repr__(self) -> str:
        return "<qcgflow session %s%s>" % (self.wd, " (implicit)" if self.implicit else "")


def init(nodes: Optional[Any] = None, wd: Optional[str] = None,
         service_args: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
         rt_stats: Optional[bool] = None) -> Context:
    """Start a local service for this process's ``.remote`` calls.

    Args:
        nodes: the service's resources (``4``: 4 cores; ``"a:2,b:2"``); default: this
            host's CPUs.
        wd: the run directory (created if missing); default: a new ``$TMPDIR/qcgflow-run-*``.
        service_args: more ``qcgflow service`` options (``["--disable-warm-workers"]``).
        env: environment variables for every task of the session (Ray's
            ``runtime_env={"env_vars": ...}``), also tasks submitted by tasks; a task's own
            ``env`` option wins.
        rt_stats: record the exact start and end of every task (``--enable-rt-stats``, for
            ``qcgflow report``); default ``$QCGFLOW_RT_STATS == "1"``.

    Returns:
        the session, also a context manager (``with qcgflow.init(...):``).

    Raises:
        RuntimeError: a session is already running here (``shutdown()`` it first).
        RunError: the service could not start.
    """
    global _current
    with _lock:
        if _current is not None:
            raise RuntimeError("qcgflow.init() was already called (%r): call "
                               "qcgflow.shutdown() first" % _current)
        if env is not None and not (isinstance(env, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise TypeError("qcgflow.init(env=...) takes a dict of variable names to "
                            "strings, e.g. env={'OMP_NUM_THREADS': '1'}; got %r" % (env,))
        session = Session.start(wd, nodes, list(service_args) + rt_stats_args(rt_stats))
        try:
            session.set_env(env)
        except TypeError:
            session.shutdown()
            raise
        _current = Context(session, implicit=False)
        return _current


def shutdown(context: Optional[Context] = None) -> None:
    """Stop the current session: futures not finished fail with ``RunError``; the service
    this process started stops (with its running tasks). A no-op without a session."""
    global _current
    with _lock:
        if _current is None or (context is not None and context is not _current):
            return
        current, _current = _current, None
    current.session.shutdown()


def is_initialized() -> bool:
    return _current is not None


def _session() -> Session:
    global _current
    with _lock:
        if _current is None:
            attached = Session.attach()
            if attached is not None:
                _current = Context(attached, implicit=True)
            else:
                _current = Context(Session.start(), implicit=True)
        return _current.session


def adopt(name: str, iterations: Any, stored: bool, root: str,
          watch: Optional[str] = None) -> TaskRef:
    """A ref unpickled in this process (``graph.port.adopt``): the current session adopts
    the job ``name`` (in a task: the session it attaches to; never a new service).

    Raises:
        RunError: no ``qcgflow.init()`` session here and this is not a task's process.
    """
    if _current is None and not os.environ.get("QCG_PM_ZMQ_ADDRESS"):
        raise RunError("a ref of job %r arrived outside a qcgflow.init() session: refs "
                       "travel between the tasks and the driver of one session" % name)
    return _session().adopt(name, iterations, stored, root, watch)


def submit(target: Any) -> Any:
    """Submit ``target`` (refs from ``bind`` / ``map``, with what they need) now; return it."""
    session = _session()
    # our own service: the consumer thread sends what accumulates in one request; attached
    # from a task: at once (the task may end right after, before a thread could send it)
    session.submit(target, now=session.service is None)
    return target


STEP_ENV = "QCG_PM_STEP_ID"  # set by the service for every task it runs
_blocked_lock = threading.Lock()
_blocked_count = 0  # threads of this task waiting in get / wait


@contextlib.contextmanager
def _blocking(futures: List[cf.Future]):
    """Around a wait inside a task: while it waits for futures not done yet, the task's
    cores are lent to the service (``taskBlocked``) so that the tasks it waits for can run
    on them, and taken back when it goes on (``taskUnblocked``), as Ray releases a blocked
    worker's CPUs. Costs two requests per wait that blocks; nothing when all are done or
    outside a task. Several threads waiting at once: the first lends, the last takes back."""
    global _blocked_count
    session = _current.session if _current is not None else None
    step = os.environ.get(STEP_ENV)
    if (session is None or session.service is not None or not step
            or all(f.done() for f in futures)):
        yield
        return
    with _blocked_lock:
        _blocked_count += 1
        first = _blocked_count == 1
        if first:
            _notify(session, "taskBlocked", step)
    try:
        yield
    finally:
        with _blocked_lock:
            _blocked_count -= 1
            if _blocked_count == 0:
                _notify(session, "taskUnblocked", step)


def _notify(session: Session, request: str, step: str) -> None:
    try:
        session.client.request({"request": request, "step": step})
    except Exception:  # noqa: BLE001 - an older service: the task keeps its cores
        pass


def put(value: Any) -> TaskRef:
    """Store ``value`` once for this session's tasks (Ray's ``ray.put``) and return a ref:
    pass it to ``.remote`` calls, every task loads the one stored copy (a file in the run
    directory, written once; each task process unpickles its own copy of it);
    ``get(ref)`` returns ``value``. Refs nested in lists and dicts are resolved too."""
    return _session().put(value)


def _future(ref: Any) -> cf.Future:
    if type(ref) is not TaskRef:
        raise TypeError("expected a ref of f.remote(...), got %s" % type(ref).__name__)
    return ref.future


def get(refs: Any, timeout: Optional[float] = None) -> Any:
    """The results of ``refs`` (a ref, or a list / tuple / dict of refs), same shape.

    Raises:
        TaskFailed: a task failed; also an instance of its own exception class, with the
            remote traceback in its text.
        DependencyFailed: a task did not run; ``root`` names the failed task.
        GetTimeoutError: not all finished within ``timeout`` seconds (a TimeoutError).
        RunError: the session was shut down first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    futures = [ref.future for ref in find_refs(refs) if ref.node.future is not None]
    _hurry(futures)
    with _blocking(futures):
        return _values(refs, deadline, timeout)


def _hurry(futures: List[cf.Future]) -> None:
    """Waiting for tasks not done: ``.remote`` calls still batched in the session's outbox
    go out now, not when their window closes (qcgflow/session/fastpath.py)."""
    session = _current.session if _current is not None else None
    if session is not None and session.outbox and not all(f.done() for f in futures):
        session.fast.hurry()
        session.stream.wakeup()


def _values(refs: Any, deadline: Optional[float], timeout: Optional[float]) -> Any:
    def value(obj):
        kind = type(obj)
        if kind is TaskRef:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            future = _future(obj)
            try:
                return future.result(left)
            except cf.TimeoutError:
                if future.done():  # the task's own TimeoutError
                    raise
                raise GetTimeoutError("%r did not finish within %s s" % (obj, timeout)) \
                    from None
        if kind is dict:
            return {key: value(item) for key, item in obj.items()}
        if kind in CONTAINERS:
            return kind(value(item) for item in obj)
        return obj

    return value(refs)


def cancel(ref: TaskRef, force: bool = False, iterations: Optional[Sequence[int]] = None,
           recursive: bool = True) -> bool:
    """Cancel the task of ``ref`` (Ray's ``ray.cancel``).

    Not started yet (queued in the service, or waiting here): it never runs. Running: it
    gets SIGTERM and SIGKILL 10 s later (``force=True``: SIGKILL at once); a task in a warm
    worker takes its worker with it. ``get`` then raises ``TaskCancelled`` (also a
    ``concurrent.futures.CancelledError``; Ray's ``TaskCancelledError``), its dependants
    ``DependencyFailed`` naming it. ``iterations``: only those elements of a mapped task
    (its element-wise dependants' same elements do not run; the mapped task fails with
    ``TaskCancelled`` naming the first canceled element). A finished task is left alone.
    ``recursive`` is accepted for Ray's signature: tasks the canceled task submitted are
    not canceled by it (they belong to the task's own session).

    Returns: True when something was canceled or is being stopped.
    """
    if type(ref) is not TaskRef:
        raise TypeError("qcgflow.cancel takes a ref of f.remote(...), got %s"
                        % type(ref).__name__)
    future = _future(ref)
    session = getattr(future, "session", None)
    if session is None:
        return False
    return session.cancel(ref.node, force=force,
                          iterations=None if iterations is None else list(iterations))


def wait(refs: List[TaskRef], num_returns: int = 1,
         timeout: Optional[float] = None) -> Tuple[List[TaskRef], List[TaskRef]]:
    """Wait until ``num_returns`` of ``refs`` are finished (succeeded or failed) or
    ``timeout`` seconds passed; return ``(ready, not_ready)``, each in the order of ``refs``
    (``ready`` holds at most ``num_returns``)."""
    refs = list(refs)
    if not 0 <= num_returns <= len(refs):
        raise ValueError("num_returns must be between 0 and len(refs) (%d), got %r"
                         % (len(refs), num_returns))
    futures = [_future(ref) for ref in refs]
    _hurry(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    with _blocking(futures if sum(f.done() for f in futures) < num_returns else []):
        while sum(f.done() for f in futures) < num_returns:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            cf.wait([f for f in futures if not f.done()], left, cf.FIRST_COMPLETED)
    ready = [ref for ref, f in zip(refs, futures) if f.done()][:num_returns]
    chosen = {id(ref) for ref in ready}
    return ready, [ref for ref in refs if id(ref) not in chosen]


atexit.register(shutdown)
# .remote, unpickled refs and ref.result() in the graph layer reach this module so
port.install(submit=submit, adopt=adopt, blocking=_blocking)
