"""``python -m qcgflow.runner CALL RESULT [IT]``: one Python task as a plain process."""

import subprocess
import sys

import pytest

from qcgflow.build import payload


def runner(tmp_path, fn, args=(), kwargs=None, mapped=None, it=None, inputs=None):
    base = tmp_path / payload.RUN_DIR
    for job, value in (inputs or {}).items():
        (base / job.split("/")[0]).mkdir(parents=True, exist_ok=True)
        payload.write_value(str(base / job), value)
    (base / "t").mkdir(parents=True, exist_ok=True)
    call, result = base / "t" / "call.pkl", base / "t" / "result.pkl"
    payload.write_call(str(call), fn, args, kwargs or {}, mapped)
    argv = [sys.executable, "-m", "qcgflow.runner", str(call), str(result)]
    done = subprocess.run(argv + ([str(it)] if it is not None else []), capture_output=True,
                          timeout=30)
    return done.returncode, payload.read_result(str(result))


def test_success_writes_the_value_and_exits_0(tmp_path):
    assert runner(tmp_path, lambda x, y: x * y, (6,), {"y": 7}) == (0, ("ok", 42))


def test_an_exception_is_written_with_its_traceback_and_exits_1(tmp_path):
    def boom():
        raise KeyError("missing")
    code, result = runner(tmp_path, boom)
    assert (code, result[0], type(result[1]), result[2]) == (1, "error", KeyError, "KeyError")


def test_the_traceback_text_names_the_failing_line(tmp_path):
    def boom():
        raise KeyError("missing")
    assert 'raise KeyError("missing")' in runner(tmp_path, boom)[1][3]


def test_refs_are_replaced_by_the_predecessors_results(tmp_path):
    args = ([payload.ResultOf("a")], {"b": payload.ResultOf("m", iterations=2)})
    code, result = runner(tmp_path, lambda x, y: (x, y), args, inputs={
        "a/result.pkl": 1, "m/result.0.pkl": 2, "m/result.1.pkl": 3})
    assert result == ("ok", ([1], {"b": [2, 3]}))


def test_a_mapped_call_takes_its_element(tmp_path):
    assert runner(tmp_path, lambda x: x, mapped=["a", "b", "c"], it=2)[1] == ("ok", "c")


def test_an_element_wise_call_takes_the_matching_result(tmp_path):
    mapped = payload.ResultOf("m", iterations=2, element=True)
    assert runner(tmp_path, lambda x: -x, mapped=mapped, it=1,
                  inputs={"m/result.1.pkl": 5})[1] == ("ok", -5)


def test_an_unpicklable_exception_travels_as_text(tmp_path):
    import threading

    def boom():
        error = RuntimeError("held")
        error.lock = threading.Lock()
        raise error
    code, result = runner(tmp_path, boom)
    assert (code, result[1], result[2]) == (1, None, "RuntimeError")


@pytest.mark.parametrize("argv", [[], ["only-one"], ["a", "b", "c", "d"]])
def test_bad_usage_exits_2(argv):
    done = subprocess.run([sys.executable, "-m", "qcgflow.runner"] + argv,
                          capture_output=True, timeout=30)
    assert done.returncode == 2
