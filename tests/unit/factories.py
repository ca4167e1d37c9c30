"""Factories and fakes for unit tests of the pure runtime core (no processes, no sleeps).

* ``job_desc(name, **overrides)``: a raw job description dict, as it comes off the wire.
* ``spec(name, **overrides)``: the same, parsed into a ``JobSpec``.
* ``FakeLoop``: collects ``call_soon`` callbacks; ``run_pending()`` runs them.
* ``FakeExecutor``: records ``start(job, position, allocation)`` calls.
* ``make_manager(nodes=...)``: a ``Manager`` wired to a fake loop, executor and clock.
* ``Harness`` helpers drive task completion through ``manager.task_executing`` /
  ``manager.task_done`` with ``executor.Outcome``.
"""

import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qcgflow.runtime.clock import FakeClock
from qcgflow.runtime.executor import Outcome
from qcgflow.runtime.jobs import JobState
from qcgflow.runtime.manager import Manager
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.registry import Registry
from qcgflow.runtime.resources import ResourcePool

_MISSING = object()

SUBMIT_VARS = {
    "rcnt": "7",
    "uniq": "0123abcd",
    "sname": "local",
    "date": "2024-01-02",
    "time": "03-04-05",
    "dateTime": "2024-01-02_03-04-05",
}


def job_desc(name: Any = "a", *, execution: Any = _MISSING, resources: Any = _MISSING,
             iteration: Any = _MISSING, after: Optional[Sequence[str]] = None,
             **overrides: Any) -> Dict[str, Any]:
    """A minimal valid job description; keyword arguments add or replace top-level keys.

    ``after=[...]`` is a shortcut for ``dependencies={"after": [...]}``. Passing a value of
    ``None`` for ``execution`` removes the key (to test a missing element).
    """
    desc: Dict[str, Any] = {"name": name}
    if execution is _MISSING:
        desc["execution"] = {"exec": "/bin/true"}
    elif execution is not None:
        desc["execution"] = execution
    if resources is not _MISSING:
        desc["resources"] = resources
    if iteration is not _MISSING:
        desc["iteration"] = iteration
    if after is not None:
        desc["dependencies"] = {"after": list(after)}
    desc.update(overrides)
    return desc


def with_path(desc: Dict[str, Any], path: Sequence[str], value: Any) -> Dict[str, Any]:
    """A deep copy of ``desc`` with ``desc[path[0]][path[1]]... = value`` (dicts created)."""
    result = copy.deepcopy(desc)
    target = result
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return result


def spec(name: str = "a", submit_vars=None, **overrides):
    """A parsed ``JobSpec`` of ``job_desc(name, **overrides)``."""
    return parse_job(job_desc(name, **overrides), dict(submit_vars or SUBMIT_VARS))


def pool(nodes: Sequence[Tuple] = (("n0", (0, 1)),)) -> ResourcePool:
    """A pool of ``(name, core ids)`` or ``(name, core ids, GPU ids)`` nodes."""
    return ResourcePool([(node[0], list(node[1])) + tuple(node[2:]) for node in nodes])


def gpu_pool(*sizes: Tuple[int, Sequence[int]]) -> ResourcePool:
    """Nodes n0, n1, ... of ``(cores, GPU ids)``: ``gpu_pool((2, [0, 1]), (2, [5]))``."""
    return ResourcePool([("n%d" % i, list(range(cores)), list(gpus))
                         for i, (cores, gpus) in enumerate(sizes)])


def cores_pool(*sizes: int) -> ResourcePool:
    """Nodes n0, n1, ... with the given numbers of cores."""
    return ResourcePool([("n%d" % i, list(range(size))) for i, size in enumerate(sizes)])


def make_registry(clock=None, listeners=()) -> Registry:
    return Registry(clock or FakeClock(), tuple(listeners))


