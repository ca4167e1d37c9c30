"""Python tasks (``python -m qcgflow.runner``) run one after another in persistent workers.

Real services (``qcgflow.run`` / ``qcgflow.init``, or ``qcgflow service`` on a requests
file), real workers forked from the real zygote. A task's pid tells which worker ran it;
``nodes=1`` makes consecutive tasks share one worker.
"""

import ctypes
import os
import signal
import sys
import threading
import time

import pytest

import qcgflow
from qcgflow.build import payload
from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.launch.local import LocalLauncher, ProcessSpec
from qcgflow.runtime.launch.pyworker import WarmLauncher

from support.jobs import history_states, job, submit, wait_marker
from support.services import run_driver

COLD = "--disable-warm-workers"


@qcgflow.task
def whoami(i, *rest):
    print("out of task %s" % i)
    print("err of task %s" % i, file=sys.stderr)
    return os.getpid(), os.getcwd(), os.environ.get("LEAK"), os.environ.get("X"), sys.argv[1:]


@qcgflow.task
def pollute(*rest):
    os.environ["LEAK"] = "from an earlier task"
    os.chdir("/")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getpid()


@qcgflow.task
def fail(*rest):
    raise ValueError("boom in the worker")


@qcgflow.task
def hard_exit(*rest):
    os._exit(7)


@qcgflow.task
def segfault(*rest):
    ctypes.string_at(0)


@qcgflow.task
def sleep(*rest):
    time.sleep(60)


@qcgflow.task
def with_atexit(*rest):
    import atexit
    atexit.register(print, "atexit handler ran")
    return os.getpid()


@qcgflow.task
def with_thread(*rest):
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
    return os.getpid()


def pid_of(session_ref):
    return qcgflow.get(session_ref)[0]


# ------------------------------------------------------------------ reuse, isolation

def test_consecutive_tasks_share_a_worker_with_their_own_files(tmp_path):
    wd = tmp_path / "run"
    results = qcgflow.run(whoami.map(range(6)), nodes=1, wd=str(wd))
    assert len({pid for pid, *_ in results}) == 1  # one worker ran them all
    assert all(cwd == str(wd) for _, cwd, *_ in results)
    runs = wd / ".qcgflow" / "whoami-0"
    for i in range(6):
        assert (runs / ("stdout.%d" % i)).read_text() == "out of task %d\n" % i
        assert (runs / ("stderr.%d" % i)).read_text() == "err of task %d\n" % i


def test_environment_cwd_and_signals_do_not_leak_to_the_next_task(tmp_path):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run")):
        first = qcgflow.get(pollute.remote())
        pid, cwd, leak, x, argv = qcgflow.get(whoami.options(env={"X": "mine"}).remote(1))
        _, _, _, x_after, _ = qcgflow.get(whoami.remote(2))
    assert pid == first
    assert (cwd, leak, x, x_after) == (str(tmp_path / "run"), None, "mine", None)
    # python -m qcgflow.runner CALL RESULT: a small call is inline (issue 19)
    assert argv[0].startswith("inline:") and argv[1].endswith("result.pkl")


@qcgflow.task
def leave_a_writer(*rest):
    """Starts a process that writes to the task's stdout after the task has ended."""
    import subprocess
    subprocess.Popen(["sh", "-c", "sleep 1; echo late from a left process"])
    return os.getpid()


@qcgflow.task
def quiet(seconds, *rest):
    time.sleep(seconds)
    return os.getpid()


def test_what_a_left_process_writes_never_lands_in_a_later_tasks_output(tmp_path):
    """Workers keep the empty unnamed output files of their tasks for the next ones
    (launch/streams.Spares), but never one that something else can still write to."""
    wd = tmp_path / "run"
    with qcgflow.init(nodes=1, wd=str(wd)):
        first = qcgflow.get(leave_a_writer.remote())
        pids = [qcgflow.get(quiet.remote(0.5)) for _ in range(4)]  # past the "late" write
        pids += qcgflow.get([quiet.remote(0) for _ in range(20)])
    assert set(pids) == {first}  # one worker ran every task
    written = {}
    for top, _, names in os.walk(wd / ".qcgflow"):
        for name in names:
            if name.endswith(("stdout", "stderr")) or ".std" in name:
                written[name] = open(os.path.join(top, name)).read()
    assert all("late" not in text for text in written.values()), written
    assert written == {}  # no task wrote; the late line went to the left process's file


def test_the_opt_out_variable_runs_a_fresh_interpreter_state(tmp_path):
    fresh = whoami.options(env={"QCGFLOW_WORKER_REUSE": "0"})
    results = qcgflow.run(fresh.map(range(3)), nodes=1, wd=str(tmp_path / "run"))
    assert len({pid for pid, *_ in results}) == 3


def test_disable_warm_workers_still_gives_one_interpreter_per_task(tmp_path):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run"), service_args=[COLD]):
        pids = {pid_of(whoami.remote(i)) for i in range(3)}
    assert len(pids) == 3


def test_a_task_too_large_for_a_worker_request_is_forked_instead(tmp_path):
    big = {"BIG%d" % i: "x" * 50000 for i in range(4)}  # 200 kB: over one datagram
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run")):
        before = pid_of(whoami.remote(0))
        pid, _, _, _, _ = qcgflow.get(whoami.options(env=big).remote(1))
        after = pid_of(whoami.remote(2))
    assert pid != before and after == before


def test_a_working_directory_option_is_the_tasks_cwd(tmp_path):
    wd = tmp_path / "run"
    cwd = qcgflow.run(whoami.options(wd="sub").bind(0), nodes=1, wd=str(wd))[1]
    assert cwd == str(wd / "sub")


# ------------------------------------------------------------------ failures

