"""Unit tests of qcgflow.runtime.deps: cycle checks and the O(edges) dependency tracker.

The tracker is tested on its own (registry + entries, decisions inspected) and through the
manager with a fake loop and executor (``factories.Harness``), which applies its decisions.
"""

import inspect
import sys

import pytest

from factories import cores_pool, job_desc, make_manager, make_registry, spec
from qcgflow.runtime import manager as manager_module
from qcgflow.runtime.deps import DependencyTracker, check_cycles
from qcgflow.runtime.errors import DependencyError
from qcgflow.runtime.jobs import JobState
from qcgflow.runtime.scheduler import JobEntry

S = JobState
OK, FA, CA, OM = S.SUCCEED, S.FAILED, S.CANCELED, S.OMITTED


# =============================================================================== check_cycles

def specs_of(edges):
    """``{"a": ["b"], ...}`` (a after b) -> parsed specs in that order."""
    return [spec(name, after=after) for name, after in edges.items()]


def cycle_error(edges) -> str:
    with pytest.raises(DependencyError) as info:
        check_cycles(specs_of(edges))
    return str(info.value)


def test_two_job_cycle_is_named():
    assert cycle_error({"a": ["b"], "b": ["a"]}) == "Dependency cycle: a -> b -> a"


@pytest.mark.parametrize("edges, members", [
    ({"a": ["c"], "b": ["a"], "c": ["b"]}, {"a", "b", "c"}),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, {"a", "b", "c"}),
    ({"a": ["b"], "b": ["c"], "c": ["d"], "d": ["a"]}, {"a", "b", "c", "d"}),
    ({"x": [], "a": ["x", "b"], "b": ["c"], "c": ["a"], "y": ["x"]}, {"a", "b", "c"}),
    ({"p": [], "q": ["p", "r"], "r": ["q"]}, {"q", "r"}),
])
def test_longer_cycles_are_named(edges, members):
    message = cycle_error(edges)
    names = message[len("Dependency cycle: "):].split(" -> ")
    assert (message.startswith("Dependency cycle: "), names[0] == names[-1], set(names)) == (
        True, True, members)


@pytest.mark.parametrize("after", [["a"], ["a:1"], ["a:${it}"], ["b", "a"]])
def test_self_dependency_is_rejected(after):
    desc_specs = [spec("b"), spec("a", iteration={"stop": 3}, after=after)]
    with pytest.raises(DependencyError, match=r"^Job 'a' depends on itself$"):
        check_cycles(desc_specs)


@pytest.mark.parametrize("edges", [
    {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},   # diamond
    {"a": ["ghost"], "b": ["a", "ghost"]},                # names outside the request
    {"c": ["b"], "b": ["a"], "a": []},                    # declared in reverse order
    {},
])
def test_acyclic_graphs_pass(edges):
    assert check_cycles(specs_of(edges)) is None


def test_cycle_through_iteration_references():
    specs = [spec("a", iteration={"stop": 2}, after=["b:${it}"]),
             spec("b", iteration={"stop": 2}, after=["a:1"])]
    with pytest.raises(DependencyError, match="^Dependency cycle: "):
        check_cycles(specs)


def test_long_chain_is_checked_without_recursion():
    specs = [spec("j0")] + [spec("j%d" % i, after=["j%d" % (i - 1)]) for i in range(1, 10_000)]
    assert check_cycles(specs) is None


# =============================================================================== tracker alone

class World:
    """A registry, a pool and a tracker; jobs are registered and wired like the manager does."""

    def __init__(self, cores=2):
        self.registry = make_registry()
        self.pool = cores_pool(cores)
        self.tracker = DependencyTracker()

    def add(self, name, **overrides):
        job = self.registry.add(spec(name, **overrides))
        entry = JobEntry(job, self.pool)
        return entry, self.tracker.register(entry, self.registry.get)

    def finish(self, name, state, position=None):
        """Move a unit to ``state`` through a legal path; return the tracker's decisions."""
        job = self.registry.get(name)
        path = {OK: [S.SCHEDULED, S.EXECUTING, OK], FA: [S.SCHEDULED, S.EXECUTING, FA],
                CA: [CA], OM: [OM]}[state]
        finals = []
        for step in path:
            finals = self.registry.transition(job, position, step)
        decisions = []
        for unit, pos in finals:
            decisions.append(self.tracker.finished(unit, pos, unit.state if pos is None
                                                   else unit.iteration_state(pos)))
        return decisions


