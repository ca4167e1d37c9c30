"""Unit tests of qcgflow.runtime.manager.Manager with a fake loop, executor and clock.

Tasks never run: the fake executor records starts and the test ends them through
``manager.task_executing`` / ``manager.task_done`` (see ``factories.Harness``).
"""

from datetime import datetime

import pytest

from factories import job_desc, make_manager
from qcgflow.runtime.clock import FakeClock
from qcgflow.runtime.errors import (DependencyError, InvalidRequest, NotEnoughResources,
                                    RuntimeLayerError)
from qcgflow.runtime.executor import Outcome
from qcgflow.runtime.jobs import JobState

S = JobState
Q, SC, EX, OK, FA, CA, OM = (S.QUEUED, S.SCHEDULED, S.EXECUTING, S.SUCCEED, S.FAILED,
                             S.CANCELED, S.OMITTED)


def submit_error(h, descs) -> RuntimeLayerError:
    with pytest.raises(RuntimeLayerError) as info:
        h.manager.submit(descs)
    return info.value


# =============================================================================== submit

def test_submit_returns_names_in_order():
    h = make_manager()
    assert h.submit(job_desc("b"), job_desc("a"), job_desc("c")) == ["b", "a", "c"]


def test_submit_registers_queued_jobs_before_the_loop_runs():
    h = make_manager()
    h.manager.submit([job_desc("a"), job_desc("b")])
    assert ([j.state for j in h.registry], h.executor.started, h.manager.unfinished) == (
        [Q, Q], [], 2)


def test_scheduling_pass_is_coalesced():
    h = make_manager()
    h.manager.submit([job_desc("a")])
    h.manager.submit([job_desc("b")])
    h.manager.kick()
    assert len(h.loop.pending) == 1


def test_scheduling_pass_starts_what_fits():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b"), job_desc("c"))
    assert (h.running_names(), h.state("a"), h.state("c")) == (["a", "b"], SC, Q)


def test_task_done_releases_cores_and_starts_the_next():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b"), job_desc("c"))
    h.finish("a")
    assert (h.running_names(), h.pool.free_cores) == (["b", "c"], 0)


def test_all_done_releases_every_core():
    h = make_manager()
    h.submit(*[job_desc("j%d" % i) for i in range(5)])
    h.drain()
    assert (h.pool.free_cores, h.manager.unfinished) == (2, 0)


BAD_LAST_JOBS = [
    pytest.param(job_desc("z", bogus=1), InvalidRequest, id="unknown-key"),
    pytest.param(job_desc("z", execution=None), InvalidRequest, id="missing-execution"),
    pytest.param(job_desc("z", execution={"args": ["x"]}), InvalidRequest, id="no-exec"),
    pytest.param(job_desc("a"), InvalidRequest, id="duplicate"),
    pytest.param(job_desc("z", resources={"numCores": {"exact": 8}}), NotEnoughResources,
                 id="never-fits"),
    pytest.param(job_desc("z", after=["z"]), DependencyError, id="self-dependency"),
    pytest.param(job_desc("z", after=["a:5"]), DependencyError, id="bad-iteration-ref"),
    pytest.param(job_desc("z", execution={"exec": "x", "model": "srunmpi"}), InvalidRequest,
                 id="model-unavailable"),
    pytest.param("z", InvalidRequest, id="not-a-dict"),
]


@pytest.mark.parametrize("bad, error", BAD_LAST_JOBS)
def test_submit_is_atomic(bad, error):
    """A bad job at the end of a request registers nothing of the request."""
    h = make_manager()
    with pytest.raises(error):
        h.manager.submit([job_desc("a"), job_desc("b", after=["a"]), bad])
    h.loop.run_pending()
    assert (len(h.registry), h.manager.entries, h.manager.unfinished, h.executor.started,
            len(h.manager.scheduler.queue), h.pool.free_cores) == (0, {}, 0, [], 0, 2)


