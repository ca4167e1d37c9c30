"""Execution models in Slurm mode on the dev cluster. Most tests skip the service: the
command lines that launch/models.py builds for an allocation are run for real inside
``salloc -N2 -w n1,n2 --exclusive`` and the MPI ranks report where they landed. The last
test runs uneven srunmpi/intelmpi jobs through the service in a batch job.

The task's own environment (SLURM_*, QCG_PM_*, the model's variables) is passed with
``env K=V ... argv`` because salloc sets the allocation's SLURM_* variables for the
command it runs, and those must be overridden exactly as a node agent would.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from qcgflow.runtime.launch.environment import TaskContext, build_task
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.resources import Allocation, NodeAllocation
from support.slurm import (MODULE, MODULE_VAR, MODULEFILES, cluster_env, parse_mpi_hello,
                           require_mpi_hello, require_slurm, salloc_run, sbatch_and_wait)

pytestmark = pytest.mark.slurm

# Allocations on two nodes called n1 and n2 in the tests; ``run_in_allocation`` renames
# them to the two nodes it gets (n1, n2 unless busy with other work, then two idle ones).
EVEN = (("n1", (0, 1)), ("n2", (0, 1)))      # n1[0:1],n2[0:1]
UNEVEN = (("n1", (0, 1)), ("n2", (1,)))      # n1[0:1],n2[1]


def two_nodes():
    """("n1", "n2") when both are idle, else the first two idle nodes (shared cluster)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], capture_output=True,
                         text=True, timeout=20, env=cluster_env()).stdout.split()
    idle = sorted(set(out), key=lambda n: (len(n), n))
    if {"n1", "n2"} <= set(idle) or len(idle) < 2:
        return ("n1", "n2")
    return tuple(idle[:2])


def command_for(tmp_path, execution, parts, step="job1"):
    """build_task in Slurm mode for ``parts``; per-task files written into tmp_path/aux."""
    aux = tmp_path / "aux"
    aux.mkdir(exist_ok=True)
    spec = parse_job({"name": "t", "execution": execution}, {})
    allocation = Allocation(tuple(NodeAllocation(n, tuple(c)) for n, c in parts))
    ctx = TaskContext(name="t", index=None, value=None, allocation=allocation,
                      root_wd=str(tmp_path), step_id=step, slurm=True, aux_dir=str(aux))
    base = cluster_env()
    command = build_task(spec.execution, ctx, base)
    for path, content in command.files:
        Path(path).write_text(content)
    added = ["%s=%s" % (k, v) for k, v in command.env.items() if base.get(k) != v]
    return command, ["env"] + added + list(command.argv)


def run_in_allocation(tmp_path, execution, parts, timeout=90):
    """Run the task inside ``salloc --exclusive`` of two nodes; output uses n1/n2 names."""
    nodes = two_nodes()
    rename = dict(zip(("n1", "n2"), nodes))
    command, argv = command_for(tmp_path, execution,
                                tuple((rename[n], cores) for n, cores in parts))
    done = salloc_run(argv, nodes=nodes, args=["--exclusive"], timeout=timeout,
                      cwd=command.wd)
    assert done.returncode == 0, "exit %d\n%s\n%s" % (done.returncode, done.stdout, done.stderr)
    back = {real: alias for alias, real in rename.items()}
    done.stdout = re.sub(r"\bn\d+\b", lambda m: back.get(m.group(0), m.group(0)), done.stdout)
    return done


def placement(done):
    """[(rank, node, cpus)] with every rank having seen the full communicator."""
    ranks = parse_mpi_hello(done.stdout)
    assert {(r["size"], r["allreduce"]) for r in ranks} == {(len(ranks), "ok")}, done.stdout
    return [(r["rank"], r["node"], r["cpus"]) for r in ranks]


# --------------------------------------------------------------------------- openmpi

def test_openmpi_rankfile_places_and_binds_ranks_on_two_nodes(tmp_path):
    hello = require_mpi_hello()
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "openmpi"}, EVEN)
    assert placement(done) == [(0, "n1", "0"), (1, "n1", "1"), (2, "n2", "0"), (3, "n2", "1")]


def test_openmpi_rankfile_follows_an_uneven_allocation(tmp_path):
    hello = require_mpi_hello()
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "openmpi"},
                             (("n1", (1,)), ("n2", (0,))))
    assert placement(done) == [(0, "n1", "1"), (1, "n2", "0")]


def test_openmpi_report_bindings_names_the_rankfile_slots(tmp_path):
    hello = require_mpi_hello()
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "openmpi",
                                        "model_opts": {"mpirun_args": ["--report-bindings"]}},
                             UNEVEN)
    bound = sorted(re.findall(r"MCW rank (\d) bound to socket \d+\[core (\d+)\[", done.stderr))
    assert bound == [("0", "0"), ("1", "1"), ("2", "1")], done.stderr


# --------------------------------------------------------------------------- srunmpi

def test_srunmpi_binds_ranks_with_mask_cpu_on_two_nodes(tmp_path):
    hello = require_mpi_hello()
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "srunmpi",
                                        "model_opts": {"mpirun_args": ["--mpi=pmix"]}}, EVEN)
    assert placement(done) == [(0, "n1", "0"), (1, "n1", "1"), (2, "n2", "0"), (3, "n2", "1")]


def test_srunmpi_with_different_cores_per_node_is_one_job(tmp_path):
    """n1 gives cores 0,1 and n2 only core 1: a heterogeneous step, one MPI_COMM_WORLD."""
    hello = require_mpi_hello()
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "srunmpi",
                                        "model_opts": {"mpirun_args": ["--mpi=pmix"]}}, UNEVEN)
    assert placement(done) == [(0, "n1", "0"), (1, "n1", "1"), (2, "n2", "1")]