def summary(decisions):
    """(ready names, omitted jobs with causes, omitted iterations) of one Decisions."""
    return ([e.job.name for e in decisions.ready],
            [(e.job.name, cause) for e, cause in decisions.omit_jobs],
            [(e.job.name, pos, cause) for e, pos, cause in decisions.omit_iterations])


def test_job_without_dependencies_is_ready_at_once():
    world = World()
    _, decisions = world.add("a")
    assert summary(decisions) == (["a"], [], [])


def test_dependant_waits_for_an_unfinished_job():
    world = World()
    world.add("a")
    entry, decisions = world.add("b", after=["a"])
    assert (summary(decisions), entry.pending) == (([], [], []), 1)


def test_dependant_released_when_the_job_succeeds():
    world = World()
    world.add("a")
    world.add("b", after=["a"])
    assert summary(world.finish("a", OK)[0]) == (["b"], [], [])


@pytest.mark.parametrize("state", [FA, CA, OM])
def test_dependant_omitted_when_the_job_does_not_succeed(state):
    world = World()
    world.add("a")
    world.add("b", after=["a"])
    assert summary(world.finish("a", state)[0]) == (
        [], [("b", "dependency 'a' %s" % state.name)], [])


def test_dependency_on_an_already_succeeded_job_is_ready():
    world = World()
    world.add("a")
    world.finish("a", OK)
    _, decisions = world.add("b", after=["a"])
    assert summary(decisions) == (["b"], [], [])


@pytest.mark.parametrize("state", [FA, CA, OM])
def test_dependency_on_an_already_failed_job_is_omitted(state):
    world = World()
    world.add("a")
    world.finish("a", state)
    _, decisions = world.add("b", after=["a"])
    assert summary(decisions) == ([], [("b", "dependency 'a' %s" % state.name)], [])


def test_unknown_dependency_is_omitted_with_the_reason():
    world = World()
    _, decisions = world.add("b", after=["ghost"])
    assert summary(decisions) == ([], [("b", "dependency 'ghost' is not a known job")], [])


def test_all_predecessors_must_succeed():
    world = World()
    world.add("a")
    world.add("c")
    world.add("b", after=["a", "c"])
    first = world.finish("a", OK)[0]
    second = world.finish("c", OK)[0]
    assert (summary(first)[0], summary(second)[0]) == ([], ["b"])


def test_whole_iterative_job_releases_after_its_last_iteration():
    world = World()
    world.add("a", iteration={"stop": 2})
    world.add("b", after=["a"])
    first = world.finish("a", OK, position=0)
    last = world.finish("a", OK, position=1)
    assert ([summary(d)[0] for d in first], [summary(d)[0] for d in last]) == ([[]], [[], ["b"]])


def test_fixed_iteration_releases_on_that_iteration():
    world = World()
    world.add("a", iteration={"start": 2, "stop": 6})
    world.add("b", after=["a:3"])
    other = world.finish("a", OK, position=0)       # a:2
    mine = world.finish("a", OK, position=1)        # a:3
    assert (summary(other[0])[0], summary(mine[0])[0]) == ([], ["b"])


def test_fixed_iteration_failure_omits_with_the_unit_name():
    world = World()
    world.add("a", iteration={"start": 2, "stop": 6})
    world.add("b", after=["a:3"])
    assert summary(world.finish("a", FA, position=1)[0])[1] == [("b", "dependency 'a:3' FAILED")]


