"""qcgflow.run end to end: a real service, real task processes, results in the target's shape."""

import os
import threading

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, RunError, TaskFailed

from graph_harness import Custom, add, fails, inc, run_wd

DEADLINE = 60


def helper(x):
    return x * 10


@qcgflow.task
def fail_on(x, bad):
    if x == bad:
        raise ZeroDivisionError("element %r" % (x,))
    return x


@qcgflow.task
def echo(value):
    return value


def run(target, tmp_path, **kwargs):
    return qcgflow.run(target, nodes=2, wd=run_wd(tmp_path), timeout=DEADLINE, **kwargs)


def test_one_task(tmp_path):
    assert run(inc.bind(1), tmp_path) == 2


def test_diamond(tmp_path):
    top = inc.bind(1)
    assert run(add.bind(inc.bind(top), add.bind(top, 10)), tmp_path) == 15


def test_fan_in(tmp_path):
    assert run(add.bind(*[inc.bind(i) for i in range(5)]), tmp_path) == 15


def test_map_returns_the_list_of_results(tmp_path):
    assert run(inc.map(range(4)), tmp_path) == [1, 2, 3, 4]


def test_a_mapped_ref_passed_whole_is_a_fan_in(tmp_path):
    assert run(echo.bind(inc.map(range(3))), tmp_path) == [1, 2, 3]


def test_element_wise_map(tmp_path):
    assert run(add.map(inc.map([1, 2, 3]), 100), tmp_path) == [102, 103, 104]


def test_refs_nested_in_arguments_are_replaced_by_results(tmp_path):
    a, b = inc.bind(1), inc.bind(2)
    value = run(echo.bind({"list": [a, (b, {"deep": a})], "set": {b}}), tmp_path)
    assert value == {"list": [2, (3, {"deep": 2})], "set": {3}}


def test_results_keep_the_shape_of_the_target(tmp_path):
    a = inc.bind(1)
    assert run({"a": a, "more": [a, (inc.bind(a),)], "n": 7}, tmp_path) == \
        {"a": 2, "more": [2, (3,)], "n": 7}


def test_module_level_helpers_of_the_caller_are_found(tmp_path):
    @qcgflow.task
    def uses_helper(x):
        return helper(x)
    assert run(uses_helper.bind(4), tmp_path) == 40


def test_shell_template_writes_its_output(tmp_path):
    result = run(qcgflow.shell("echo ${greeting} ${itval}").map(["a", "b"], greeting="hi"),
                 tmp_path)
    assert [r.read_stdout() for r in result] == ["hi a\n", "hi b\n"]


def test_command_result_says_exit_code_and_wd(tmp_path):
    result = run(qcgflow.shell("touch made", wd="sub").bind(), tmp_path)
    assert (result.exit_code, result.wd) == (0, os.path.join(run_wd(tmp_path), "sub"))


def test_a_command_result_feeds_a_python_task(tmp_path):
    @qcgflow.task
    def read(result):
        return result.read_stdout().split()
    out = run(read.bind(qcgflow.shell("echo ${x} ${ncores}", cores=2).bind(x=5)), tmp_path)
    assert out == ["5", "2"]


def test_after_orders_commands(tmp_path):
    first = qcgflow.shell("echo one > order.txt").bind()
    second = qcgflow.shell("echo two >> order.txt").bind(after=[first])
    run(second, tmp_path)
    assert (tmp_path / "run" / "order.txt").read_text() == "one\ntwo\n"


def test_mpi_template_with_the_threads_model(tmp_path):
    solver = qcgflow.mpi("/bin/sh", args=["-c", "echo ${n} $OMP_NUM_THREADS"], cores=2,
                         model="threads")
    assert run(solver.bind(n=3), tmp_path).read_stdout() == "3 2\n"


def test_a_task_exception_is_caught_as_its_own_type(tmp_path):
    with pytest.raises(Custom):
        run(fails.bind(1), tmp_path)


def test_a_task_exception_is_a_task_failed_naming_the_task(tmp_path):
    with pytest.raises(TaskFailed) as info:
        run(fails.bind(1), tmp_path)
    assert info.value.task == "fails-0"


def test_a_task_exception_carries_the_remote_traceback(tmp_path):
    with pytest.raises(TaskFailed) as info:
        run(fails.bind(1), tmp_path)
    assert 'raise Custom("bad input %r" % (x,))' in info.value.remote_traceback


def test_a_dependant_raises_dependency_failed_naming_the_root(tmp_path):
    with pytest.raises(DependencyFailed) as info:
        run(inc.bind(inc.bind(fails.bind(1))), tmp_path)
    assert (info.value.task, info.value.root) == ("inc-1", "fails-0")


def test_dependency_failed_carries_the_root_error(tmp_path):
    with pytest.raises(DependencyFailed) as info:
        run(inc.bind(fails.bind(1)), tmp_path)
    assert isinstance(info.value.root_error.cause, Custom)


def test_a_failed_iteration_raises_its_own_error(tmp_path):
    with pytest.raises(ZeroDivisionError) as info:
        run(fail_on.map([1, 2, 3], bad=2), tmp_path)
    assert info.value.task == "fail_on-0:1"


def test_element_wise_dependant_of_a_failed_iteration_names_the_root(tmp_path):
    with pytest.raises(DependencyFailed) as info:
        run(inc.map(fail_on.map([1, 2, 3], bad=2)), tmp_path)
    assert info.value.root == "fail_on-0"


def test_a_failing_command_says_its_exit_code(tmp_path):
    with pytest.raises(TaskFailed, match="exit code 3"):
        run(qcgflow.shell("exit 3").bind(), tmp_path)


def test_a_result_that_does_not_pickle_is_the_task_failure(tmp_path):
    @qcgflow.task
    def lock():
        return threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        run(lock.bind(), tmp_path)


def test_wall_time_is_enforced(tmp_path):
    with pytest.raises(TaskFailed, match="wall time"):
        run(qcgflow.shell("exec sleep 30", wt=1).bind(), tmp_path)


def test_a_service_that_cannot_start_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="did not start"):
        qcgflow.run(inc.bind(1), nodes="n0:zero", wd=run_wd(tmp_path), timeout=DEADLINE)


def test_the_timeout_stops_the_run(tmp_path):
    with pytest.raises(RunError, match="timeout"):
        qcgflow.run(qcgflow.shell("exec sleep 30").bind(), nodes=1, wd=run_wd(tmp_path),
                    timeout=0.5)


def test_without_wd_the_run_gets_a_fresh_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    result = qcgflow.run(qcgflow.shell("true").bind(), nodes=1, timeout=DEADLINE)
    assert result.wd.startswith(os.path.join(str(tmp_path), "qcgflow-run-"))