@pytest.mark.parametrize("bad, error", BAD_LAST_JOBS)
def test_names_of_a_rejected_request_stay_free(bad, error):
    h = make_manager()
    with pytest.raises(error):
        h.manager.submit([job_desc("a"), job_desc("b", after=["a"]), bad])
    assert h.submit(job_desc("a"), job_desc("b", after=["a"])) == ["a", "b"]


def test_rejected_request_leaves_no_edges_on_registered_jobs():
    h = make_manager(nodes=[("n0", [0])])
    h.submit(job_desc("x"))
    with pytest.raises(NotEnoughResources):
        h.manager.submit([job_desc("a", after=["x"]), job_desc("z", resources={
            "numCores": {"exact": 8}})])
    h.finish("x")
    assert (h.executor.names(), h.manager.unfinished) == (["x"], 0)


def test_duplicate_name_within_one_request():
    h = make_manager()
    assert str(submit_error(h, [job_desc("a"), job_desc("a")])) == "Job a already exist"


def test_duplicate_name_across_requests():
    h = make_manager()
    h.submit(job_desc("a"))
    assert str(submit_error(h, [job_desc("a")])) == "Job a already exist"


def test_duplicate_name_of_a_finished_job():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a")
    assert str(submit_error(h, [job_desc("a")])) == "Job a already exist"


def test_duplicate_after_substitution():
    h = make_manager()
    assert str(submit_error(h, [job_desc("a_${sname}"), job_desc("a_local")])) == \
        "Job a_local already exist"


def test_name_reusable_after_remove():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a", FA)
    h.manager.remove(["a"])
    h.submit(job_desc("a"))
    assert (h.state("a"), h.executor.names()) == (SC, ["a", "a"])


@pytest.mark.parametrize("nodes, resources", [
    ([("n0", [0, 1])], {"numCores": {"exact": 8}}),
    ([("n0", [0, 1])], {"numNodes": {"exact": 2}}),
    ([("n0", [0, 1])], {"numCores": {"min": 4}}),
    ([("n0", [0, 1]), ("n1", [0, 1])], {"numCores": {"exact": 3}, "numNodes": {"exact": 1}}),
    ([("n0", [0, 1]), ("n1", [0, 1])], {"numNodes": {"min": 3}}),
    ([("n0", [0, 1]), ("n1", [0, 1])], {"numCores": {"exact": 5}}),
])
def test_job_that_can_never_fit_is_rejected_at_submit(nodes, resources):
    h = make_manager(nodes=nodes)
    error = submit_error(h, [job_desc("a", resources=resources)])
    assert (type(error), str(error), len(h.registry)) == (
        NotEnoughResources, "Not enough resources for job a", 0)


def test_iterative_job_whose_plan_can_never_fit_is_rejected():
    h = make_manager()
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 3, "scheduler": {"name": "split-into"}}})
    assert str(submit_error(h, [desc])) == "Not enough resources for job a"


@pytest.mark.parametrize("resources", [
    {"numCores": {"exact": 3}},
    {"numCores": {"exact": 2}, "numNodes": {"exact": 2}},
    {"numNodes": {"exact": 2}},
    {"numCores": {"min": 1, "max": 100}},
])
def test_job_that_fits_on_an_empty_pool_is_accepted(resources):
    h = make_manager(nodes=[("n0", [0, 1]), ("n1", [0, 1])])
    assert h.submit(job_desc("a", resources=resources)) == ["a"]


def test_job_larger_than_the_free_cores_waits():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b", resources={"numCores": {"exact": 2}}))
    before = h.running_names()
    h.finish("a")
    assert (before, h.running_names()) == (["a"], ["b"])


def test_unavailable_model_message():
    h = make_manager()
    error = submit_error(h, [job_desc("a", execution={"exec": "x", "model": "srunmpi"})])
    assert str(error) == ("Job 'a': execution model 'srunmpi' is not available in this mode "
                          "(available: default, threads, openmpi, intelmpi)")


def test_models_can_be_widened():
    h = make_manager(models=("default", "threads", "srunmpi"))
    assert h.submit(job_desc("a", execution={"exec": "x", "model": "srunmpi"})) == ["a"]