def test_fixed_iteration_already_succeeded():
    world = World()
    world.add("a", iteration={"stop": 4})
    world.finish("a", OK, position=3)
    _, decisions = world.add("b", after=["a:3"])
    assert summary(decisions) == (["b"], [], [])


def test_fixed_iteration_already_failed():
    world = World()
    world.add("a", iteration={"stop": 4})
    world.finish("a", FA, position=3)
    _, decisions = world.add("b", after=["a:3"])
    assert summary(decisions) == ([], [("b", "dependency 'a:3' FAILED")], [])


def test_per_iteration_dependant_is_queued_with_nothing_ready():
    world = World()
    world.add("a", iteration={"stop": 3})
    entry, decisions = world.add("b", iteration={"stop": 3}, after=["a:${it}"])
    assert (summary(decisions)[0], entry.peek()) == (["b"], None)


def test_per_iteration_success_makes_that_iteration_ready():
    world = World()
    world.add("a", iteration={"stop": 3})
    entry, _ = world.add("b", iteration={"stop": 3}, after=["a:${it}"])
    world.finish("a", OK, position=1)
    assert entry.peek() == 1


def test_per_iteration_failure_omits_that_iteration():
    world = World()
    world.add("a", iteration={"stop": 3})
    world.add("b", iteration={"stop": 3}, after=["a:${it}"])
    decisions = world.finish("a", FA, position=1)[0]
    assert summary(decisions)[2] == [("b", 1, "dependency 'a:1' FAILED")]


def test_per_iteration_with_offset_ranges():
    world = World()
    world.add("a", iteration={"start": 0, "stop": 5})
    entry, _ = world.add("b", iteration={"start": 2, "stop": 4}, after=["a:${it}"])
    world.finish("a", OK, position=3)   # a:3 -> b:3, position 1 of b
    world.finish("a", OK, position=4)   # a:4 is outside b's range
    assert (entry.peek(), entry.ready_heap) == (1, [1])


def test_per_iteration_with_two_predecessors_waits_for_both():
    world = World()
    world.add("a", iteration={"stop": 2})
    world.add("c", iteration={"stop": 2})
    entry, _ = world.add("b", iteration={"stop": 2}, after=["a:${it}", "c:${it}"])
    world.finish("a", OK, position=0)
    before = entry.peek()
    world.finish("c", OK, position=0)
    assert (before, entry.peek()) == (None, 0)


def test_per_iteration_replays_iterations_finished_before_submit():
    world = World()
    world.add("a", iteration={"stop": 3})
    world.finish("a", OK, position=0)
    world.finish("a", FA, position=1)
    entry, decisions = world.add("b", iteration={"stop": 3}, after=["a:${it}"])
    assert (summary(decisions), entry.peek()) == (
        (["b"], [], [("b", 1, "dependency 'a:1' FAILED")]), 0)


def test_per_iteration_dependant_omitted_when_the_whole_predecessor_is_canceled():
    world = World()
    world.add("a", iteration={"stop": 3})
    world.add("b", iteration={"stop": 3}, after=["a:${it}"])
    decisions = world.finish("a", CA)[0]
    assert summary(decisions)[1] == [("b", "dependency 'a' CANCELED")]


def test_finished_pops_the_edges_it_resolved():
    world = World()
    world.add("a")
    world.add("b", after=["a"])
    world.finish("a", OK)
    assert world.tracker.finished(world.registry.get("a"), None, OK).ready == []


# =============================================================================== submit-time validation