# --------------------------------------------------------------------------- intelmpi

def test_intelmpi_segments_through_mpich_hydra(tmp_path):
    """Intel MPI is absent; MPICH's hydra runs the same machinefile + segments form."""
    hello = require_mpi_hello(mpich=True)
    done = run_in_allocation(tmp_path, {"exec": str(hello), "model": "intelmpi",
                                        "model_opts": {"mpirun": "mpiexec.hydra"}}, UNEVEN)
    assert [(rank, node) for rank, node, _ in placement(done)] == [
        (0, "n1"), (1, "n1"), (2, "n2")]


# --------------------------------------------------------------------------- environment

SHOW_ENV = ("echo nnodes=${nnodes} nlist=${nlist}; env | grep -E '^(SLURM|QCG_PM)_' | sort; "
            "echo hostfile=$(tr '\\n' ' ' < \"$QCG_PM_HOSTFILE\")")


@pytest.fixture(scope="module")
def task_env(tmp_path_factory):
    require_slurm()
    tmp_path = tmp_path_factory.mktemp("env")
    done = run_in_allocation(tmp_path, {"script": SHOW_ENV}, UNEVEN)
    return done.stdout.splitlines()


@pytest.mark.parametrize("line", [
    "nnodes=2 nlist=n1,n2",
    "SLURM_NNODES=2", "SLURM_NODELIST=n1,n2", "SLURM_JOB_NODELIST=n1,n2", "SLURM_NTASKS=3",
    "SLURM_NPROCS=3", "SLURM_TASKS_PER_NODE=2,1", "SLURM_STEP_TASKS_PER_NODE=2,1",
    "SLURM_JOB_NUM_NODES=2", "SLURM_OVERLAP=1",
    "QCG_PM_NNODES=2", "QCG_PM_NODELIST=n1,n2", "QCG_PM_NPROCS=3",
    "QCG_PM_TASKS_PER_NODE=2,1", "QCG_PM_CPU_SET=0,1,1", "QCG_PM_STEP_ID=job1",
    "hostfile=n1 n1 n2",
])
def test_task_sees_its_own_share_of_the_allocation(task_env, line):
    assert line in task_env


def test_task_keeps_the_allocations_job_id(task_env):
    assert [ln for ln in task_env if re.fullmatch(r"SLURM_JOB_ID=\d+", ln)]


def test_module_load_wraps_mpirun_on_two_nodes(tmp_path):
    require_mpi_hello()
    if not (MODULEFILES / MODULE).exists():
        pytest.skip("modulefile %s not installed: run the dev cluster script"
                    % (MODULEFILES / MODULE))
    done = run_in_allocation(tmp_path, {
        "exec": "/bin/sh", "args": ["-c", 'echo "$SLURMD_NODENAME %s=$%s"' % (
            MODULE_VAR[0], MODULE_VAR[0])],
        "model": "openmpi", "modules": [MODULE], "env": {"MODULEPATH": str(MODULEFILES)}},
        EVEN)
    assert sorted(done.stdout.split("\n")[:-1]) == [
        "n1 %s=%s" % MODULE_VAR, "n1 %s=%s" % MODULE_VAR, "n2 %s=%s" % MODULE_VAR,
        "n2 %s=%s" % MODULE_VAR]


# --------------------------------------------------------------------------- through the service

def test_service_runs_uneven_srunmpi_and_intelmpi_jobs(tmp_path):
    """3 cores on two 2-CPU nodes: n1[0:1],n2[0] (srunmpi: heterogeneous step)."""
    hello = require_mpi_hello()
    hello_mpich = require_mpi_hello(mpich=True)
    jobs = [{"name": "srun3", "execution": {
                "exec": str(hello), "model": "srunmpi", "stdout": "srun3.out",
                "stderr": "srun3.err", "model_opts": {"mpirun_args": ["--mpi=pmix"]}},
             "resources": {"numCores": {"exact": 3}}},
            {"name": "impi3", "execution": {
                "exec": str(hello_mpich), "model": "intelmpi", "stdout": "impi3.out",
                "stderr": "impi3.err", "model_opts": {"mpirun": "mpiexec.hydra"}},
             "resources": {"numCores": {"exact": 3}}, "dependencies": {"after": ["srun3"]}}]
    (tmp_path / "req.json").write_text(json.dumps([
        {"request": "submit", "jobs": jobs},
        {"request": "control", "command": "finishAfterAllTasksDone"}]))
    service = [sys.executable, "-m", "qcgflow.cli", "service", "--file-path",
               str(tmp_path / "req.json"), "--wd", str(tmp_path), "--id", "t"]
    result = sbatch_and_wait("#!/bin/bash\n%s\n" % " ".join(shlex.quote(a) for a in service),
                             ["-N2", "-w", "n1,n2", "--exclusive"], timeout=120)
    assert result.state == "COMPLETED", result.stdout
    srun3 = parse_mpi_hello((tmp_path / "srun3.out").read_text())
    impi3 = parse_mpi_hello((tmp_path / "impi3.out").read_text())
    assert [(r["rank"], r["node"], r["cpus"]) for r in srun3] == [
        (0, "n1", "0"), (1, "n1", "1"), (2, "n2", "0")]
    assert [(r["rank"], r["node"], r["size"]) for r in impi3] == [
        (0, "n1", 3), (1, "n1", 3), (2, "n2", 3)]
