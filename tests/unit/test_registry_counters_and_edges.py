"""The registry's running counters agree with a recount after any mix of events."""

import pytest

from factories import job_desc, make_manager
from qcgflow.runtime.jobs import JobState


def recount(registry):
    states = {state: 0 for state in JobState}
    total = finished = failed = active = 0
    for job in registry:
        states[job.state] += 1
        if job.iterative:
            codes = [job.iteration_state(p) for p in range(job.total)]
        else:
            codes = [job.state]
        total += len(codes)
        finished += sum(s.is_final for s in codes)
        failed += sum(s.is_final and s is not JobState.SUCCEED for s in codes)
        active += sum(s in (JobState.SCHEDULED, JobState.EXECUTING) for s in codes)
    return states, (total, finished, failed, active)


def counters(registry):
    stats = registry.unit_stats
    return registry.counts(), (stats.total, stats.finished, stats.failed, stats.active)


def scenario():
    harness = make_manager(nodes=(("n0", (0, 1, 2)),))
    harness.submit(job_desc("a"), job_desc("b", after=["a"]),
                   job_desc("it", iteration={"stop": 5}),
                   job_desc("per", iteration={"stop": 5}, after=["it:${it}"]),
                   job_desc("q", resources={"numCores": {"exact": 3}}))
    yield harness
    harness.finish("a", JobState.FAILED)
    yield harness
    harness.finish("it:0")
    harness.finish("it:1", JobState.FAILED)
    yield harness
    harness.manager.cancel(["it"])
    yield harness
    harness.drain()
    yield harness
    harness.manager.remove(["a", "b"])
    yield harness


@pytest.mark.parametrize("step", range(6))
def test_counters_match_a_recount(step):
    harness = list(zip(range(step + 1), scenario()))[-1][1]
    assert counters(harness.registry) == recount(harness.registry)


def test_waiter_on_one_iteration_of_an_omitted_job_is_omitted():
    harness = make_manager()
    harness.submit(job_desc("x"), job_desc("a", iteration={"stop": 5}, after=["x"]),
                   job_desc("b", after=["a:3"]))
    harness.finish("x", JobState.FAILED)
    assert (harness.state("a"), harness.state("b")) == (JobState.OMITTED, JobState.OMITTED)


def test_omission_names_the_iteration_it_waited_for():
    harness = make_manager()
    harness.submit(job_desc("x"), job_desc("a", iteration={"stop": 5}, after=["x"]),
                   job_desc("b", after=["a:3"]))
    harness.finish("x", JobState.FAILED)
    assert harness.job("b").messages == "dependency 'a:3' OMITTED"