@pytest.mark.parametrize("descs, message", [
    ([job_desc("a", iteration={"start": 2, "stop": 6}), job_desc("b", after=["a:6"])],
     "Job 'b': dependency 'a:6' names an iteration that job 'a' does not have"),
    ([job_desc("a", iteration={"start": 2, "stop": 6}), job_desc("b", after=["a:1"])],
     "Job 'b': dependency 'a:1' names an iteration that job 'a' does not have"),
    ([job_desc("a"), job_desc("b", after=["a:0"])],
     "Job 'b': dependency 'a:0' names an iteration that job 'a' does not have"),
    ([job_desc("a", iteration={"stop": 3}), job_desc("b", after=["a:${it}"])],
     "Job 'b': per-iteration dependency 'a:${it}' needs job 'b' to be iterative"),
    ([job_desc("a"), job_desc("b", iteration={"stop": 3}, after=["a:${it}"])],
     "Job 'b': per-iteration dependency 'a:${it}' needs iterations 0..2 in job 'a'"),
    ([job_desc("a", iteration={"stop": 3}), job_desc("b", iteration={"stop": 4},
                                                     after=["a:${it}"])],
     "Job 'b': per-iteration dependency 'a:${it}' needs iterations 0..3 in job 'a'"),
    ([job_desc("a", iteration={"start": 1, "stop": 3}),
      job_desc("b", iteration={"start": 0, "stop": 2}, after=["a:${it}"])],
     "Job 'b': per-iteration dependency 'a:${it}' needs iterations 0..1 in job 'a'"),
])
def test_iteration_reference_range_errors(descs, message):
    h = make_manager()
    with pytest.raises(DependencyError) as info:
        h.manager.submit(descs)
    assert (str(info.value), len(h.registry)) == (message, 0)


def test_iteration_reference_to_a_registered_job_is_validated():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 2}))
    with pytest.raises(DependencyError, match="dependency 'a:2' names an iteration"):
        h.manager.submit([job_desc("b", after=["a:2"])])


def test_iteration_reference_to_an_unknown_job_is_omitted_not_rejected():
    h = make_manager()
    h.submit(job_desc("b", after=["ghost:3"]))
    assert (h.state("b"), h.job("b").messages) == (OM, "dependency 'ghost' is not a known job")


@pytest.mark.parametrize("descs, words", [
    ([job_desc("a", after=["b"]), job_desc("b", after=["a"])], "Dependency cycle: a -> b -> a"),
    ([job_desc("a", after=["a"])], "Job 'a' depends on itself"),
])
def test_cycles_rejected_at_submit_with_nothing_registered(descs, words):
    h = make_manager()
    with pytest.raises(DependencyError) as info:
        h.manager.submit(descs)
    assert (str(info.value), len(h.registry), h.executor.started) == (words, 0, [])


# =============================================================================== through the manager

def test_dependant_starts_after_its_predecessor_succeeds():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b", after=["a"]))
    before = h.running_names()
    h.finish("a")
    assert (before, h.running_names()) == (["a"], ["b"])


def test_dependant_omitted_with_the_cause():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b", after=["a"]))
    h.finish("a", FA, "exit code 1")
    assert (h.state("b"), h.job("b").messages) == (OM, "dependency 'a' FAILED")


def test_dependency_on_an_already_failed_registered_job():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a", FA)
    h.submit(job_desc("b", after=["a"]))
    assert (h.state("b"), h.job("b").messages, h.manager.unfinished) == (
        OM, "dependency 'a' FAILED", 0)


def test_dependency_on_an_already_succeeded_registered_job():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a")
    h.submit(job_desc("b", after=["a"]))
    assert h.running_names() == ["b"]


def test_unknown_dependency_omitted_and_counted_finished():
    h = make_manager()
    h.submit(job_desc("b", after=["ghost"]))
    assert (h.state("b"), h.job("b").messages, h.manager.unfinished, h.executor.started) == (
        OM, "dependency 'ghost' is not a known job", 0, [])


def test_dependency_declared_later_in_the_same_request():
    h = make_manager()
    h.submit(job_desc("b", after=["a"]), job_desc("a"))
    assert h.running_names() == ["a"]


def test_fixed_iteration_dependant_starts_before_the_rest_of_the_job():
    h = make_manager(nodes=[("n0", [0, 1, 2])])
    h.submit(job_desc("a", iteration={"stop": 5}, resources={"numCores": {"exact": 2}}),
             job_desc("b", after=["a:1"]))
    h.finish("a:0")
    before = h.running_names()
    h.finish("a:1")
    assert (before, h.running_names(), h.state("a")) == (["a:1"], ["a:2", "b"], S.EXECUTING)


