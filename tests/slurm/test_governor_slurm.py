"""``--slurm-partition-nodes 1`` inside ``salloc -N2`` on the dev cluster: a governor, one
manager per node, a workflow whose dependencies cross the two partitions."""

import json
import sys
from pathlib import Path

import pytest

from slurm_harness import require_slurm, salloc_run

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
