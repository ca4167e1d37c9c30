"""Tasks killed by a signal, and by the kernel's OOM killer (issue 8, item 3).

A task that dies of a signal ends FAILED with the signal named in its messages
(``killed by signal SIGSEGV``), whether it is a plain process, a ``python -m`` task run in
a warm worker, or one iteration of many; the service goes on and later jobs succeed.

The OOM case is the real thing: the task moves itself into a memory cgroup of 64 MiB and
allocates 512 MiB, and the kernel's OOM killer ends it with SIGKILL. The executor sees the
host's ``oom_kill`` counter move (runtime/launch/oom.py) and says "out of memory".
"""

import sys

import pytest

from faults_harness import memory_cgroup
from support.jobs import job, submit
from support.services import run_service

PY = sys.executable
SEGFAULT = "import ctypes; ctypes.string_at(0)"  # a real invalid read, not kill(2)
# each of the two substitution stages turns ``$$`` into ``$`` (as upstream): ``$$$$$$$$``
# reaches bash as ``$$`` (its pid)

# (id, job description fields, the signal named in the messages)
CASES = [
    ("sigkill_by_itself", dict(script="kill -KILL $$$$$$$$"), "SIGKILL"),
    ("sigsegv_real_fault", dict(exec_=PY, args=["-c", SEGFAULT]), "SIGSEGV"),
    ("sigabrt_by_abort", dict(exec_=PY, args=["-c", "import os; os.abort()"]), "SIGABRT"),
    ("sigterm_by_itself", dict(script="kill -TERM $$$$$$$$"), "SIGTERM"),
    ("segv_in_a_warm_python_worker", dict(exec_=PY, args=["-m", "h6_segfaulting"]), "SIGSEGV"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("signals")
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "h6_segfaulting.py").write_text(SEGFAULT + "\n")
    jobs = []
    for name, fields, _ in CASES:
        fields = dict(fields)
        exec_ = fields.pop("exec_", None)
        jobs.append(job(name, exec_, fields.pop("args", ()), **fields))
    per_iteration = job("iterations", script="if [ ${it} = 1 ]; then kill -SEGV $$$$$$$$; fi",
                        iteration={"stop": 3})
    return run_service(tmp_path, [submit(*jobs), submit(per_iteration),
                                  submit(job("later", script="echo fine > later.out",
                                             after=["iterations:0"]))],
                       wd=wd, timeout=60)


@pytest.mark.parametrize("name,signal_name", [(c[0], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_task_killed_by_a_signal_fails_naming_it(run, name, signal_name):
    entry = run.entry(name)
    assert entry["state"] == "FAILED", entry
    assert entry.get("messages") == "killed by signal %s" % signal_name
    assert entry["runtime"]["exit_code"] == str(-__import__("signal").Signals[signal_name])


def test_one_iteration_killed_fails_alone(run):
    assert run.state("iterations:0") == "SUCCEED"
    assert run.entry("iterations:1")["messages"] == "killed by signal SIGSEGV"
    assert run.state("iterations:2") == "SUCCEED"
    assert run.state("iterations") == "FAILED"


def test_the_service_goes_on(run):
    assert run.returncode == 0, run.describe()
    assert run.state("later") == "SUCCEED"
    assert run.read("later.out").strip() == "fine"
    assert "Traceback" not in run.service_log + run.stderr


def test_oom_killed_task_fails_naming_sigkill_and_out_of_memory(tmp_path):
    with memory_cgroup(64 * 1024 * 1024) as cgroup:
        hog = ("echo $$$$$$$$ > %s/cgroup.procs && exec %s -c 'x = bytearray(512 * 1024 * 1024); "
               "x[::4096] = b\"y\" * len(x[::4096])'" % (cgroup, PY))
        result = run_service(tmp_path, [submit(job("hog", script=hog)),
                                        submit(job("after", script="echo ok > after.out",
                                                   after=[]))], timeout=60)
    entry = result.entry("hog")
    assert entry["state"] == "FAILED", result.describe()
    assert entry["messages"].startswith("killed by signal SIGKILL")
    assert "out of memory" in entry["messages"]
    assert result.state("after") == "SUCCEED"
    assert result.returncode == 0
