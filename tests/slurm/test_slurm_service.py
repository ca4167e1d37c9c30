"""The service in Slurm mode on the dev cluster: started inside ``sbatch`` and ``salloc``,
tasks started by per-node agents (or one srun per task), bound to their CPUs, MPI across
nodes, modules, a lost agent, ``--system-core``.

One batch job runs a workload of several jobs (module fixture) and the tests read what it
left, so the cluster round trip is paid once.
"""

import contextlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import psutil
import pytest

from support.eventually import eventually
from support.slurm import (MODULE, cluster_env, parse_mpi_hello, require_mpi_hello,
                           require_slurm, run_bounded, salloc_run, sbatch_and_wait)

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]

pytestmark = pytest.mark.slurm


def _submit(*jobs):
    return [{"request": "submit", "jobs": list(jobs)},
            {"request": "control", "command": "finishAfterAllTasksDone"}]


def _report(wd: Path, service_id: str = "t"):
    """{unit name: (state, messages)} from jobs.report (iterations and whole jobs)."""
    result = {}
    path = wd / (".qcgpjm-service-%s" % service_id) / "jobs.report"
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        result[entry["name"]] = (entry["state"], entry.get("messages") or "")
    return result


def _batch_service(wd: Path, requests, options=(), sbatch_args=("-N2", "-w", "n1,n2",
                                                                   "--exclusive"), timeout=120):
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "req.json").write_text(json.dumps(requests))
    command = " ".join(shlex.quote(a) for a in SERVICE + [
        "--file-path", str(wd / "req.json"), "--wd", str(wd), "--id", "t", *options])
    script = "#!/bin/bash\n%s\necho service-exit=$?\n" % command
    return sbatch_and_wait(script, list(sbatch_args), timeout=timeout)


# --------------------------------------------------------------------------- one batch run

SPAN_SCRIPT = ("echo nnodes=${nnodes} nlist=${nlist}; "
               "env | grep -E '^(SLURM|QCG_PM)_' | sort")
BOUND_SCRIPT = "echo $QCG_PM_NODELIST $(grep Cpus_allowed_list /proc/self/status)"


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    require_slurm()
    wd = tmp_path_factory.mktemp("batch")
    jobs = [
        {"name": "span", "execution": {"script": SPAN_SCRIPT, "stdout": "span.out"},
         "resources": {"numNodes": {"exact": 2}}},
        {"name": "bound", "iteration": {"stop": 4},
         "execution": {"script": BOUND_SCRIPT, "stdout": "bound.${it}.out"},
         "resources": {"numCores": {"exact": 1}}, "dependencies": {"after": ["span"]}},
        {"name": "mod", "execution": {"exec": "/bin/bash", "args": [
            "-c", "echo $QCGTEST_VAR"], "modules": [MODULE], "stdout": "mod.out"},
         "dependencies": {"after": ["bound"]}},
        {"name": "fails", "execution": {"exec": "/bin/false"},
         "dependencies": {"after": ["bound"]}},
    ]
    result = _batch_service(wd, _submit(*jobs))
    return wd, result


def test_service_in_sbatch_ends_the_batch_job_cleanly(batch_run):
    _, result = batch_run
    assert (result.state, "service-exit=0" in result.stdout) == ("COMPLETED", True)


def test_job_spanning_two_nodes_sees_nnodes_and_nlist(batch_run):
    wd, _ = batch_run
    assert (wd / "span.out").read_text().splitlines()[0] == "nnodes=2 nlist=n1,n2"


@pytest.mark.parametrize("variable, value", [
    ("QCG_PM_NNODES", "2"), ("QCG_PM_NODELIST", "n1,n2"), ("QCG_PM_NPROCS", "4"),
    ("QCG_PM_TASKS_PER_NODE", "2,2"), ("QCG_PM_CPU_SET", "0,1,0,1"),
    ("SLURM_NNODES", "2"), ("SLURM_NODELIST", "n1,n2"), ("SLURM_NTASKS", "4"),
])
def test_job_spanning_two_nodes_sees_its_variables(batch_run, variable, value):
    wd, _ = batch_run
    lines = (wd / "span.out").read_text().splitlines()
    assert "%s=%s" % (variable, value) in lines