def test_iteration_count_too_large_to_hold_is_a_clear_error():
    """10**13 iterations cannot be stored: a user-facing error, not a MemoryError."""
    h = make_manager()
    try:
        error = submit_error(h, [job_desc("a", iteration={"stop": 10 ** 13})])
    except MemoryError:
        pytest.fail("MemoryError escaped from submit")
    assert (isinstance(error, InvalidRequest), len(h.registry)) == (True, 0)


# =============================================================================== submit variables

def test_rcnt_counts_requests():
    h = make_manager()
    first = h.submit(job_desc("a_${rcnt}"))
    second = h.submit(job_desc("b_${rcnt}"), job_desc("c_${rcnt}"))
    assert first + second == ["a_1", "b_2", "c_2"]


def test_uniq_differs_between_jobs():
    h = make_manager()
    h.submit(job_desc("a", execution={"exec": "x", "args": ["${uniq}"]}),
             job_desc("b", execution={"exec": "x", "args": ["${uniq}"]}))
    uniqs = [h.job(n).spec.execution.args[0] for n in ("a", "b")]
    assert uniqs[0] != uniqs[1] and "$" not in uniqs[0]


def test_sname_is_the_cluster_name():
    h = make_manager(cluster_name="eagle")
    assert h.submit(job_desc("a_${sname}")) == ["a_eagle"]


def test_date_and_time_come_from_the_injected_clock():
    clock = FakeClock(1_700_000_000.0)
    h = make_manager(clock=clock)
    h.submit(job_desc("a", execution={"exec": "x", "args": ["${date}", "${time}",
                                                           "${dateTime}"]}))
    when = datetime.fromtimestamp(1_700_000_000.0)
    assert h.job("a").spec.execution.args == (
        when.strftime("%Y-%m-%d"), when.strftime("%H-%M-%S"),
        when.strftime("%Y-%m-%d_%H-%M-%S"))


# =============================================================================== outcomes and history

def test_history_timestamps_from_the_fake_clock():
    clock = FakeClock(100.0)
    h = make_manager(clock=clock)
    h.submit(job_desc("a"))
    clock.advance(2)
    h.finish("a")   # executing at 102, then one second later done
    assert h.job("a").history == [(Q, 100.0), (SC, 100.0), (EX, 102.0), (OK, 103.0)]


def test_runtime_of_a_job_is_recorded():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a", runtime={"exit_code": "0", "pid": "42"})
    assert h.job("a").runtime == {"exit_code": "0", "pid": "42"}


def test_runtime_of_an_iteration_is_recorded():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 2}))
    h.finish("a:1", FA, "exit code 3", runtime={"exit_code": "3"})
    record = h.job("a").record(1)
    assert (record.runtime, record.messages, record.state) == ({"exit_code": "3"},
                                                               "exit code 3", FA)


def test_failure_message_is_recorded():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a", FA, "exit code 1")
    assert (h.state("a"), h.job("a").messages) == (FA, "exit code 1")


def test_launch_failure_goes_from_scheduled_to_failed():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a", FA, "[Errno 2] No such file or directory: 'nope'", executing=False)
    assert [state for state, _ in h.job("a").history] == [Q, SC, FA]


def test_canceled_job_omits_its_dependants():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b", after=["a"]))
    h.finish("a", CA, "canceled")
    assert (h.state("a"), h.state("b"), h.job("b").messages) == (
        CA, OM, "dependency 'a' CANCELED")


def test_iterative_job_succeeds_when_all_iterations_do():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 5}))
    h.drain()
    job = h.job("a")
    assert (job.state, job.finished, job.failed) == (OK, 5, 0)


def test_iterative_job_fails_when_one_iteration_does():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 4}))
    h.finish("a:1", FA)
    h.drain()
    job = h.job("a")
    assert (job.state, job.finished, job.failed, job.messages) == (
        FA, 4, 1, "1 of 4 iterations did not succeed")


def test_canceled_iterations_make_the_parent_fail():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 2}))
    h.finish("a:0", CA)
    h.drain()
    assert h.state("a") is FA


