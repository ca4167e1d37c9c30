"""Warm Python workers: ``python -m MODULE`` jobs forked from the service's zygote.

Each test runs the real service (``qcgflow service`` on a requests file) and compares what
a job left behind with the same job started as a normal process (--disable-warm-workers).
The probe module reports its parent's command line: the zygote's
(``qcgflow.runtime.launch.zygote``) proves the job ran warm.
"""

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support.jobs import history_states, job, submit, wait_marker
from support.services import run_driver, run_service

PY = sys.executable
ZYGOTE = "qcgflow.runtime.launch.zygote"
COLD = "--disable-warm-workers"

PROBE = textwrap.dedent("""
    import json, os, sys
    parent = open("/proc/%d/cmdline" % os.getppid(), "rb").read().replace(b"\\0", b" ")
    data = sys.stdin.read()
    print(json.dumps({"argv": sys.argv[1:], "argv0": sys.argv[0], "cwd": os.getcwd(),
                      "path0": sys.path[0], "x": os.environ.get("X"),
                      "step": "QCG_PM_STEP_ID" in os.environ, "stdin": data,
                      "name": __name__, "executable": sys.executable,
                      "encoding": sys.stdout.encoding, "sid": os.getsid(0) == os.getpid()}))
    print("parent: " + parent.decode(), file=sys.stderr)
    print("to stderr", file=sys.stderr)
    what = sys.argv[1] if len(sys.argv) > 1 else "ok"
    if what == "raise":
        raise ValueError("boom in the task")
    if what == "exit3":
        sys.exit(3)
    if what == "exitmsg":
        sys.exit("a message")
    if what == "sleep":
        import time
        time.sleep(60)
""")


@pytest.fixture
def wd(tmp_path) -> Path:
    path = tmp_path / "wd"
    path.mkdir()
    (path / "probe.py").write_text(PROBE)
    (path / "sub").mkdir()
    (path / "in.txt").write_text("input text\n")
    return path


def probe_job(name, *args, exec_=PY, **execution):
    execution.setdefault("stdout", "%s.out" % name)
    execution.setdefault("stderr", "%s.err" % name)
    return job(name, exec_, ["-m", "probe", *args], **execution)


def outputs(result, name, wd_name=""):
    base = Path(result.wd) / wd_name
    out = (base / ("%s.out" % name)).read_text()
    err = (base / ("%s.err" % name)).read_text()
    return out, err


def ran_warm(err: str) -> bool:
    parents = [line for line in err.splitlines() if line.startswith("parent: ")]
    return len(parents) == 1 and ZYGOTE in parents[0]


def without_parent(err: str) -> str:
    return "\n".join(line for line in err.splitlines() if not line.startswith("parent: "))


# ------------------------------------------------------------------ same semantics

def test_a_python_module_job_runs_in_the_zygote(tmp_path, wd):
    result = run_service(tmp_path, [submit(probe_job("a"))], wd=wd)
    assert result.state("a") == "SUCCEED", result.describe()
    assert ran_warm(outputs(result, "a")[1])


def test_disable_warm_workers_starts_a_process(tmp_path, wd):
    result = run_service(tmp_path, [submit(probe_job("a"))], COLD, wd=wd)
    assert result.state("a") == "SUCCEED", result.describe()
    assert not ran_warm(outputs(result, "a")[1])


@pytest.mark.parametrize("args, extra", [
    ((), {}),
    (("x", "y z"), {"env": {"X": "from the job"}}),
    (("in",), {"stdin": "in.txt"}),
    (("sub",), {"wd": "sub", "stdout": "o.txt", "stderr": "o.txt"}),
], ids=["plain", "args-env", "stdin", "wd-merged-output"])
def test_outputs_match_a_normal_process(tmp_path, wd, args, extra):
    name = "j"
    if "wd" in extra:
        (wd / "sub" / "probe.py").write_text(PROBE)
    spec = probe_job(name, *args, **extra)
    out_name = extra.get("stdout", "%s.out" % name)
    err_name = extra.get("stderr", "%s.err" % name)
    base = wd / extra.get("wd", "")

    def run(*opts, service_id):
        result = run_service(tmp_path, [submit(spec)], *opts, wd=wd, service_id=service_id)
        files = (base / out_name).read_text(), (base / err_name).read_text()
        for path in {base / out_name, base / err_name}:
            path.unlink()
        return result.state(name), files

    warm_state, (warm_out, warm_err) = run(service_id="warm")
    cold_state, (cold_out, cold_err) = run(COLD, service_id="cold")
    assert ran_warm(warm_err)
    assert warm_state == cold_state == "SUCCEED"
    assert without_parent(warm_out) == without_parent(cold_out)
    assert without_parent(warm_err) == without_parent(cold_err)


def test_the_task_sees_the_job_environment_and_its_own_session(tmp_path, wd):
    result = run_service(tmp_path, [submit(probe_job("a", env={"X": "42"}))], wd=wd)
    data = json.loads(outputs(result, "a")[0])
    assert (data["x"], data["step"], data["sid"], data["name"], data["path0"]) == \
        ("42", True, True, "__main__", str(wd))