def test_one_core_tasks_are_bound_to_distinct_cpus_of_both_nodes(batch_run):
    wd, _ = batch_run
    seen = sorted((wd / ("bound.%d.out" % i)).read_text().split()[0] + ":" +
                  (wd / ("bound.%d.out" % i)).read_text().split()[-1] for i in range(4))
    assert seen == ["n1:0", "n1:1", "n2:0", "n2:1"]


def test_module_load_of_a_real_modulefile(batch_run):
    wd, _ = batch_run
    assert (wd / "mod.out").read_text().strip() == "hello-from-module"


def test_failed_task_is_reported_with_its_exit_code(batch_run):
    wd, _ = batch_run
    assert _report(wd)["fails"] == ("FAILED", "exit code 1")


def test_agents_were_started_on_both_nodes(batch_run):
    wd, _ = batch_run
    log = (wd / ".qcgpjm-service-t" / "service.log").read_text()
    assert ("node n1 ready" in log, "node n2 ready" in log) == (True, True)


# --------------------------------------------------------------------------- salloc

def test_service_inside_salloc_runs_tasks_on_both_nodes(tmp_path):
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "where", "iteration": {"stop": 4},
         "execution": {"script": "echo $QCG_PM_NODELIST", "stdout": "where.${it}.out"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t"], args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    nodes = sorted((tmp_path / ("where.%d.out" % i)).read_text().strip() for i in range(4))
    assert nodes == ["n1", "n1", "n2", "n2"]


def test_partial_allocation_is_reported_on_the_terminal(tmp_path):
    """``salloc -N2`` without --exclusive gives one CPU of each 2-CPU node: the service says
    so on stderr (not only in service.log) and still runs the work."""
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "one", "execution": {"script": "true"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t"], timeout=90)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^qcgflow service: warning: the Slurm allocation gives fewer CPUs than "
                     r"its nodes have \(n\d+ 1 of \d+, n\d+ 1 of \d+\).*--exclusive",
                     done.stderr, re.M), done.stderr


def test_qcgflow_run_reports_a_partial_allocation(tmp_path):
    require_slurm()
    (tmp_path / "wf.yaml").write_text("tasks:\n  hello:\n    script: echo hi\n")
    done = salloc_run([sys.executable, "-m", "qcgflow.cli", "run", str(tmp_path / "wf.yaml"),
                       "--wd", str(tmp_path / "run"), "--quiet"], timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "qcgflow run: warning: the Slurm allocation gives fewer CPUs" in done.stderr, \
        done.stderr


def test_whole_nodes_give_no_allocation_warning(tmp_path):
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "one", "execution": {"script": "true"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t"], args=["--exclusive"], timeout=90)
    assert (done.returncode, "warning" in done.stderr) == (0, False), done.stderr


def test_disable_nl_runs_each_task_as_a_bound_srun_step(tmp_path):
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "b", "iteration": {"stop": 4},
         "execution": {"script": "echo $SLURMD_NODENAME $(grep Cpus_allowed_list "
                                 "/proc/self/status)", "stdout": "b.${it}.out"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t", "--disable-nl"],
                      args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    seen = sorted("%s:%s" % tuple((tmp_path / ("b.%d.out" % i)).read_text().split()[::2])
                  for i in range(4))
    assert seen == ["n1:0", "n1:1", "n2:0", "n2:1"]


def test_system_core_keeps_the_first_core_of_the_first_node(tmp_path):
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "c", "iteration": {"stop": 3},
         "execution": {"script": "echo $QCG_PM_NODELIST:$QCG_PM_CPU_SET",
                       "stdout": "c.${it}.out"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t", "--system-core"],
                      args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    used = sorted((tmp_path / ("c.%d.out" % i)).read_text().strip() for i in range(3))
    assert used == ["n1:1", "n2:0", "n2:1"]


# --------------------------------------------------------------------------- MPI

def test_openmpi_hello_across_two_nodes(tmp_path):
    hello = require_mpi_hello()
    result = _batch_service(tmp_path, _submit(
        {"name": "mpi", "execution": {"exec": str(hello), "model": "openmpi",
                                      "stdout": "mpi.out", "stderr": "mpi.err"},
         "resources": {"numNodes": {"exact": 2}}}))
    assert result.state == "COMPLETED", result.stdout
    ranks = parse_mpi_hello((tmp_path / "mpi.out").read_text())
    assert sorted((r["node"], r["cpus"]) for r in ranks) == [
        ("n1", "0"), ("n1", "1"), ("n2", "0"), ("n2", "1")]


def test_srunmpi_hello_across_two_nodes(tmp_path):
    hello = require_mpi_hello()
    result = _batch_service(tmp_path, _submit(
        {"name": "mpi", "execution": {"exec": str(hello), "model": "srunmpi",
                                      "model_opts": {"mpirun_args": ["--mpi=pmix"]},
                                      "stdout": "mpi.out", "stderr": "mpi.err"},
         "resources": {"numNodes": {"exact": 2}}}))
    assert result.state == "COMPLETED", result.stdout
    ranks = parse_mpi_hello((tmp_path / "mpi.out").read_text())
    assert sorted(r["node"] for r in ranks) == ["n1", "n1", "n2", "n2"]


# --------------------------------------------------------------------------- lost agent

def _agent_processes(node):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "qcgflow.runtime.launch.agent" in cmd and node in cmd and "srun" not in cmd[0]:
            found.append(proc)
    return found


@contextlib.contextmanager
def _service_in_salloc(wd: Path, jobs, job_name: str = ""):
    """The service on ``jobs`` inside ``salloc -N2 -w n1,n2``, running while the block
    acts on it; the block waits for its end (``proc.wait``), else it is killed and its
    allocation canceled (a killed salloc does not give its nodes back)."""
    job_name = job_name or "qcgflow-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    (wd / "req.json").write_text(json.dumps(_submit(*jobs)))
    proc = psutil.Popen(["salloc", "-J", job_name, "-N2", "-w", "n1,n2", "--exclusive"] +
                        SERVICE + ["--file-path", str(wd / "req.json"), "--wd", str(wd),
                                   "--id", "t"],
                        env=cluster_env(), stdout=-1, stderr=-1, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
            run_bounded(["scancel", "-n", job_name], timeout=20, env=cluster_env())


def test_killed_agent_fails_its_tasks_with_the_cause_and_the_rest_finish(tmp_path):
    require_slurm()
    jobs = [
        # 4 iterations over n1 and n2, each waits for a marker file the test writes
        {"name": "w", "iteration": {"stop": 4}, "execution": {
            "script": "echo $QCG_PM_NODELIST > w.${it}.node; "
                      "while [ ! -e release ]; do sleep 0.05; done"}},
        {"name": "later", "iteration": {"stop": 4},
         "execution": {"script": "echo $QCG_PM_NODELIST > later.${it}.node"},
         "dependencies": {"after": ["w"]}},
    ]
    wd = tmp_path
    with _service_in_salloc(wd, jobs) as proc:
        eventually(lambda: len(list(wd.glob("w.*.node"))) == 4, 60, 0.05, "4 running tasks")
        victims = _agent_processes("n2")
        assert victims, "no agent process for n2"
        for victim in victims:
            victim.kill()
        time.sleep(0.5)  # let the service notice before the n1 tasks end
        (wd / "release").write_text("")
        proc.wait(timeout=60)
    report = _report(wd)
    on_n2 = [i for i in range(4) if (wd / ("w.%d.node" % i)).read_text().strip() == "n2"]
    states = {i: report["w:%d" % i] for i in range(4)}
    assert all(states[i][0] == "FAILED" and "agent on n2 lost" in states[i][1]
               for i in on_n2) and len(on_n2) == 2, states


def test_after_losing_an_agent_work_goes_to_the_remaining_node(tmp_path):
    require_slurm()
    jobs = [
        {"name": "w", "execution": {
            "script": "while [ ! -e release ]; do sleep 0.05; done"},
         "resources": {"numNodes": {"exact": 1}}},
        {"name": "later", "iteration": {"stop": 3},
         "execution": {"script": "echo $QCG_PM_NODELIST > later.${it}.node"},
         "dependencies": {"after": ["w"]}},
    ]
    wd = tmp_path
    log = wd / ".qcgpjm-service-t" / "service.log"
    with _service_in_salloc(wd, jobs) as proc:
        eventually(lambda: log.exists() and "starting jobs" in log.read_text(), 60, 0.05,
                   "the service to start jobs")
        for victim in _agent_processes("n2"):
            victim.kill()
        eventually(lambda: "agent on n2 lost" in log.read_text(), 60, 0.05,
                   "the loss of the agent on n2 in service.log")
        (wd / "release").write_text("")
        proc.wait(timeout=60)
    report = _report(wd)
    nodes = sorted((wd / ("later.%d.node" % i)).read_text().strip() for i in range(3))
    assert (report["later"][0], nodes) == ("SUCCEED", ["n1", "n1", "n1"])


def test_agents_started_with_ssh_run_tasks_on_both_nodes(tmp_path):
    require_slurm()
    if os.environ.get("QCGFLOW_DEV_SSH", "1") != "1":
        pytest.skip("the dev cluster was started without ssh (QCGFLOW_DEV_SSH=0)")
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "where", "iteration": {"stop": 4},
         "execution": {"script": "echo $QCG_PM_NODELIST $(grep Cpus_allowed_list "
                                 "/proc/self/status)", "stdout": "where.${it}.out"}})))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t", "--nl-start-method", "ssh"],
                      args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    seen = sorted("%s:%s" % tuple((tmp_path / ("where.%d.out" % i)).read_text().split()[::2])
                  for i in range(4))
    assert seen == ["n1:0", "n1:1", "n2:0", "n2:1"]


def test_agents_that_cannot_start_stop_the_service_with_the_reason(tmp_path):
    require_slurm()
    (tmp_path / "req.json").write_text(json.dumps(_submit(
        {"name": "never", "execution": {"exec": "/bin/true"}})))
    # a PATH without python's directory does not matter (the agent is started by absolute
    # path); an ssh start to nodes that refuse: a bogus ssh config makes ssh fail at once
    (tmp_path / "ssh_config").write_text("Host *\n  ProxyCommand /bin/false\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text("#!/bin/sh\nexec /usr/bin/ssh -F %s \"$@\"\n"
                                % (tmp_path / "ssh_config"))
    (bindir / "ssh").chmod(0o755)
    env = cluster_env({"PATH": "%s:%s" % (bindir, os.environ["PATH"])})
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t", "--nl-start-method", "ssh"],
                      args=["--exclusive"], timeout=90, env=env)
    assert (done.returncode, "node agents needed can still start" in done.stderr) == (3, True), \
        done.stderr


def test_qcgflow_run_inside_an_allocation_uses_both_nodes(tmp_path):
    require_slurm()
    example = Path(__file__).resolve().parents[2] / "examples" / "workflows" / \
        "python_tasks.yaml"
    done = salloc_run([sys.executable, "-m", "qcgflow.cli", "run", str(example), "--wd",
                       str(tmp_path)], args=["--exclusive"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = "".join(p.read_text() for p in tmp_path.glob(".qcgpjm-service-*/service.log"))
    assert ((tmp_path / "total.txt").read_text().split()[0], "node n2 ready" in logs) == \
        ("385", True)


def test_qcgflow_run_at_the_allocation_end_says_it_was_interrupted(tmp_path):
    """qcgflow run inside salloc, the allocation ends (scancel -s TERM): the command says
    interrupted by the allocation's end, how to run the rest, and exits 143."""
    require_slurm()
    flow = tmp_path / "f.yaml"
    flow.write_text("name: f\ntasks:\n  w:\n    foreach: [1, 2, 3, 4]\n    script: touch "
                    "started.${it}; while [ ! -e release ]; do sleep 0.05; done\n")
    name = "qcgflow-run-end-%d" % os.getpid()
    proc = psutil.Popen(["salloc", "-J", name, "-N2", "-w", "n1,n2", "--exclusive",
                         sys.executable, "-m", "qcgflow.cli", "run", str(flow), "--wd",
                         str(tmp_path / "run"), "--quiet"], env=cluster_env(), stdout=-1,
                        stderr=-1, start_new_session=True)
    try:
        eventually(lambda: len(list((tmp_path / "run").glob("started.*"))) == 4, 60, 0.05,
                   "the 4 tasks to start")
        run_bounded(["scancel", "-s", "TERM", "-n", name], timeout=20, env=cluster_env())
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
            run_bounded(["scancel", "-n", name], timeout=20, env=cluster_env())
    err = err.decode()
    assert proc.returncode == 143, err
    assert "qcgflow run: interrupted (the service's exit code 143): the allocation is " \
           "ending: Slurm sent every node agent SIGTERM" in err, err
    assert "qcgflow service --resume %s" % (tmp_path / "run") in err


def test_mpi_ensemble_example_spreads_members_over_the_nodes(tmp_path):
    require_mpi_hello()  # the cluster is up and Open MPI works on it
    example = Path(__file__).resolve().parents[2] / "examples" / "workflows" / \
        "mpi_ensemble.yaml"
    done = salloc_run([sys.executable, "-m", "qcgflow.cli", "run", str(example), "--wd",
                       str(tmp_path), "--quiet"], args=["--exclusive"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(tmp_path, next(tmp_path.glob(".qcgpjm-service-*")).name[
        len(".qcgpjm-service-"):])
    nodes = sorted(report["ring:%d" % i][0] for i in range(4))
    assert ((tmp_path / "ensemble.txt").read_text().count("2 ranks"), nodes) == \
        (4, ["SUCCEED"] * 4)


def test_agents_lost_at_the_allocation_end_are_said_to_be_the_allocation_end(tmp_path):
    """Tasks that ignore SIGTERM outlive their agent's grace: the agents end (their srun
    steps too) and are all lost while work is left. That is the allocation's end, said as
    such with status 143 (was: "cannot start: every node agent is lost", status 3)."""
    require_slurm()
    jobs = [{"name": "stubborn", "iteration": {"stop": 4}, "execution": {
        "script": "trap '' TERM; touch s.${it}.started; "
                  "while [ ! -e release ]; do sleep 0.05; done"}},
            {"name": "queued", "iteration": {"stop": 2}, "execution": {"script": "true"},
             "dependencies": {"after": ["stubborn"]}}]
    name = "qcgflow-lost-%d" % os.getpid()
    with _service_in_salloc(tmp_path, jobs, name) as proc:
        eventually(lambda: len(list(tmp_path.glob("s.*.started"))) == 4, 60, 0.05,
                   "the 4 tasks to start")
        run_bounded(["scancel", "-s", "TERM", "-n", name], timeout=20, env=cluster_env())
        _, err = proc.communicate(timeout=90)
    err = err.decode()
    log = (tmp_path / ".qcgpjm-service-t" / "service.log").read_text()
    assert "agent on n1 lost" in log and "agent on n2 lost" in log, log[-3000:]
    assert "qcgflow service: the allocation is ending: Slurm sent every node agent " \
           "SIGTERM" in err, err
    assert (proc.returncode, "cannot start" in log, "every node agent is lost" in err) == \
        (143, False, False), err


def test_allocation_end_interrupts_tasks_and_resume_finishes_the_work(tmp_path):
    """Slurm signals every step when an allocation ends (here: scancel -s TERM, what the
    time limit does first): the running tasks end CANCELED as interrupted, not FAILED,
    the service stops, and --resume in a new allocation runs them again."""
    require_slurm()
    jobs = [
        {"name": "w", "iteration": {"stop": 4}, "execution": {
            "script": "echo run >> w.${it}.count; touch w.${it}.started; "
                      "while [ ! -e release ]; do sleep 0.05; done"}},
        {"name": "later", "execution": {"script": "echo done > later.out"},
         "dependencies": {"after": ["w"]}},
    ]
    wd = tmp_path
    name = "qcgflow-end-%d" % os.getpid()
    with _service_in_salloc(wd, jobs, name) as proc:
        eventually(lambda: len(list(wd.glob("w.*.started"))) == 4, 60, 0.05,
                   "the 4 tasks to start")
        run_bounded(["scancel", "-s", "TERM", "-n", name], timeout=20, env=cluster_env())
        _, err = proc.communicate(timeout=60)
    # the end of the allocation is said as such, with the status of an interruption by
    # SIGTERM (not "cannot start: every node agent is lost", status 3)
    lines = [line for line in err.decode().splitlines() if line.startswith("qcgflow service")]
    assert any(line.startswith("qcgflow service: the allocation is ending: Slurm sent every "
                               "node agent SIGTERM") for line in lines), err.decode()
    assert proc.returncode == 143, err.decode()
    log = (wd / ".qcgpjm-service-t" / "service.log").read_text()
    assert "cannot start" not in log and "stopping: the allocation is ending" in log
    report = _report(wd)
    interrupted = [report["w:%d" % i] for i in range(4)]
    assert all(state == "CANCELED" and message.startswith("interrupted: the agent on n")
               for state, message in interrupted), interrupted
    (wd / "release").write_text("")
    done = salloc_run(SERVICE + ["--resume", str(wd)], args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    counts = [len((wd / ("w.%d.count" % i)).read_text().split()) for i in range(4)]
    assert (counts, (wd / "later.out").read_text()) == ([2, 2, 2, 2], "done\n")
    # the Gantt chart shows both allocations: the interrupted attempts and the re-runs
    pytest.importorskip("matplotlib", reason="pip install 'qcgflow[reports]'")
    chart = run_bounded([sys.executable, "-m", "qcgflow.cli", "report", "gantt", str(wd),
                         str(wd / "gantt.svg")], timeout=60)
    assert chart.returncode == 0 and chart.stdout.startswith("gantt: 9 bars"), chart
    text = (wd / "gantt.svg").read_text().replace("- -", "--")
    assert "2 runs (first + 1 --resume)" in text and "run 2 (--resume)" in text


MPI_SCRIPT = """
import sys
import qcgflow
hello = qcgflow.mpi(sys.argv[1], nodes=2, model=sys.argv[2],
                    model_opts={"mpirun_args": sys.argv[3:]} if sys.argv[3:] else None)
wd = sys.argv[0].rsplit("/", 1)[0] + "/run"
for tag, result in zip("ab", qcgflow.run(hello.map(["a", "b"]), wd=wd)):
    with open("%s/%s.out" % (wd, tag), "w") as handle:
        handle.write(result.read_stdout())
"""


@pytest.mark.parametrize("model, extra", [("openmpi", []), ("srunmpi", ["--mpi=pmix"])])
def test_mpi_templates_of_the_python_api_run_across_nodes(tmp_path, model, extra):
    hello = require_mpi_hello()
    script = tmp_path / "mpi_script.py"
    script.write_text(MPI_SCRIPT)
    done = salloc_run([sys.executable, str(script), str(hello), model] + extra,
                      args=["--exclusive"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = {tag: parse_mpi_hello((tmp_path / "run" / ("%s.out" % tag)).read_text())
             for tag in ("a", "b")}
    assert {tag: sorted(r["node"] for r in found) for tag, found in ranks.items()} == {
        "a": ["n1", "n1", "n2", "n2"], "b": ["n1", "n1", "n2", "n2"]}
