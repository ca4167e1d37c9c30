"""Iterations of one job started together end, as reported, in their order (executor.py,
ORDER_*): upstream's test_resume waits for ``sleep:3`` of 4 equal `sleep 4s` iterations
and expects 0-2 to have ended too; on 2 loaded cores their ends come within ms of each
other in any order (it failed once in ~25 CI runs).

Here iteration 3 is made to end ~10 ms before iteration 2 (a shorter sleep): it is still
reported after it. Iterations shorter than ORDER_MIN_RUNTIME are reported as they end.
Real service, real processes; the order is the order of the jobs.report lines (written
when each end is reported).
"""

from qcgflow.runtime import executor

from support.jobs import job, submit
from support.services import run_service

FINISH = {"request": "control", "command": "finishAfterAllTasksDone"}


def _sweep(durations):
    """An iterative job of 4 whose iteration i sleeps ``durations[i]`` s."""
    script = "case ${it} in %s esac" % " ".join(
        "%d) sleep %s ;;" % (i, d) for i, d in enumerate(durations))
    return job("s", script=script, cores=1, iteration={"stop": len(durations)})


def _report_order(result):
    return [line["name"] for line in result.report_lines]


def test_an_iteration_ending_just_before_an_earlier_one_is_reported_after_it(tmp_path):
    assert executor.ORDER_MIN_RUNTIME <= 2.5
    # 3 ends ~10 ms before 2; its end may wait 1% of 2.99 s = 30 ms
    result = run_service(tmp_path, [submit(_sweep(["2.5", "2.5", "3.0", "2.99"])), FINISH],
                         nodes="4")
    assert result.returncode == 0, result.describe()
    assert _report_order(result)[-3:] == ["s:2", "s:3", "s"]


def test_short_iterations_are_reported_as_they_end(tmp_path):
    assert executor.ORDER_MIN_RUNTIME > 0.2
    result = run_service(tmp_path, [submit(_sweep(["0.05", "0.05", "0.4", "0.2"])), FINISH],
                         nodes="4")
    assert result.returncode == 0, result.describe()
    assert _report_order(result)[-3:] == ["s:3", "s:2", "s"]


def test_a_held_end_waits_at_most_its_share_of_the_run_time(tmp_path):
    """2 ends 0.4 s after 3: 3 is reported when its wait (30 ms) is over, before 2."""
    result = run_service(tmp_path, [submit(_sweep(["0.05", "0.05", "3.4", "3.0"])), FINISH],
                         nodes="4")
    assert result.returncode == 0, result.describe()
    assert _report_order(result)[-3:] == ["s:3", "s:2", "s"]
