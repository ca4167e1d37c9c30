"""GPUs in local mode: discovery, scheduling and binding through a real service (issue 18).

No GPU is needed: the service is given GPU ids (CUDA_VISIBLE_DEVICES of its environment, or
``gpus=`` in ``--nodes``) and every task records the ids it was given and when it ran.
"""

import itertools

import pytest

from support.mpi import MPI_ENV, require
from support.jobs import job, submit
from support.services import run_service

RESOURCES_INFO = {"request": "resourcesInfo"}

# Records "<CUDA_VISIBLE_DEVICES> <QCG_PM_GPUS> <start> <end>" of one iteration; the sleep
# makes runs on the same GPUs overlap in time if the scheduler ever shared them.
RECORD = ('s=$(date +%s.%N); sleep 0.4; '
          'echo "${CUDA_VISIBLE_DEVICES-unset} ${QCG_PM_GPUS-unset} $s $(date +%s.%N)" '
          '> rec.${it}')


def gpu_job(name, gpus, **kwargs):
    desc = job(name, **kwargs)
    desc.setdefault("resources", {"numCores": {"exact": 1}})["nodeCrs"] = {"gpu": gpus}
    return desc


def records(result, count):
    rows = []
    for it in range(count):
        cuda, qcg, start, end = result.read("rec.%d" % it).split()
        rows.append((cuda, qcg, float(start), float(end)))
    return rows


def assert_no_shared_gpu_in_overlapping_runs(rows):
    for (ids_a, _, s_a, e_a), (ids_b, _, s_b, e_b) in itertools.combinations(rows, 2):
        overlap = s_a < e_b and s_b < e_a
        shared = set(ids_a.split(",")) & set(ids_b.split(","))
        assert not (overlap and shared), (ids_a, ids_b, rows)


def test_service_gpus_from_cuda_visible_devices_are_bound_one_per_task(tmp_path):
    it = {"stop": 6}
    result = run_service(tmp_path, [RESOURCES_INFO, submit(
        gpu_job("g", 1, script=RECORD, iteration=it),
        job("plain", script='echo "${CUDA_VISIBLE_DEVICES-unset}|${QCG_PM_GPUS-unset}" > p'))],
        nodes=None, env={"CUDA_VISIBLE_DEVICES": "9,7"}, timeout=60)
    assert (result.state("g"), result.state("plain")) == ("SUCCEED", "SUCCEED"), result.describe()
    info = result.reply(1)["data"]
    assert (info["total_gpus"], info["free_gpus"]) == (2, 2)
    rows = records(result, 6)
    assert all(cuda == qcg and cuda in ("7", "9") for cuda, qcg, _, _ in rows), rows
    assert {cuda for cuda, _, _, _ in rows} == {"7", "9"}
    assert_no_shared_gpu_in_overlapping_runs(rows)
    # The two GPUs were used at the same time (else the check above proves nothing).
    assert any(s_a < e_b and s_b < e_a for (_, _, s_a, e_a), (_, _, s_b, e_b)
               in itertools.combinations(rows, 2)), rows
    # A job without GPUs sees none: set but empty (unset would show every GPU).
    assert result.read("p").strip() == "|"
    assert result.final_status["Resources"]["TotalGPUs"] == 2


def test_nodes_option_gpus_and_a_two_node_job_gets_each_nodes_ids(tmp_path):
    script = ('echo "$CUDA_VISIBLE_DEVICES|$QCG_PM_GPUS|$QCG_PM_GPU_MAP" > two; '
              'env | grep -c "^CUDA_VISIBLE_DEVICES=" >> two')
    result = run_service(tmp_path, [RESOURCES_INFO, submit(
        gpu_job("two", 1, script=script, cores=1, nodes=2))],
        nodes="a:2:gpus=0+1,b:2:gpus=4-5", timeout=60)
    assert result.state("two") == "SUCCEED", result.describe()
    info = result.reply(1)["data"]
    assert info["gpus"] == {"a": [0, 1], "b": [4, 5]} and info["total_gpus"] == 4
    assert result.read("two").split() == ["0|0|a=0;b=4", "1"]


def test_over_ask_is_refused_at_submit_with_the_field(tmp_path):
    result = run_service(tmp_path, [submit(gpu_job("big", 3)), submit(gpu_job("ok", 2))],
                         nodes="a:2:gpus=0+1,b:2", timeout=60)
    reply = result.reply(1)
    assert reply["code"] != 0
    assert "big" in reply["message"] and "resources.nodeCrs.gpu" in reply["message"]
    assert "no node has more than 2" in reply["message"]
    assert result.state("ok") == "SUCCEED", result.describe()


def test_bad_gpus_in_nodes_is_a_one_line_error(tmp_path):
    result = run_service(tmp_path, [submit(job("a"))], nodes="a:2:gpus=x", timeout=30)
    assert result.returncode != 0
    assert "Invalid --nodes value 'a:2:gpus=x': gpus= takes GPU ids" in result.stderr
    assert "Traceback" not in result.stderr


def test_openmpi_ranks_see_their_own_nodes_gpus(tmp_path):
    require("mpirun", "Open MPI (apt-get install openmpi-bin)")
    result = run_service(tmp_path, [submit(gpu_job(
        "mpi", 1, exec_="/bin/sh",
        args=["-c", 'echo "$OMPI_COMM_WORLD_RANK $CUDA_VISIBLE_DEVICES"'],
        cores=2, nodes=2, model="openmpi", stdout="out", stderr="err"))],
        nodes="a:2:gpus=0+1,b:2:gpus=6+7", env=MPI_ENV, timeout=60)
    assert result.state("mpi") == "SUCCEED", result.describe()
    lines = sorted(result.read("out").split("\n")[:-1])
    assert lines == ["0 0", "1 0", "2 6", "3 6"], lines
