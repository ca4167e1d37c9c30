"""``dependencies.afterAny`` (qcgflow's extension, Slurm's ``afterany``): the decision core.

An ``afterAny`` edge is released when the predecessor ends in ANY final state; an ``after``
edge still needs SUCCEED. Tested on the pure tracker and through the manager (fake executor).
"""

import pytest

from factories import job_desc, make_manager
from qcgflow.runtime.errors import InvalidRequest
from qcgflow.runtime.jobs import DependencyRef, JobState
from qcgflow.runtime.protocol import parse_job
from test_deps import World, summary

S = JobState
OK, FA, CA, OM = S.SUCCEED, S.FAILED, S.CANCELED, S.OMITTED


def any_of(*names):
    return {"dependencies": {"afterAny": list(names)}}


@pytest.mark.parametrize("state", [OK, FA, CA, OM])
def test_after_any_released_by_every_final_state(state):
    world = World()
    world.add("a")
    world.add("b", **any_of("a"))
    assert summary(world.finish("a", state)[0]) == (["b"], [], [])


@pytest.mark.parametrize("state", [FA, CA, OM])
def test_after_any_on_an_already_ended_job_is_ready(state):
    world = World()
    world.add("a")
    world.finish("a", state)
    _, decisions = world.add("b", **any_of("a"))
    assert summary(decisions) == (["b"], [], [])


def test_after_and_after_any_mixed_the_strict_edge_still_omits():
    world = World()
    world.add("a")
    world.add("c")
    world.add("b", dependencies={"after": ["a"], "afterAny": ["c"]})
    first = summary(world.finish("c", FA)[0])
    second = summary(world.finish("a", FA)[0])
    assert (first, second) == (([], [], []), ([], [("b", "dependency 'a' FAILED")], []))


def test_after_any_waits_for_every_iteration_of_a_failing_sweep():
    world = World()
    world.add("md", iteration={"stop": 3})
    world.add("table", **any_of("md"))
    steps = [world.finish("md", FA, position=1), world.finish("md", OK, position=0),
             world.finish("md", OK, position=2)]
    assert [[summary(d)[0] for d in step] for step in steps] == [[[]], [[]], [[], ["table"]]]


def test_after_any_fixed_iteration_released_by_failure():
    world = World()
    world.add("a", iteration={"stop": 4})
    world.add("b", **any_of("a:2"))
    assert summary(world.finish("a", FA, position=2)[0]) == (["b"], [], [])


def test_after_any_fixed_iteration_released_when_the_whole_job_is_canceled():
    world = World()
    world.add("a", iteration={"stop": 4})
    world.add("b", **any_of("a:2"))
    assert summary(world.finish("a", CA)[0]) == (["b"], [], [])


def test_after_any_per_iteration_runs_the_iteration_after_a_failure():
    world = World()
    world.add("a", iteration={"stop": 3})
    entry, _ = world.add("b", iteration={"stop": 3}, **any_of("a:${it}"))
    decisions = world.finish("a", FA, position=1)[0]
    assert (summary(decisions)[2], entry.peek()) == ([], 1)


def test_after_any_per_iteration_replays_failed_iterations():
    world = World()
    world.add("a", iteration={"stop": 2})
    world.finish("a", FA, position=1)
    entry, decisions = world.add("b", iteration={"stop": 2}, **any_of("a:${it}"))
    assert (summary(decisions), entry.peek()) == ((["b"], [], []), 1)


def test_protocol_parses_after_any_and_the_strict_edge_wins():
    spec = parse_job(job_desc("b", dependencies={"after": ["a"], "afterAny": ["a", "c:1"]}), {})
    assert spec.after == (DependencyRef("a"), DependencyRef("c", iteration=1, any_state=True))


@pytest.mark.parametrize("deps, words", [
    ({"afterAny": "a"}, "dependencies.afterAny must be a list of job names"),
    ({"afterAny": ["a:x"]}, "dependencies.afterAny: invalid iteration in 'a:x'"),
    ({"afterall": ["a"]}, "afterall"),
])
def test_protocol_rejects_bad_after_any(deps, words):
    with pytest.raises(InvalidRequest, match=words):
        parse_job(job_desc("b", dependencies=deps), {})


def test_manager_runs_the_fan_in_after_a_failed_member():
    h = make_manager()
    h.submit(job_desc("md", iteration={"stop": 3}), job_desc("table", **any_of("md")))
    h.finish("md:0")
    h.finish("md:1", FA, "exit code 1")
    before = h.running_names()
    h.finish("md:2")
    assert (before, h.state("md"), h.running_names()) == (["md:2"], FA, ["table"])
