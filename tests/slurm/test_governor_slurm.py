"""``--slurm-partition-nodes 1`` inside ``salloc -N2`` on the dev cluster: a governor, one
manager per node, a workflow whose dependencies cross the two partitions."""

import json
import os
import sys
from pathlib import Path

import psutil
import pytest

from support.eventually import eventually
from support.slurm import cluster_env, require_slurm, run_bounded, salloc_run

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]

pytestmark = pytest.mark.slurm

WHERE = "echo $QCG_PM_NODELIST"


def _report(aux: Path) -> dict:
    return {entry["name"]: entry for entry in
            map(json.loads, (aux / "jobs.report").read_text().splitlines())}


@pytest.fixture(scope="module")
def partitioned_run(tmp_path_factory):
    require_slurm()
    wd = tmp_path_factory.mktemp("governor")
    jobs = [
        {"name": "first", "execution": {"script": WHERE + " > first.out"}},
        # two iterations, one per partition (one core each), both after `first`
        {"name": "spread", "iteration": {"stop": 2},
         "execution": {"script": "cat first.out > spread.${it}.out; %s >> spread.${it}.out; "
                                 "sleep 1" % WHERE},
         "dependencies": {"after": ["first"]}},
        {"name": "last", "execution": {"script": "cat spread.0.out spread.1.out > last.out"},
         "dependencies": {"after": ["spread"]}},
    ]
    (wd / "req.json").write_text(json.dumps([{"request": "submit", "jobs": jobs}]))
    result = salloc_run(SERVICE + ["--slurm-partition-nodes", "1", "--file-path",
                                   str(wd / "req.json"), "--wd", str(wd), "--id", "gov",
                                   "--tags", "alpha,beta"],
                        nodes=("n1", "n2"), args=["-n2"], timeout=120, cwd=str(wd))
    return wd, result


def test_partitioned_service_exits_cleanly(partitioned_run):
    _, result = partitioned_run
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_job_succeeds_in_the_governor_report(partitioned_run):
    wd, _ = partitioned_run
    report = _report(wd / ".qcgpjm-service-gov")
    assert {n: e["state"] for n, e in report.items()} == dict.fromkeys(
        ("first", "spread", "spread:0", "spread:1", "last"), "SUCCEED")


def test_dependency_crosses_the_partitions(partitioned_run):
    wd, _ = partitioned_run
    lines = (wd / "last.out").read_text().split()
    # each iteration saw `first`'s output and ran on a different node
    assert lines[0] == lines[2] and {lines[1], lines[3]} == {"n1", "n2"}, lines


def test_each_partition_manager_keeps_its_own_aux_dir(partitioned_run):
    wd, _ = partitioned_run
    ran = {manager: set(_report(wd / (".qcgpjm-service-%s" % manager)))
           for manager in ("gov.p0", "gov.p1")}
    assert set().union(*ran.values()) >= {"first", "last", "spread#0", "spread#1"}


def test_final_status_lists_the_partition_managers_with_tags(partitioned_run):
    wd, _ = partitioned_run
    status = json.loads((wd / ".qcgpjm-service-gov" / "final_status.json").read_text())
    assert {(m["Id"], tuple(m["Tags"])) for m in status["Managers"]} == {
        ("gov.p0", ("alpha", "beta")), ("gov.p1", ("alpha", "beta"))}


def test_partition_managers_started_with_srun_on_their_nodes(tmp_path):
    require_slurm()
    jobs = [{"name": "where", "iteration": {"stop": 2},
             "execution": {"script": "echo $QCG_PM_NODELIST > where.${it}.out; sleep 1"}}]
    (tmp_path / "req.json").write_text(json.dumps([{"request": "submit", "jobs": jobs}]))
    result = salloc_run(SERVICE + ["--slurm-partition-nodes", "1", "--slurm-partition-start",
                                   "srun", "--file-path", str(tmp_path / "req.json"),
                                   "--wd", str(tmp_path), "--id", "gs"],
                        nodes=("n1", "n2"), args=["-n2"], timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / ".qcgpjm-service-gs" / "service.log").read_text()
    assert "(srun on n1)" in log and "(srun on n2)" in log, log[-2000:]
    assert {(tmp_path / ("where.%d.out" % i)).read_text().strip() for i in (0, 1)} == {
        "n1", "n2"}


def _processes_of(wd: Path, marker: str):
    """qcgflow processes (not salloc/srun, whose command lines hold the same words) of the
    run in ``wd`` whose command line has ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and os.path.basename(cmd[0]) not in ("salloc", "srun") and marker in cmd \
                and str(wd) in " ".join(cmd):
            found.append(proc)
    return found


def test_partitioned_run_killed_resumes_without_rerunning_finished_units(tmp_path):
    require_slurm()
    wd = tmp_path
    jobs = [
        # iterations 0 and 1 end at once; 2 and 3 wait for a file the test writes later
        {"name": "w", "iteration": {"stop": 4}, "execution": {
            "script": "echo run >> w.${it}.count; "
                      "if [ ${it} -ge 2 ]; then while [ ! -e release ]; do sleep 0.05; "
                      "done; fi"}},
        {"name": "last", "execution": {"script": "cat w.*.count | wc -l > last.out"},
         "dependencies": {"after": ["w"]}},
    ]
    (wd / "req.json").write_text(json.dumps([{"request": "submit", "jobs": jobs}]))
    journal = wd / ".qcgpjm-service-gov" / "journal.jsonl"
    name = "qcgflow-gov-resume-%d" % os.getpid()
    salloc = psutil.Popen(["salloc", "-J", name, "-N2", "-w", "n1,n2", "-n2"] + SERVICE + [
        "--slurm-partition-nodes", "1", "--file-path", str(wd / "req.json"), "--wd", str(wd),
        "--id", "gov"], env=cluster_env(), stdout=-1, stderr=-1, start_new_session=True)
    try:
        eventually(lambda: journal.exists() and '"it":0' in journal.read_text()
                   and '"it":1' in journal.read_text()
                   and (wd / "w.2.count").exists() and (wd / "w.3.count").exists(), 60, 0.05,
                   "w:0 and w:1 journaled, w:2 and w:3 running")
        governors = _processes_of(wd, "--slurm-partition-nodes")
        assert governors, "no governor process"
        for governor in governors:
            governor.kill()
        salloc.wait(timeout=60)
        # the partition managers notice the governor is gone and end with their tasks
        eventually(lambda: not _processes_of(wd, "--parent"), 60, 0.1,
                   "the partition managers to end with their governor")
    finally:
        if salloc.poll() is None:
            os.killpg(salloc.pid, 9)
            salloc.wait()
        # a salloc that did not end by itself leaves its allocation: give the nodes back
        run_bounded(["scancel", "-n", name], timeout=20, env=cluster_env())
    (wd / "release").write_text("")
    done = salloc_run(SERVICE + ["--slurm-partition-nodes", "1", "--resume", str(wd)],
                      nodes=("n1", "n2"), args=["-n2"], timeout=120, cwd=str(wd))
    assert done.returncode == 0, done.stderr[-2000:]
    counts = [len((wd / ("w.%d.count" % i)).read_text().split()) for i in range(4)]
    assert (counts[:2], (wd / "last.out").read_text().strip()) == ([1, 1], str(sum(counts)))