class FakeLoop:
    """Only what the manager uses: ``call_soon``. Callbacks run when the test says so."""

    def __init__(self):
        self.pending: List = []
        self.calls = 0

    def call_soon(self, callback, *args) -> None:
        self.calls += 1
        self.pending.append((callback, args))

    def run_pending(self) -> int:
        """Run callbacks until none is left (callbacks may queue more). Returns how many ran."""
        ran = 0
        while self.pending:
            callback, args = self.pending.pop(0)
            callback(*args)
            ran += 1
        return ran


class FakeExecutor:
    """Records start decisions; never runs anything.

    ``started`` is every start in order; ``running`` the ones not ended yet (like the real
    executor, a unit leaves ``running`` just before the manager hears it ended).
    """

    def __init__(self):
        self.started: List[Tuple[Any, Optional[int], Any]] = []
        self.running: List[Tuple[Any, Optional[int], Any]] = []
        self.stopped: List[Tuple] = []
        self.graces: List[Optional[float]] = []  # the SIGTERM->SIGKILL grace of each stop

    def __len__(self) -> int:
        return len(self.running)

    def start(self, job, position, allocation) -> None:
        self.started.append((job, position, allocation))
        self.running.append((job, position, allocation))

    def stop(self, job, position, reason, state, grace=None) -> bool:
        self.stopped.append((job.unit_name(position), reason, state))
        self.graces.append(grace)
        return any(j is job and p == position for j, p, _ in self.running)

    def stop_all(self, reason, state) -> None:
        self.stopped.append((None, reason, state))

    def names(self) -> List[str]:
        """Unit names (``a`` or ``a:3``) of every start, in start order."""
        return [job.unit_name(position) for job, position, _ in self.started]


class Harness:
    """A manager with fake collaborators, and helpers to finish the tasks it starts."""

    def __init__(self, nodes=(("n0", (0, 1)),), clock=None, **manager_kwargs):
        self.clock = clock or FakeClock()
        self.loop = FakeLoop()
        self.executor = FakeExecutor()
        self.pool = pool(nodes)
        self.manager = Manager(self.pool, self.clock, self.loop, **manager_kwargs)
        self.manager.attach_executor(self.executor)

    # -- shortcuts
    @property
    def registry(self):
        return self.manager.registry

    def job(self, name: str):
        return self.manager.registry.get(name)

    def state(self, name: str) -> JobState:
        return self.job(name).state

    def submit(self, *descs) -> List[str]:
        names = self.manager.submit(list(descs))
        self.loop.run_pending()
        return names

    def running(self) -> List[Tuple[Any, Optional[int], Any]]:
        """Started but not yet finished, in start order."""
        return list(self.executor.running)

    def running_names(self) -> List[str]:
        return [job.unit_name(pos) for job, pos, _ in self.executor.running]

    def finish(self, unit: str, state: JobState = JobState.SUCCEED,
               message: Optional[str] = None, runtime=None, executing: bool = True) -> None:
        """End the running unit named ``unit`` (``a`` or ``a:3``) with ``state``."""
        for index, (job, position, allocation) in enumerate(self.executor.running):
            if job.unit_name(position) == unit:
                break
        else:
            raise AssertionError("%s is not running (running: %s)" % (unit, self.running_names()))
        if executing:
            self.manager.task_executing(job, position)
            self.clock.advance(1.0)
        del self.executor.running[index]
        self.manager.task_done(job, position, allocation,
                               Outcome(state, message, runtime or {"exit_code": "0"}))
        self.loop.run_pending()

    def finish_all_running(self, state: JobState = JobState.SUCCEED) -> None:
        for name in self.running_names():
            self.finish(name, state)

    def drain(self, state: JobState = JobState.SUCCEED, limit: int = 1_000_000) -> int:
        """Finish whatever runs until nothing is left running; returns how many finished."""
        count = 0
        while self.running():
            self.finish_all_running(state)
            count += 1
            if count > limit:
                raise AssertionError("drain did not converge")
        return count


def make_manager(nodes=(("n0", (0, 1)),), clock=None, **kwargs) -> Harness:
    """A ``Harness`` around a fresh ``Manager`` on ``nodes`` (name, core ids) pairs."""
    return Harness(nodes=nodes, clock=clock, **kwargs)