# ------------------------------------------------------------------ exit status

@pytest.mark.parametrize("what, code, message, stderr_has", [
    ("raise", "1", "exit code 1", "ValueError: boom in the task"),
    ("exit3", "3", "exit code 3", "to stderr"),
    ("exitmsg", "1", "exit code 1", "a message"),
])
def test_exit_status_is_that_of_python(tmp_path, wd, what, code, message, stderr_has):
    result = run_service(tmp_path, [submit(probe_job("a", what))], wd=wd)
    entry = result.entry("a")
    err = outputs(result, "a")[1]
    assert ran_warm(err)
    assert (entry["state"], entry["runtime"]["exit_code"], entry["messages"]) == \
        ("FAILED", code, message)
    assert stderr_has in err


def test_an_exception_prints_a_traceback(tmp_path, wd):
    result = run_service(tmp_path, [submit(probe_job("a", "raise"))], wd=wd)
    err = outputs(result, "a")[1]
    assert "Traceback (most recent call last)" in err


def test_a_missing_module_fails_as_python_does(tmp_path, wd):
    result = run_service(tmp_path, [submit(job("a", PY, ["-m", "no_such_module_here"],
                                               stderr="a.err"))], wd=wd)
    assert result.entry("a")["runtime"]["exit_code"] == "1"
    assert "No module named no_such_module_here" in (wd / "a.err").read_text()


# ------------------------------------------------------------------ wt, cancel

def test_wall_time_kills_a_warm_task(tmp_path, wd):
    started = time.monotonic()
    result = run_service(tmp_path, [submit(probe_job("a", "sleep", wt="1s", cores=1))], wd=wd,
                         timeout=30)
    entry = result.entry("a")
    assert ran_warm(outputs(result, "a")[1])
    assert (entry["state"], "wall time" in entry["messages"]) == ("FAILED", True)
    assert time.monotonic() - started < 10


def test_cancel_a_running_warm_task(tmp_path, wd):
    result = run_driver(tmp_path, [
        submit(probe_job("a", "sleep")),
        wait_marker("a", "EXECUTING"),
        {"request": "cancelJob", "jobNames": ["a"]},
    ], timeout=20)
    entry = result.entry("a")
    assert history_states(entry)[-2:] == ["EXECUTING", "CANCELED"], result.describe()
    assert entry["runtime"]["exit_code"] == "-15"


# ------------------------------------------------------------------ fallbacks

@pytest.mark.parametrize("extra", [
    {"venv": "venv"},
    {"env": {"PYTHONPATH": "/nonexistent"}},
    {"model": "threads"},
], ids=["venv", "pythonpath", "model"])
def test_jobs_a_worker_cannot_honour_run_as_processes(tmp_path, wd, extra):
    if "venv" in extra:
        (wd / "venv" / "bin").mkdir(parents=True)
        (wd / "venv" / "bin" / "activate").write_text("")
    result = run_service(tmp_path, [submit(probe_job("a", **extra))], wd=wd)
    err = outputs(result, "a")[1]
    assert result.state("a") == "SUCCEED", result.describe()
    assert not ran_warm(err)


def test_another_interpreter_runs_as_a_process(tmp_path, wd):
    other = tmp_path / "bin"
    other.mkdir()
    (other / "python").symlink_to(PY)  # the same file, another directory (like a venv)
    result = run_service(tmp_path, [submit(probe_job("a", exec_=str(other / "python")))],
                         wd=wd)
    assert not ran_warm(outputs(result, "a")[1])


def test_python3_on_the_path_resolving_to_this_interpreter_runs_warm(tmp_path, wd):
    name = Path(PY).name
    env = {"PATH": str(Path(PY).parent)}
    result = run_service(tmp_path, [submit(probe_job("a", exec_=name, env=env))], wd=wd)
    err = outputs(result, "a")[1]
    assert ran_warm(err)


# ------------------------------------------------------------------ many jobs

def test_every_job_of_a_batch_runs_warm_and_none_cold(tmp_path, wd):
    # what makes a batch of small Python jobs fast is that each of them is forked from
    # the zygote; benchmarks/timings_bench.py measures how much faster (no speed here)
    names = ["t%d" % i for i in range(30)]
    warm = run_service(tmp_path, [submit(*[probe_job(n) for n in names])], wd=wd,
                       timeout=120, service_id="w")
    assert set(warm.states.values()) == {"SUCCEED"}, warm.describe()
    assert [n for n in names if not ran_warm(outputs(warm, n)[1])] == []
    cold = run_service(tmp_path, [submit(*[probe_job(n) for n in names])], COLD, wd=wd,
                       timeout=120, service_id="c")
    assert set(cold.states.values()) == {"SUCCEED"}, cold.describe()
    assert [n for n in names if ran_warm(outputs(cold, n)[1])] == []
