"""A session's fast path for Python tasks: small calls inline in the job, small results
in per-worker stores (issue 19). Used by ``qcgflow.session.driver`` only.

::

    Session(service we started) ── FastPath(base, use_store=True): <root>/.qcgflow/stores/<session id>/
        its jobs: env QCGFLOW_STORE=<host>:<that directory>   (qcgflow/build/store.py)
        its small calls: "inline:<base64>" as the runner's CALL argument (no call.pkl)
    Session.shutdown ── FastPath.close

Files stay the path for what is big (calls over ``payload.INLINE_LIMIT``, results over
``store.LIMIT``), for errors (their tracebacks), for tasks on another host, and for
compiled requests files (``qcgflow.compile``: upstream's service runs them as they are).
Inside a Slurm allocation (``SLURM_JOB_ID``) tasks may run on other hosts: no store then,
a result file per task as before. ``QCGFLOW_RESULT_FILES=1`` turns stores off.
"""

import os
import time
from typing import Any, Dict, Optional

from qcgflow.build import groups, store

OFF_ENV = "QCGFLOW_RESULT_FILES"
RUNNER = "qcgflow.runner"  # compile.RUNNER (not imported: compile sits in an import cycle)
WINDOW = 0.004  # s: .remote calls within it go out in one submit request
CHUNK_MOST = 64  # elements of a map per service iteration at most (``chunk``)
CHUNKS_PER_CORE = 16  # a chunked map keeps at least this many chunks per core
BATCH = 1000  # jobs: an outbox this full goes out at once


class FastPath:
    """What a session puts on the fast path: ``calls`` (node -> its inline call argument,
    from ``compile.write_calls(inline=True)``) and, with ``use_store``, the result store of its
    ``.qcgflow`` directory ``base``."""

    def __init__(self, base: str, use_store: bool):
        self.base = base
        os.makedirs(base, exist_ok=True)  # where inline calls' streams go
        # what an earlier run left in base (before this session made anything there): the
        # only stream files a job of this session could find and must not append to
        self.present = set(os.listdir(base))
        self.calls: Dict[Any, str] = {}
        self.env = open_store(base) if use_store else None
        self.directory = self.env and self.env[store.ENV].partition(":")[2]
        self.since = 0.0  # when the outbox got its first job
        self.nudged = False  # the consumer thread was woken for this outbox already

    def apply(self, node: Any, job: Dict[str, Any]) -> bool:
        """``node``'s job on the fast path: its inline call (and streams beside it), the
        store's variable. True when its streams need no ``outputs.clean`` (two ``unlink`` a
        task or an iteration, 40,000 for a 20,000-element map): a Python task without
        declared outputs whose stream files cannot be an earlier run's (removed here if
        they are: a plain inline task's) or whose directory this session made."""
        execution = job["execution"]
        if self.env:
            execution["env"] = dict(execution.get("env") or {}, **self.env)
        inline = self.calls.pop(node, None)
        if inline is not None:
            inline_argument(job, inline)
        if execution.get("args", [])[:2] != ["-m", RUNNER] or node.options.get("outputs"):
            return False  # a command (streams in its wd), or outputs to remove first
        if inline is None or "iteration" in job:  # streams in .qcgflow/<job>/
            return job["name"] not in self.present
        for stream in ("stdout", "stderr"):
            name = "%s.%s" % (job["name"], stream)
            if name in self.present:
                try:
                    os.unlink(os.path.join(self.base, name))
                except FileNotFoundError:
                    pass
        return True

    # ---------------------------------------------------------------- batching
    def queued(self, before: int, after: int, wakeup) -> None:
        """The outbox went from ``before`` to ``after`` items (``submit(now=False)``);
        ``wakeup`` the consumer thread when it must time the window (the first item) or
        send now (``BATCH`` reached)."""
        if after <= before:
            return
        if before == 0:
            self.since = time.monotonic()
            self.nudged = False
            wakeup()
        elif before < BATCH <= after:
            wakeup()

    def nudge(self, outbox: list, wakeup) -> None:
        """After a submit: ``wakeup`` the consumer thread if the outbox is ``due``, once
        per outbox. Every ``.remote`` of a loop that runs on after the window closed used
        to write a wake-up (a system call and a thread switch each, ~12% of the caller's
        time in a loop of 2000); one is enough, and the thread times the window itself."""
        if outbox and not self.nudged and self.due(outbox):
            self.nudged = True
            wakeup()

    def hurry(self) -> None:
        """Send the outbox at the consumer thread's next wake-up (a ``get`` waits on it),
        whatever ``WINDOW`` is. (0.0 was not enough: ``time.monotonic()`` counts from the
        boot, so 0.0 + a window longer than the machine's uptime was still to come.)"""
        self.since = float("-inf")

    def receive(self, stream: Any, outbox: list, quiet: float) -> list:
        """The events ``stream`` has (waiting up to ``quiet`` seconds for one, less while
        the outbox's window is open); ``[None]`` when none came."""
        wait = quiet if not outbox else max(0.0, min(quiet, self.since + WINDOW
                                                     - time.monotonic()))
        event = stream.next(wait)
        return [None] if event is None else [event] + stream.drain()

    def due(self, outbox: list) -> bool:
        """Whether the outbox goes out now: ``WINDOW`` passed since its first job, it holds
        ``BATCH`` jobs, or someone waits for one of them."""
        return len(outbox) >= BATCH or time.monotonic() >= self.since + WINDOW

    def close(self) -> None:
        if self.env:
            store.unregister(self.base, self.directory)