def test_whole_iterative_job_failure_omits_its_dependants():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 3}), job_desc("b", after=["a"]))
    h.finish("a:0")
    h.finish("a:1", FA)
    h.drain()
    assert (h.state("a"), h.state("b"), h.job("b").messages) == (FA, OM, "dependency 'a' FAILED")


class TestPerIteration:
    """``after: ["a:${it}"]``: a:1 fails -> b:1 OMITTED, other b iterations run, b FAILED."""

    @staticmethod
    def run(nodes):
        h = make_manager(nodes=nodes)
        h.submit(job_desc("a", iteration={"stop": 3}),
                 job_desc("b", iteration={"stop": 3}, after=["a:${it}"]))
        h.finish("a:0")
        h.finish("a:1", FA, "exit code 1")
        h.drain()
        return h

    def test_failed_iteration_omits_the_matching_iteration(self):
        h = self.run([("n0", [0])])
        b = h.job("b")
        assert (b.iteration_state(1), b.record(1).messages) == (OM, "dependency 'a:1' FAILED")

    def test_other_iterations_run(self):
        h = self.run([("n0", [0])])
        assert sorted(n for n in h.executor.names() if n.startswith("b")) == ["b:0", "b:2"]

    def test_parent_ends_failed(self):
        h = self.run([("n0", [0])])
        assert (h.state("a"), h.state("b"), h.manager.unfinished) == (FA, FA, 0)

    @pytest.mark.parametrize("cores", [2, 3, 4])
    def test_same_outcome_with_more_cores(self, cores):
        h = self.run([("n0", list(range(cores)))])
        b = h.job("b")
        assert ([b.iteration_state(i) for i in range(3)], b.state, h.manager.unfinished) == (
            [OK, OM, OK], FA, 0)


def test_per_iteration_dependant_runs_iterations_that_become_ready_later():
    """b:0 starts while a:1 still runs; b:1 must start once a:1 succeeds."""
    h = make_manager(nodes=[("n0", [0, 1])])
    h.submit(job_desc("a", iteration={"stop": 2}),
             job_desc("b", iteration={"stop": 2}, after=["a:${it}"]))
    h.finish("a:0")          # b:0 starts on the freed core, b has nothing else ready now
    h.finish("a:1")
    h.drain()
    assert (h.executor.names(), h.state("b"), h.manager.unfinished) == (
        ["a:0", "a:1", "b:0", "b:1"], OK, 0)


def test_per_iteration_all_omitted_parent_fails_and_cascades():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 2}),
             job_desc("b", iteration={"stop": 2}, after=["a:${it}"]),
             job_desc("c", after=["b"]))
    h.finish("a:0", FA)
    h.finish("a:1", FA)
    assert (h.state("b"), h.state("c"), h.job("c").messages, h.manager.unfinished) == (
        FA, OM, "dependency 'b' FAILED", 0)


def test_per_iteration_omission_cascades_iteration_by_iteration():
    h = make_manager(nodes=[("n0", [0])])
    h.submit(job_desc("a", iteration={"stop": 3}),
             job_desc("b", iteration={"stop": 3}, after=["a:${it}"]),
             job_desc("c", iteration={"stop": 3}, after=["b:${it}"]))
    h.finish("a:0")
    h.finish("a:1", FA)
    h.drain()
    c = h.job("c")
    assert ([c.iteration_state(i) for i in range(3)], c.record(1).messages) == (
        [OK, OM, OK], "dependency 'b:1' OMITTED")


