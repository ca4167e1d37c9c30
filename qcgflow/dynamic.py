"""The dynamic, Ray-style API: ``init``, ``shutdown``, ``f.remote``, ``get``, ``wait``.

::

    with qcgflow.init(nodes=2):            # a local service for this process
        a = f.remote(1)                    # submitted now; a.future is a real Future
        b = g.remote(a)                    # waits for a in the runtime (a dependency)
        print(qcgflow.get([a, b]))         # blocks; raises the task's own exception
        ready, not_ready = qcgflow.wait([a, b], num_returns=1, timeout=5)

One session per process (``qcgflow.session.Session``). ``.remote`` without ``init``:

* inside a task of a session (``QCGFLOW_RUN_DIR`` and ``QCG_PM_ZMQ_ADDRESS`` set by the
  service): attach to that session's service, so tasks may submit tasks and ``get`` them;
* elsewhere: start an implicit local session on every CPU of this host, in a new
  ``$TMPDIR/qcgflow-run-*`` directory (like Ray). ``shutdown()`` stops it; a session left
  running is stopped when the interpreter exits.
"""

import atexit
import concurrent.futures as cf
import threading
import time
from typing import Any, List, Optional, Sequence, Tuple

from . import payload
from .graph import TaskRef
from .localservice import rt_stats_args
from .session import Session

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
         service_args: Sequence[str] = (), rt_stats: Optional[bool] = None) -> Context:
    """Start a local service for this process's ``.remote`` calls.

    Args:
        nodes: the service's resources (``4``: 4 cores; ``"a:2,b:2"``); default: this
            host's CPUs.
        wd: the run directory (created if missing); default: a new ``$TMPDIR/qcgflow-run-*``.
        service_args: more ``qcgflow service`` options (``["--disable-warm-workers"]``).
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
        _current = Context(Session.start(
            wd, nodes, list(service_args) + rt_stats_args(rt_stats)), implicit=False)
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


def submit(target: Any) -> Any:
    """Submit ``target`` (refs from ``bind`` / ``map``, with what they need) now; return it."""
    session = _session()
    # our own service: the consumer thread sends what accumulates in one request; attached
    # from a task: at once (the task may end right after, before a thread could send it)
    session.submit(target, now=session.service is None)
    return target


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
        TimeoutError: not all finished within ``timeout`` seconds.
        RunError: the session was shut down first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout

    def value(obj):
        kind = type(obj)
        if kind is TaskRef:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return _future(obj).result(left)
            except cf.TimeoutError:
                raise TimeoutError("%r did not finish within %s s" % (obj, timeout)) from None
        if kind is dict:
            return {key: value(item) for key, item in obj.items()}
        if kind in payload.CONTAINERS:
            return kind(value(item) for item in obj)
        return obj

    return value(refs)


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
    deadline = None if timeout is None else time.monotonic() + timeout
    while sum(f.done() for f in futures) < num_returns:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        cf.wait([f for f in futures if not f.done()], left, cf.FIRST_COMPLETED)
    ready = [ref for ref, f in zip(refs, futures) if f.done()][:num_returns]
    chosen = {id(ref) for ref in ready}
    return ready, [ref for ref in refs if id(ref) not in chosen]


atexit.register(shutdown)