def test_whole_cancel_ends_the_parent_only_after_its_running_iterations():
    """Upstream's Job.set_state: a canceled job becomes CANCELED when its last iteration
    ends, so wait4 never returns while iterations still run (issue 20)."""
    h = make_manager()  # 2 cores: a:0 and a:1 run, a:2..a:4 queued
    h.submit(job_desc("a", iteration={"stop": 5}))
    assert h.manager.cancel(["a"]) == 6
    h.loop.run_pending()
    job = h.job("a")
    assert (job.state, [job.iteration_state(i) for i in range(5)], h.executor.stopped) == (
        SC, [SC, SC, CA, CA, CA], [("a:0", "canceled by user", CA),
                                   ("a:1", "canceled by user", CA)])
    assert (h.manager.cancel(["a"]), h.running_names()) == (0, ["a:0", "a:1"])
    h.finish("a:0", CA, "canceled by user")
    assert (job.state, job.finished) == (EX, 4)
    h.finish("a:1", OK)  # ended on its own before the signal landed
    assert (job.state, job.messages, job.finished, job.failed, h.manager.unfinished) == (
        CA, "canceled by user", 5, 4, 0)
    assert [state for state, _ in job.history] == [Q, SC, EX, CA]


@pytest.mark.parametrize("options, grace, expected", [
    ({}, None, 10.0),                      # the default grace (--cancel-grace not given)
    ({"cancel_grace": 1.5}, None, 1.5),    # the service's --cancel-grace 1.5
    ({"cancel_grace": 1.5}, 0.0, 0.0),     # cancelJob with force: true
], ids=["default", "configured", "forced"])
def test_a_running_unit_is_stopped_with_the_managers_cancel_grace(options, grace, expected):
    h = make_manager(**options)
    h.submit(job_desc("a"))
    assert h.running_names() == ["a"]
    h.manager.cancel(["a"], grace=grace)
    assert (h.executor.stopped, h.executor.graces) == ([("a", "canceled by user", CA)],
                                                       [expected])


def test_whole_cancel_of_a_queued_iterative_job_ends_it_at_once():
    h = make_manager(nodes=[("n0", [0])])
    h.submit(job_desc("x"), job_desc("a", iteration={"stop": 3}))
    h.manager.cancel(["a"])
    job = h.job("a")
    assert (job.state, [job.iteration_state(i) for i in range(3)], job.finished, job.failed,
            h.executor.stopped) == (CA, [CA] * 3, 3, 3, [])
    h.finish("x")
    assert h.executor.names() == ["x"]


def test_whole_cancel_after_every_iteration_ended_keeps_the_outcome():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 2}), job_desc("b"))
    h.finish("a:0")
    h.finish("a:1")
    assert (h.manager.cancel(["a"]), h.state("a")) == (0, OK)


def test_whole_cancel_omits_per_iteration_dependants_iteration_by_iteration():
    """upstream test_api_iter_cancel_dependant_job_whole: j2 and j3 end FAILED with every
    iteration OMITTED (not OMITTED with QUEUED iterations, on which a wait hangs)."""
    h = make_manager(nodes=[("n0", [0, 1, 2, 3])])
    it = {"start": 2, "stop": 12}
    h.submit(job_desc("j1", iteration=it), job_desc("j2", iteration=it, after=["j1:${it}"]),
             job_desc("j3", iteration=it, after=["j2:${it}"]))
    assert h.running_names() == ["j1:2", "j1:3", "j1:4", "j1:5"]
    h.manager.cancel(["j1"])
    h.loop.run_pending()
    j1, j2, j3 = h.job("j1"), h.job("j2"), h.job("j3")
    assert (j1.state, j2.state, j3.state, j1.finished) == (SC, Q, Q, 6)
    h.finish_all_running(CA)
    assert h.running_names() == []
    for job in (j1, j2, j3):
        assert (job.finished, job.failed) == (10, 10), job.name
    assert (j1.state, j2.state, j3.state) == (CA, FA, FA)
    assert [j2.iteration_state(i) for i in range(10)] == [OM] * 10
    assert [j3.iteration_state(i) for i in range(10)] == [OM] * 10
    assert (j2.record(3).messages, j3.record(3).messages, h.manager.unfinished) == (
        "dependency 'j1:5' CANCELED", "dependency 'j2:5' OMITTED", 0)


