"""retries=n (run and the dynamic API) and wt on Python tasks, end to end.

A flaky task counts its attempts with files in a directory of its own and fails until
enough attempts were made: deterministic, no clock.
"""

import os

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, TaskFailed

from graph_harness import Flaky, attempt, run_wd
from support.eventually import eventually

DEADLINE = 60


@qcgflow.task(retries=2)
def flaky(directory, failures):
    number = attempt(directory)
    if number < failures:
        raise Flaky("attempt %d failed" % number)
    return number


@qcgflow.task(retries=1)
def flaky_element(x, directory, bad):
    number = attempt(os.path.join(directory, str(x)))
    if x == bad and number == 0:
        raise Flaky("element %r, attempt 0" % (x,))
    return x * 10


@qcgflow.task
def inc(x):
    return x + 1


@qcgflow.task(wt="1s")
def blocked(path):
    """Waits for ``path``: its 1 s wall time ends it first."""
    eventually(lambda: os.path.exists(path), DEADLINE, 0.01, "%s (the wall time ends it)" % path)
    return 1


def run(target, tmp_path):
    return qcgflow.run(target, nodes=2, wd=run_wd(tmp_path), timeout=DEADLINE)


def test_a_failed_task_is_resubmitted(tmp_path):
    assert run(flaky.bind(str(tmp_path / "a"), 2), tmp_path) == 2


def test_the_last_failure_is_raised_when_retries_run_out(tmp_path):
    with pytest.raises(Flaky, match="attempt 1 failed"):
        run(flaky.options(retries=1).bind(str(tmp_path / "a"), 5), tmp_path)


def test_a_task_without_retries_runs_once(tmp_path):
    with pytest.raises(Flaky):
        run(flaky.options(retries=0).bind(str(tmp_path / "a"), 1), tmp_path)
    assert os.listdir(tmp_path / "a") == ["0"]


def test_a_dependant_waits_for_the_final_outcome(tmp_path):
    assert run(inc.bind(flaky.bind(str(tmp_path / "a"), 1)), tmp_path) == 2


def test_a_dependant_of_a_task_out_of_retries_names_it(tmp_path):
    with pytest.raises(DependencyFailed) as caught:
        run(inc.bind(flaky.options(retries=1, name="flaky").bind(str(tmp_path / "a"), 9)),
            tmp_path)
    assert caught.value.root == "flaky"


def test_a_failed_iteration_is_resubmitted(tmp_path):
    assert run(flaky_element.map(range(3), str(tmp_path / "a"), 1), tmp_path) == [0, 10, 20]


def test_only_the_failed_iteration_runs_again(tmp_path):
    run(flaky_element.map(range(3), str(tmp_path / "a"), 1), tmp_path)
    assert [len(os.listdir(tmp_path / "a" / str(x))) for x in range(3)] == [1, 2, 1]


def test_an_element_wise_dependant_of_a_retried_map(tmp_path):
    mapped = flaky_element.map(range(3), str(tmp_path / "a"), 2)
    assert run(inc.map(mapped), tmp_path) == [1, 11, 21]


def test_a_command_is_resubmitted(tmp_path):
    marker = tmp_path / "marker"
    command = qcgflow.shell("test -e %s || { touch %s; exit 3; }" % (marker, marker),
                            retries=1)
    assert run(command.bind(), tmp_path).exit_code == 0


def test_remote_resubmits_too(tmp_path):
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)):
        assert inc.remote(flaky.remote(str(tmp_path / "a"), 2)).result(DEADLINE) == 3


def test_a_python_task_over_its_wall_time_fails(tmp_path):
    gate = str(tmp_path / "gate")
    try:
        with pytest.raises(TaskFailed, match="wall time"):
            run(blocked.bind(gate), tmp_path)
    finally:
        open(gate, "w").close()