def test_an_exception_keeps_the_worker_and_carries_the_remote_traceback(tmp_path):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run")):
        before = pid_of(whoami.remote(0))
        with pytest.raises(ValueError) as info:
            qcgflow.get(fail.remote())
        after = pid_of(whoami.remote(1))
    assert isinstance(info.value, qcgflow.TaskFailed)
    assert "boom in the worker" in str(info.value)
    assert 'raise ValueError("boom in the worker")' in str(info.value)
    assert before == after


@pytest.mark.parametrize("task, message", [
    (hard_exit, "exit code 7"),
    (segfault, "killed by signal SIGSEGV"),
], ids=["os._exit", "segfault"])
def test_a_task_that_ends_the_interpreter_fails_as_a_process_and_the_worker_is_replaced(
        tmp_path, task, message):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run")):
        before = pid_of(whoami.remote(0))
        with pytest.raises(qcgflow.TaskFailed, match=message):
            qcgflow.get(task.remote())
        after = pid_of(whoami.remote(1))
    assert before != after


def test_wall_time_kills_the_worker_and_the_next_task_gets_a_new_one(tmp_path):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "run")):
        before = pid_of(whoami.remote(0))
        started = time.monotonic()
        with pytest.raises(qcgflow.TaskFailed, match="wall time"):
            qcgflow.get(sleep.options(wt="1s").remote(), timeout=30)
        assert time.monotonic() - started < 15
        after = pid_of(whoami.remote(1))
    assert before != after


@pytest.mark.parametrize("task, printed", [
    (with_atexit, "atexit handler ran"),
    (with_thread, "thread finished"),
], ids=["atexit", "thread"])
def test_a_task_leaving_exit_work_is_finished_as_a_process(tmp_path, task, printed):
    wd = tmp_path / "run"
    with qcgflow.init(nodes=1, wd=str(wd)):
        pid = qcgflow.get(task.remote())
        after = pid_of(whoami.remote(1))
    # a .remote task's streams are beside its job name (its call is inline: no directory)
    assert printed in (wd / ".qcgflow" / ("%s-0.stdout" % task.fn.__name__)).read_text()
    assert pid != after  # that worker ended as the process would have


def test_cancel_a_task_running_in_a_worker(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()

    def runner_job(name, fn, *args):
        payload.write_call(str(calls / ("%s.pkl" % name)), fn, args, {})
        return job(name, sys.executable, ["-m", "qcgflow.runner", calls / ("%s.pkl" % name),
                                          calls / ("%s.result.pkl" % name)],
                   stdout=str(calls / ("%s.out" % name)), stderr=str(calls / ("%s.err" % name)))
    result = run_driver(tmp_path, [
        submit(runner_job("a", time.sleep, 60)),
        wait_marker("a", "EXECUTING"),
        {"request": "cancelJob", "jobNames": ["a"]},
        wait_marker("a", "CANCELED"),
        submit(runner_job("b", os.getpid)),
        wait_marker("b", "SUCCEED"),
    ], nodes="1", timeout=30)
    entry = result.entry("a")
    assert history_states(entry)[-2:] == ["EXECUTING", "CANCELED"], result.describe()
    assert entry["runtime"]["exit_code"] == "-15"
    assert result.state("b") == "SUCCEED"
    assert payload.load_value(str(calls / "b.result.pkl")) != int(entry["runtime"]["pid"])


def test_a_task_whose_output_cannot_be_opened_fails_naming_the_path(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    payload.write_call(str(calls / "a.pkl"), os.getpid, (), {})
    payload.write_call(str(calls / "b.pkl"), os.getpid, (), {})

    def runner_job(name, stdout):
        return job(name, sys.executable, ["-m", "qcgflow.runner", calls / ("%s.pkl" % name),
                                          calls / ("%s.result.pkl" % name)], stdout=stdout)
    result = run_driver(tmp_path, [
        submit(runner_job("a", str(tmp_path / "missing" / "a.out"))),
        wait_marker("a", "FAILED"),
        submit(runner_job("b", str(calls / "b.out"))),
        wait_marker("b", "SUCCEED"),
    ], nodes="1", timeout=30)
    assert result.state("a") == "FAILED"
    assert str(tmp_path / "missing" / "a.out") in result.entry("a")["messages"]
    assert result.state("b") == "SUCCEED"  # the worker that refused it runs the next one


# ------------------------------------------------------------------ the launcher itself

def test_a_worker_binds_each_task_to_its_cpus(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    loop = EventLoop()
    launcher = WarmLauncher(loop, LocalLauncher(loop), os.environ, str(tmp_path),
                            str(tmp_path / "zygote.log"), reusable_modules=("qcgflow.runner",))
    seen, pids = [], []

    def launch(i, bound):
        call, result = tmp_path / ("call%d.pkl" % i), tmp_path / ("result%d.pkl" % i)
        payload.write_call(str(call), lambda: sorted(os.sched_getaffinity(0)), (), {})
        spec = ProcessSpec([sys.executable, "-m", "qcgflow.runner", str(call), str(result)],
                           dict(os.environ), str(tmp_path), stdout=str(tmp_path / "out"),
                           stderr=str(tmp_path / "err"), cpus=bound, warm=True)
        launcher.launch(spec, pids.append, lambda info: done(i, info, result), seen.append)

    def done(i, info, result):
        seen.append((info.exit_code, payload.load_value(str(result))))
        if i == 0:
            launch(1, None)
        else:
            loop.stop()
    launch(0, (cpus[-1],))
    loop.call_later(30, loop.stop)
    try:
        loop.run()
    finally:
        launcher.kill_all()
        launcher.close()
    assert seen == [(0, [cpus[-1]]), (0, cpus)]
    assert len(set(pids)) == 1 and launcher.warm_started == 2