def test_whole_cancel_lets_dependant_iterations_of_finished_ones_run():
    """As upstream: only the dependant iterations whose predecessor iteration did not
    succeed are omitted."""
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 4}),
             job_desc("b", iteration={"stop": 4}, after=["a:${it}"]))
    h.finish("a:0")
    h.manager.cancel(["a"])
    h.drain(CA)
    b = h.job("b")
    assert (h.state("a"), [b.iteration_state(i) for i in range(4)], b.state) == (
        CA, [CA, OM, OM, OM], FA)


def test_on_idle_called_once_when_everything_ended():
    h = make_manager()
    calls = []
    h.manager.on_idle.append(lambda: calls.append(h.manager.unfinished))
    h.submit(job_desc("a"), job_desc("b", after=["a"]))
    h.finish("a")
    before = list(calls)
    h.finish("b")
    assert (before, calls) == ([], [0])


def test_queue_position_of_queued_and_waiting_jobs():
    h = make_manager(nodes=[("n0", [0])])
    h.submit(job_desc("a"), job_desc("b"), job_desc("c", after=["a"]), job_desc("d"))
    positions = [h.manager.queue_position(h.job(n)) for n in "abcd"]
    assert positions == [None, 0, None, 1]


def test_finish_all_asks_the_executor_to_cancel():
    h = make_manager()
    h.manager.finish_all("finish requested")
    assert h.executor.stopped == [(None, "finish requested", CA)]


def test_outcome_runtime_is_copied():
    h = make_manager()
    h.submit(job_desc("a"))
    job, position, allocation = h.running()[0]
    runtime = {"exit_code": "0"}
    h.manager.task_executing(job, position)
    h.executor.running.clear()
    h.manager.task_done(job, position, allocation, Outcome(OK, None, runtime))
    runtime["exit_code"] = "changed"
    assert job.runtime == {"exit_code": "0"}


# =============================================================================== remove

def test_remove_a_finished_job():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b"))
    h.finish("a")
    h.finish("b", FA)
    assert (h.manager.remove(["a", "b"]), len(h.registry)) == (2, 0)


def test_remove_an_omitted_job():
    h = make_manager()
    h.submit(job_desc("b", after=["ghost"]))
    assert (h.manager.remove(["b"]), "b" in h.registry) == (1, False)


def test_remove_an_unknown_job():
    h = make_manager()
    with pytest.raises(InvalidRequest, match=r"^Job 'nope' doesn't exist$"):
        h.manager.remove(["nope"])


@pytest.mark.parametrize("state, setup", [
    (SC, lambda h: None),
    (EX, lambda h: h.manager.task_executing(h.job("a"), None)),
])
def test_remove_an_active_job_is_refused(state, setup):
    h = make_manager()
    h.submit(job_desc("a"))
    setup(h)
    with pytest.raises(InvalidRequest) as info:
        h.manager.remove(["a"])
    assert (str(info.value), h.state("a")) == (
        "Job 'a' is %s: only finished jobs can be removed" % state.name, state)


def test_remove_a_waiting_job_is_refused():
    h = make_manager()
    h.submit(job_desc("a"), job_desc("b", after=["a"]))
    with pytest.raises(InvalidRequest, match="^Job 'b' is QUEUED: only finished jobs"):
        h.manager.remove(["b"])


def test_remove_is_all_or_nothing():
    h = make_manager()
    h.submit(job_desc("a"))
    h.finish("a")
    with pytest.raises(InvalidRequest):
        h.manager.remove(["a", "nope"])
    assert "a" in h.registry


def test_remove_an_iterative_job_with_running_iterations_is_refused():
    h = make_manager()
    h.submit(job_desc("a", iteration={"stop": 3}))
    h.finish("a:0")
    with pytest.raises(InvalidRequest, match="^Job 'a' is EXECUTING"):
        h.manager.remove(["a"])