def test_per_iteration_on_a_predecessor_omitted_later_in_the_same_request():
    h = make_manager()
    h.submit(job_desc("b", iteration={"stop": 3}, after=["a:${it}"]),
             job_desc("a", iteration={"stop": 3}, after=["ghost"]))
    # a whole omitted iterative job ends every iteration OMITTED, so each iteration of the
    # per-iteration dependant is omitted in turn and its parent ends FAILED (job-states.md)
    a, b = h.job("a"), h.job("b")
    assert (a.state, a.messages, [a.iteration_state(i) for i in range(3)], (a.finished, a.failed)
            ) == (OM, "dependency 'ghost' is not a known job", [OM] * 3, (3, 3))
    assert (b.state, [b.iteration_state(i) for i in range(3)], b.record(2).messages,
            h.manager.unfinished) == (FA, [OM] * 3, "dependency 'a:2' OMITTED", 0)


# =============================================================================== scale

def chain(n, prefix="j"):
    return [job_desc(prefix + "0")] + [job_desc("%s%d" % (prefix, i),
                                                after=["%s%d" % (prefix, i - 1)])
                                       for i in range(1, n)]


def test_omission_cascade_down_a_10000_chain_is_iterative():
    h = make_manager()
    h.submit(*chain(10_000))
    # far below what a recursive cascade of 10,000 levels would need
    limit = len(inspect.stack(0)) + 150
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        h.finish("j0", FA)
    finally:
        sys.setrecursionlimit(old)
    counts = h.registry.counts()
    assert (counts[FA], counts[OM], h.manager.unfinished) == (1, 9_999, 0)


def test_cascade_messages_name_the_direct_predecessor():
    h = make_manager()
    h.submit(*chain(4))
    h.finish("j0", FA)
    assert [h.job("j%d" % i).messages for i in (1, 2, 3)] == [
        "dependency 'j0' FAILED", "dependency 'j1' OMITTED", "dependency 'j2' OMITTED"]


class CountingEntry(JobEntry):
    """A JobEntry that counts every read and write of its ``pending`` counter."""

    __slots__ = ()
    touches = 0

    def _get(self):
        CountingEntry.touches += 1
        return JobEntry.pending.__get__(self)

    def _set(self, value):
        CountingEntry.touches += 1
        JobEntry.pending.__set__(self, value)

    pending = property(_get, _set)


def touches_to_run_a_chain(monkeypatch, waiting):
    """Counter touches while a 20-job chain runs next to ``waiting`` blocked dependants."""
    monkeypatch.setattr(manager_module, "JobEntry", CountingEntry)
    h = make_manager()
    h.submit(job_desc("blocker"), *[job_desc("w%d" % i, after=["blocker"])
                                    for i in range(waiting)])
    h.submit(*chain(20, prefix="c"))
    CountingEntry.touches = 0
    for i in range(20):
        h.finish("c%d" % i)
    assert h.state("c19") is OK
    return CountingEntry.touches


def test_unrelated_waiting_jobs_are_never_touched(monkeypatch):
    """Cost of resolving the chain does not depend on how many jobs wait elsewhere."""
    few = touches_to_run_a_chain(monkeypatch, 10)
    many = touches_to_run_a_chain(monkeypatch, 2_000)
    assert many == few


def test_fan_out_release_touches_each_edge_a_bounded_number_of_times(monkeypatch):
    monkeypatch.setattr(manager_module, "JobEntry", CountingEntry)
    h = make_manager(nodes=[("n0", [0])])
    h.submit(job_desc("root"), *[job_desc("d%d" % i, after=["root"]) for i in range(1_000)])
    CountingEntry.touches = 0
    h.finish("root")
    assert CountingEntry.touches <= 5 * 1_000


def test_chain_resolution_work_is_linear(monkeypatch):
    calls = {"n": 0}
    original = JobEntry.peek

    def counting_peek(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(JobEntry, "peek", counting_peek)
    work = {}
    for n in (200, 2_000):
        calls["n"] = 0
        h = make_manager()
        h.submit(*chain(n))
        h.drain()
        assert h.registry.counts()[OK] == n
        work[n] = calls["n"]
    assert work[2_000] <= 11 * work[200]
