"""The shortcuts of the persistent-worker path give what the long way gives.

* the service sends a worker only the difference from its last environment;
* a worker keeps its ``sys.stdin`` wrapper while stdin stays /dev/null;
* the warm-eligibility check of the startup variables looks only at what differs;
* result files are written with the C pickler unless cloudpickle would differ.

Real zygote and workers through ``WarmLauncher`` on a real event loop.
"""

import os
import pickle
import random
import sys
import types

import pytest

from qcgflow.build import payload
from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.launch.local import LocalLauncher, ProcessSpec
from qcgflow.runtime.launch.pyworker import WarmLauncher, startup_environment

from support.processes import left_after


def _task_functions():
    """Functions pickled by value (local ones): the workers cannot import this module."""
    def environment_and_stdin():
        return dict(os.environ), sys.stdin.read()

    def change_own_environment():
        os.environ["SET_BY_A_TASK"] = "1"
        os.environ.pop("KEPT", None)
        return dict(os.environ), ""
    return environment_and_stdin, change_own_environment


def _run_in_one_worker(tmp_path, steps):
    """Run ``(function, env, stdin path or None, stdout path)`` steps one after another in
    a warm launcher; returns per step ``(exit code, value or None, why it did not start)``."""
    loop = EventLoop()
    launcher = WarmLauncher(loop, LocalLauncher(loop), os.environ, str(tmp_path),
                            str(tmp_path / "zygote.log"), reusable_modules=("qcgflow.runner",))
    outcomes, pids = [], []

    def launch(i):
        if i == len(steps):
            loop.stop()
            return
        fn, env, stdin, stdout = steps[i]
        call, result = tmp_path / ("call%d.pkl" % i), tmp_path / ("result%d.pkl" % i)
        payload.write_call(str(call), fn, (), {})
        spec = ProcessSpec([sys.executable, "-m", "qcgflow.runner", str(call), str(result)],
                           env, str(tmp_path), stdin=stdin, stdout=stdout,
                           stderr=str(tmp_path / ("err%d" % i)), warm=True)

        def exited(info):
            value = payload.load_value(str(result)) if info.exit_code == 0 else None
            outcomes.append((info.exit_code, value, info.failure))
            launch(i + 1)

        def failed(message):
            outcomes.append((None, None, message))
            launch(i + 1)
        launcher.launch(spec, pids.append, exited, failed)

    loop.call_soon(lambda: launch(0))
    timer = loop.call_later(60, loop.stop)
    try:
        loop.run()
    finally:
        timer.cancel()
        launcher.kill_all()
        launcher.close()
    assert not left_after(tmp_path, 5.0)
    return outcomes, pids, launcher


def test_each_task_sees_exactly_its_environment_and_stdin(tmp_path):
    base = dict(os.environ, KEPT="k", CHANGING="0")
    data = tmp_path / "input.txt"
    data.write_text("from a file\n")
    out = str(tmp_path / "out")
    envs = [
        dict(base),
        dict(base, CHANGING="1", ADDED="a"),
        {k: v for k, v in dict(base, CHANGING="2").items() if k != "KEPT"},  # removed
        dict(base, CHANGING="3"),  # the task changes its own environment
        dict(base, CHANGING="4"),  # ... which must not leak here
        dict(base, CHANGING="5", SINCE_5="r"),  # its stdout cannot be opened: not run
        dict(base, CHANGING="6", SINCE_5="r"),  # a difference from one that did not run
        dict(base, CHANGING="6", SINCE_5="r"),  # the same environment again
        dict(base, CHANGING="7"),
    ]
    stdins = [None, str(data), None, None, None, None, None, str(data), None]
    steps = []
    environment_and_stdin, change_own_environment = _task_functions()
    for i, env in enumerate(envs):
        fn = change_own_environment if i == 3 else environment_and_stdin
        stdout = str(tmp_path / "missing" / "out") if i == 5 else out
        steps.append((fn, env, stdins[i], stdout))
    outcomes, pids, launcher = _run_in_one_worker(tmp_path, steps)
    assert len(outcomes) == len(envs)
    assert outcomes[5][2] and "missing" in outcomes[5][2]
    for i, (code, value, error) in enumerate(outcomes):
        if i == 5:
            continue
        assert code == 0 and error is None, (i, outcomes[i])
        seen, text = value
        expected = dict(envs[i], SET_BY_A_TASK="1") if i == 3 else envs[i]
        if i == 3:
            expected.pop("KEPT", None)
        assert seen == expected, (i, set(seen.items()) ^ set(expected.items()))
        assert text == ("from a file\n" if stdins[i] and i != 3 else ""), (i, text)
    assert len(set(pids)) == 1 and launcher.warm_started == len(envs)  # the refused one too


def test_the_startup_variable_check_equals_comparing_whole_startup_environments():
    base = {"PATH": "/bin", "PYTHONPATH": "/x", "LANG": "C", "HOME": "/root",
            "OMP_NUM_THREADS": "1", "LC_ALL": "C"}
    launcher = WarmLauncher(None, None, base, "/")
    names = list(base) + ["QCG_PM_STEP_ID", "LD_PRELOAD", "TZ", "MKL_NUM_THREADS", "FOO",
                          "LANGUAGE", "PYTHONHASHSEED"]
    rng = random.Random(11)
    for _ in range(5000):
        env = dict(base)
        for name in rng.sample(names, rng.randint(0, 4)):
            if rng.random() < 0.4:
                env.pop(name, None)
            else:
                env[name] = rng.choice(["/x", "C", "1", "2", "/bin"])
        expected = startup_environment(env) == startup_environment(base)
        assert launcher._same_startup(env) == expected, env


def test_results_pickled_by_the_c_pickler_load_as_cloudpickle_would_give_them():
    value = {"numbers": list(range(100)), "nested": ("a", 1.5, None, b"x"), "set": {1, 2}}
    data = payload._dumps(("ok", value))
    assert pickle.loads(data) == ("ok", value)
    assert pickle.loads(payload._dumps(("ok", lambda: 7)))[1]() == 7  # cloudpickle's way


def test_a_result_referring_to_main_travels_by_value():
    """A class of the task process's ``__main__`` (e.g. ``python -m qcgflow.fill``'s
    errors) must not be pickled by reference: the reader's ``__main__`` lacks it."""
    main = sys.modules["__main__"]
    cls = types.new_class("OnlyInThisMain", (Exception,))
    cls.__module__ = "__main__"
    cls.__qualname__ = "OnlyInThisMain"
    setattr(main, "OnlyInThisMain", cls)
    try:
        pickle.dumps(cls("x"))  # the C pickler would take it, by reference
        data = payload._dumps(("error", cls("x")))
    finally:
        delattr(main, "OnlyInThisMain")
    kind, error = pickle.loads(data)
    assert kind == "error" and type(error).__name__ == "OnlyInThisMain"
    assert error.args == ("x",)


@pytest.mark.parametrize("size", [0, 100, (1 << 16) - 40, 1 << 16, (1 << 16) + 1, 3 << 20])
def test_result_files_of_any_size_load_back(tmp_path, size):
    """Results are read with plain reads, the first of 64 KiB: sizes around it and far
    beyond it come back whole."""
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = str(tmp_path / "result.pkl")
    payload.write_value(path, value)
    assert payload.load_value(path) == value
