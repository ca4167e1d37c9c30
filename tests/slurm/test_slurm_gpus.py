"""GPUs in Slurm mode on the dev cluster's dummy GPU GRES (issue 18).

The dev cluster declares ``QCGFLOW_DEV_GPUS`` (default 2) dummy GPUs per node
(``Gres=gpu:N`` over regular files in gres.conf). A blocker job holds GPU 0 of n1, so the
pilot's allocation (one GPU per node) has GPU 1 on n1 and GPU 0 on n2: the service must
read each node's own ids from ``scontrol show job -d`` and bind them per node.
"""

import json
import re
import subprocess
import sys
import uuid

import pytest

from support.eventually import eventually
from support.slurm import cluster_env, require_slurm, run_bounded, salloc_run

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]
REPLY = re.compile(r"qcgflow\.runtime\.service: request \d+ \([^)]*\): (.*)$", re.M)

pytestmark = pytest.mark.slurm


def require_gpu_gres(nodes=("n1", "n2")):
    require_slurm()
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %G"], capture_output=True,
                         text=True, timeout=20, env=cluster_env()).stdout
    gres = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    missing = [n for n in nodes if "gpu" not in gres.get(n, "")]
    if missing:
        pytest.skip("the dev cluster declares no GPU GRES on %s: restart it with this "
                    "checkout's `bash ci/dev-cluster/dev-cluster.sh up`" % ",".join(missing))


@pytest.fixture
def n1_gpu0_busy():
    """A batch job holding GPU 0 (and one CPU) of n1 until the test ends."""
    require_gpu_gres()
    name = "qcgflow-gpu-blocker-%s" % uuid.uuid4().hex[:8]
    env = cluster_env()
    submit = run_bounded(["sbatch", "--parsable", "-J", name, "-w", "n1", "-n1",
                          "--gres=gpu:1", "-o", "/dev/null", "--wrap", "sleep 300"],
                         timeout=30, env=env)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    try:
        def show():
            return subprocess.run(["scontrol", "show", "job", "-d", job_id],
                                  capture_output=True, text=True, timeout=20, env=env).stdout

        detail = eventually(lambda: (lambda d: d if "JobState=RUNNING" in d else None)(show()),
                            30, 0.1, lambda: "the blocker job to run: " + show())
        assert "GRES=gpu:1(IDX:0)" in detail, detail
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=20, env=env)


def _job(name, script, gpus, **resources):
    return {"name": name, "execution": {"script": script},
            "resources": dict({"numCores": {"exact": 1}, "nodeCrs": {"gpu": gpus}},
                              **resources)}


def test_two_node_job_gets_each_nodes_own_gpu_ids(tmp_path, n1_gpu0_busy):
    require_gpu_gres()
    # The node by host name (the dev cluster names each node's UTS namespace after it):
    # the ranks Open MPI's mpirun starts on its own node have no SLURMD_NODENAME.
    record = ('echo "$(hostname) $CUDA_VISIBLE_DEVICES|$QCG_PM_GPUS|$QCG_PM_GPU_MAP"')
    requests = [
        {"request": "resourcesInfo"},
        {"request": "submit", "jobs": [_job("too_many", "true", 2)]},
        {"request": "submit", "jobs": [
            dict(_job("two", record + " > two.out", 1, numNodes={"exact": 2})),
            # srunmpi: one rank per node, each through the per-node GPU wrapper
            dict(_job("ranks", record, 1, numNodes={"exact": 2}),
                 execution={"exec": "/bin/sh", "args": ["-c", record], "model": "srunmpi",
                            "stdout": "ranks.out"},
                 dependencies={"after": ["two"]}),
            # openmpi: mpirun starts orted on each node through srun; ranks inherit it
            dict(_job("ompi", record, 1, numNodes={"exact": 2}),
                 execution={"exec": "/bin/sh", "args": ["-c", record], "model": "openmpi",
                            "stdout": "ompi.out", "stderr": "ompi.err"},
                 dependencies={"after": ["ranks"]}),
            {"name": "plain", "execution": {"script": 'echo "[$CUDA_VISIBLE_DEVICES]" > plain.out'},
             "dependencies": {"after": ["ompi"]}},
        ]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    (tmp_path / "req.json").write_text(json.dumps(requests))
    done = salloc_run(SERVICE + ["--file-path", str(tmp_path / "req.json"), "--wd",
                                 str(tmp_path), "--id", "t"],
                      args=["--gres=gpu:1", "--ntasks-per-node=1"], timeout=120)
    log = (tmp_path / ".qcgpjm-service-t" / "service.log").read_text()
    assert done.returncode == 4, done.stderr + log  # 4: it refused the over-ask (request 2)
    replies = [json.loads(m.group(1)) for m in REPLY.finditer(log)]
    assert replies[0]["data"]["gpus"] == {"n1": [1], "n2": [0]}, replies[0]
    assert replies[1]["code"] != 0 and "too_many" in replies[1]["message"]
    assert "resources.nodeCrs.gpu" in replies[1]["message"]
    assert (tmp_path / "two.out").read_text().split() == ["n1", "1|1|n1=1;n2=0"]
    ranks = sorted((tmp_path / "ranks.out").read_text().splitlines())
    assert ranks == ["n1 1|1|n1=1;n2=0", "n2 0|0|n1=1;n2=0"], ranks
    ompi = sorted((tmp_path / "ompi.out").read_text().splitlines())
    assert ompi == ranks, (ompi, (tmp_path / "ompi.err").read_text())
    assert (tmp_path / "plain.out").read_text().strip() == "[]"
