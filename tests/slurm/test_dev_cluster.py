"""The dev Slurm cluster itself (ci/dev-cluster/dev-cluster.sh): nodes, batch jobs, steps,
environment modules, Open MPI and MPICH across two virtual nodes, ssh to a node name.

These run before anything of qcgflow is involved, so a broken cluster shows up here with
a precise message rather than as an obscure failure in a runtime test.
"""

import os
import subprocess

import pytest

from support.slurm import (MODULE, MODULE_COMMAND, MODULE_VAR, NODES, REPO, cluster_env,
                           parse_mpi_hello, require_mpi_hello, require_slurm, run_bounded,
                           salloc_run, sbatch_and_wait)

pytestmark = pytest.mark.slurm


def test_all_nodes_listed_in_partition():
    require_slurm()
    out = run_bounded(["sinfo", "-h", "-N", "-o", "%N %P %c"], timeout=30).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    for node in NODES:
        partition, cpus = rows[node]
        assert partition.rstrip("*") == "debug" and int(cpus) >= 1, rows


def test_srun_two_nodes_see_distinct_node_names():
    require_slurm()
    res = run_bounded(["srun", "-N2", "-w", "n1,n2", "--ntasks-per-node=1",
                       "printenv", "SLURMD_NODENAME"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["n1", "n2"]


def test_tasks_see_their_node_name_as_host_name():
    # Each slurmd runs in a UTS namespace named after its node: what MPI libraries map
    # rankfile and machine-file hosts by. A shared host name would hide misplaced ranks.
    require_slurm()
    res = run_bounded(["srun", "-N2", "-w", "n3,n4", "--ntasks-per-node=1", "sh", "-c",
                       'echo "$SLURMD_NODENAME=$(hostname)"'], timeout=60)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["n3=n3", "n4=n4"]


def test_sbatch_job_runs_on_first_node_and_step_spans_both():
    require_slurm()
    script = ("#!/bin/bash\n"
              "echo \"batch node=$SLURMD_NODENAME nodelist=$SLURM_JOB_NODELIST\"\n"
              "srun --ntasks-per-node=1 printenv SLURMD_NODENAME | sort | tr '\\n' ' '\n")
    result = sbatch_and_wait(script, ["-N2", "-w", "n1,n2"], timeout=60)
    assert result.state == "COMPLETED", result
    assert "batch node=n1 nodelist=n[1-2]" in result.stdout
    assert "n1 n2" in result.stdout


def test_failing_batch_job_reports_failed():
    require_slurm()
    result = sbatch_and_wait("#!/bin/sh\necho about-to-fail\nexit 3\n", ["-N1", "-w", "n3"])
    assert result.state == "FAILED" and "about-to-fail" in result.stdout, result


def _clean_job_env():
    """Environment as a fresh login would have it: no module state inherited from pytest."""
    env = cluster_env()
    for name in list(env):
        if name.startswith(("MODULE", "BASH_FUNC_", "LOADEDMODULES", "_LMFILES_")):
            del env[name]
    return env


@pytest.mark.modules
def test_module_load_in_a_job_step():
    require_slurm()
    if not os.path.exists("/usr/share/modules/init/bash"):
        pytest.skip("environment-modules not installed: run `bash ci/dev-cluster/dev-cluster.sh up`")
    res = run_bounded(["srun", "-N1", "-w", "n2", "bash", "-l", "-c",
                       "module load %s && %s" % (MODULE, MODULE_COMMAND)],
                      timeout=60, env=_clean_job_env())
    assert res.returncode == 0, res.stderr
    assert "%s=%s" % MODULE_VAR in res.stdout
    missing = run_bounded(["bash", "-l", "-c", "module load qcgflow-no-such-module"],
                          timeout=30, env=_clean_job_env())
    assert missing.returncode != 0


def _assert_hello(res, size, nodes):
    assert res.returncode == 0, "exit %s\nstdout: %s\nstderr: %s" % (
        res.returncode, res.stdout, res.stderr[-3000:])
    rows = parse_mpi_hello(res.stdout)
    assert [row["rank"] for row in rows] == list(range(size)), res.stdout
    assert all(row["size"] == size and row["allreduce"] == "ok" for row in rows), res.stdout
    assert {row["node"] for row in rows} == set(nodes), res.stdout


def test_mpirun_over_two_nodes_inside_salloc():
    hello = require_mpi_hello()
    res = salloc_run(["mpirun", "-np", "4", str(hello)], nodes=["n1", "n2"],
                     args=["-n4", "--ntasks-per-node=2"], timeout=90)
    _assert_hello(res, 4, ["n1", "n2"])


def test_srun_pmix_open_mpi_over_two_nodes():
    hello = require_mpi_hello()
    res = run_bounded(["srun", "-N2", "-n4", "-w", "n1,n2", "--mpi=pmix", str(hello)],
                      timeout=90)
    _assert_hello(res, 4, ["n1", "n2"])


def test_srun_pmi2_mpich_over_two_nodes():
    hello = require_mpi_hello(mpich=True)
    res = run_bounded(["srun", "-N2", "-n2", "-w", "n3,n4", "--mpi=pmi2", str(hello)],
                      timeout=90)
    _assert_hello(res, 2, ["n3", "n4"])


def test_mpi_hello_takes_node_name_argument_and_reports_binding():
    hello = require_mpi_hello()
    # --exclusive: a mask may only name CPUs the job owns, so own the whole node.
    res = run_bounded(["srun", "-N1", "-n1", "-w", "n4", "--exclusive", "--mpi=pmix",
                       "--cpu-bind=mask_cpu:0x1", str(hello), "given-name"], timeout=60)
    _assert_hello(res, 1, ["given-name"])
    assert parse_mpi_hello(res.stdout)[0]["cpus"] == "0"


def test_ssh_to_a_node_name():
    require_slurm()
    probe = subprocess.run(["ssh", "-G", "n2"], capture_output=True, text=True, timeout=10)
    if "port 22\n" in probe.stdout or probe.returncode:
        pytest.skip("ssh n2 is not mapped to the dev cluster's sshd: run "
                    "`bash ci/dev-cluster/dev-cluster.sh up` (QCGFLOW_DEV_WITH_SSH=1)")
    res = run_bounded(["ssh", "n2", "echo ssh-ok; hostname; cd %s && pwd" % REPO], timeout=30)
    assert res.returncode == 0, res.stderr
    # ssh n2 lands in n2's view (its own sshd in n2's UTS namespace), as agents started
    # with --nl-start-method ssh must.
    assert res.stdout.split() == ["ssh-ok", "n2", str(REPO)]
