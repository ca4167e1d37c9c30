"""``qcgflow.run``: one graph, on a session of its own, to its results.

::

    run(target) ── resume settings (before anything starts) ── Graph.build
        ── Session.start (a local service) ── submit the whole graph at once
        ── wait for the targets (timeout) ── shutdown ── raise a target's error, or
        return the target with each ref replaced by its result
"""

import concurrent.futures as cf
import time
from typing import Any, Dict, Optional

from qcgflow.session import cache as _resume
from qcgflow.session import fastpath
from qcgflow.errors import RunError
from qcgflow.graph.graph import CONTAINERS, Graph, TaskNode, TaskRef
from qcgflow.session.localservice import START_TIMEOUT, rt_stats_args
from qcgflow.session.driver import Session


def _shape(target: Any, values: Dict[TaskNode, Any]) -> Any:
    kind = type(target)
    if kind is TaskRef:
        return values[target.node]
    if kind is dict:
        return {key: _shape(item, values) for key, item in target.items()}
    if kind in CONTAINERS:
        return kind(_shape(item, values) for item in target)
    return target


def _left(deadline: Optional[float]) -> Optional[float]:
    """Seconds left before ``deadline`` (None: no limit); RunError once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise RunError("the run did not finish within its timeout (the service was not "
                       "started yet)")
    return min(left, START_TIMEOUT)


def run(target: Any, nodes: Optional[Any] = None, wd: Optional[str] = None,
        timeout: Optional[float] = None, resume: Optional[bool] = None,
        cache_dir: Optional[str] = None, rt_stats: Optional[bool] = None) -> Any:
    """Run the graph of ``target`` on a local service and return its results.

    Args:
        target: a ref, or a list / tuple / dict of refs (nesting allowed).
        nodes: the service's resources (``4``: 4 cores; ``"a:2,b:2"``); default: this
            host's CPUs.
        wd: the run's working directory (created if missing; call, result and output
            files stay there); default: a new ``$TMPDIR/qcgflow-run-*``.
        timeout: seconds for the whole run (None: no limit).
        resume: reuse the results of tasks completed in ``wd`` before with the same key
            (docs/graph-api.md, "Resume and caching"); default ``$QCGFLOW_RESUME == "1"``.
        cache_dir: results shared by runs in any ``wd`` (default ``$QCGFLOW_CACHE_DIR``).
        rt_stats: record the exact start and end of every task (the service's
            ``--enable-rt-stats``: ``<wd>/.qcgpjm-service-*/rtstats.jsonl`` for ``qcgflow
            report``); default ``$QCGFLOW_RT_STATS == "1"``.

    Returns:
        ``target`` with every ref replaced by its result: a Python task's return value (a
        list for a mapped task), a command task's ``CommandResult`` (a list when mapped).

    Raises:
        TaskFailed: a target task failed (after its ``retries``); also an instance of the
            task's own exception class (``except ValueError`` works), its text holds the
            remote traceback.
        DependencyFailed: a target task did not run; ``root`` names the failed task.
        RunError: the service could not start, refused the jobs, or the timeout passed
            (also while the service is starting).
        GraphError, TaskOptionError: the graph is not valid (nothing is started).
        ValueError: ``resume=True`` without ``wd`` or ``cache_dir`` (nothing to resume).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    settings = _resume.run_settings(wd, resume, cache_dir)  # before anything starts
    graph = Graph.build(target)  # bounded: cyclic containers are refused (GraphError)
    try:
        session = Session.start(wd, nodes, rt_stats_args(rt_stats),
                                start_timeout=_left(deadline))
    except RunError:
        _left(deadline)  # the run's timeout passed meanwhile: say so
        raise
    try:
        session.memo = settings and _resume.Memo(session.root, *settings)
        session.chunk_maps = frozenset(fastpath.chunkable(graph))  # big maps: in chunks
        futures = dict(zip((ref.node for ref in graph.targets),
                           session.submit(graph.targets, graph.names)))
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        _, pending = cf.wait(list(futures.values()), timeout=left)
        if pending:
            unfinished = sorted(graph.names[n] for n, f in futures.items() if f in pending)
            raise RunError("the run did not finish within its timeout; unfinished: %s"
                           % ", ".join(unfinished[:10]))
    finally:
        session.shutdown()
    for ref in graph.targets:
        error = futures[ref.node].exception()
        if error is not None:
            raise error
    return _shape(target, {node: future.result() for node, future in futures.items()})