def open_store(base: str) -> Optional[Dict[str, str]]:
    """A new store directory for a session whose ``.qcgflow`` directory is ``base``,
    registered for lookups in this process; returns the environment its jobs get (None:
    no store here, results are files)."""
    if os.environ.get(OFF_ENV) == "1" or os.environ.get("SLURM_JOB_ID"):
        return None
    name = "%s-%d-%x" % (store.host(), os.getpid(), time.time_ns())
    directory = os.path.join(base, store.DIR, name)
    store.register(base, directory)
    return {store.ENV: store.env_value(directory)}


def chunkable(graph: Any) -> set:
    """The nodes of ``graph`` (a whole ``qcgflow.run`` graph) whose map may run in chunks:
    Python maps over values that no task depends on element by element (``after: A:${it}``
    names A's elements as service iterations)."""
    per_element = {pred for edges in graph.edges.values() for pred, element in edges
                   if element}
    return {node for node in graph.order if node.kind == "python" and node.mapped is not None
            and node.mapped[0] == "values" and node not in per_element
            and not node.options.get("outputs")}


def chunk(job: Dict[str, Any], cores: int) -> int:
    """Run a big map's elements several per service iteration (issue 19): a 20,000-element
    map of a function that takes microseconds costs the service, a worker and the session
    a job's share each per element otherwise. ``job`` is a chunkable node's map on the
    fast path (results in a store); returns the chunk size (0: left as it was).

    At most ``CHUNK_MOST`` elements per chunk and at least ``CHUNKS_PER_CORE`` chunks per
    core: the cores stay busy to the end and a chunk of long elements stays a small share
    of the run. Each element keeps its result (``result.<element>.pkl``, a store record)
    and its error; it prints into its chunk's stdout and stderr (``stdout.<chunk>``). Not
    chunked: maps with a wall time, retries, or another option of their own; results in
    files (no store)."""
    execution, iteration = job["execution"], job.get("iteration") or {}
    args = execution.get("args") or []
    if set(iteration) != {"start", "stop"} or iteration["start"] != 0 \
            or "env" not in execution or len(args) != 5 or args[:2] != ["-m", RUNNER] \
            or args[4] != "${it}" or not args[3].endswith("/result.${it}.pkl") \
            or "wt" in (job.get("resources") or {}) or "dependencies" in job and any(
                ":" in name for names in job["dependencies"].values() for name in names) \
            or set((job.get("attributes") or {}).get("qcgflow") or {}) - {"when_written"}:
        return 0
    elements = iteration["stop"]
    size = min(CHUNK_MOST, elements // (max(1, cores) * CHUNKS_PER_CORE))
    if size < 2:
        return 0
    args[3] = args[3][:-len("/result.${it}.pkl")] + "/result.pkl"
    args[4] = groups.chunk_argument(size, elements)
    job["iteration"] = {"start": 0, "stop": -(-elements // size)}
    return size


def inline_argument(job: Dict[str, Any], argument: str) -> None:
    """Put an inline call (``compile.write_calls(inline=True)``) in a Python task's job, in
    place of its call file's path (the runner's first argument). A plain (not mapped) task
    then has no directory of its own (one ``mkdir`` per ``.remote`` call less): its stdout
    and stderr are ``.qcgflow/<job>.stdout`` and ``.stderr``; a result that is not stored
    (an error, a big one) creates ``.qcgflow/<job>/`` for its file when it is written."""
    execution = job["execution"]
    execution["args"][2] = argument  # -m qcgflow.runner CALL RESULT [IT]
    if "iteration" in job:
        return
    name = job["name"]
    for stream in ("stdout", "stderr"):
        execution[stream] = execution[stream].replace("/%s/%s" % (name, stream),
                                                      "/%s.%s" % (name, stream))
