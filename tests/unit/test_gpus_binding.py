"""GPU discovery in local mode and the binding of GPU ids into a task's environment."""

import re
import subprocess
from types import SimpleNamespace

import pytest

from factories import spec
from qcgflow.runtime.discovery import discover, parse_nodes_gpus, parse_nodes_spec
from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.launch.environment import TaskContext, build_task
from qcgflow.runtime.launch.gpus import wrap_ranks
from qcgflow.runtime.resources import Allocation, NodeAllocation

LOCAL = SimpleNamespace(resources="local", nodes=None, system_core=False)
SMI = ("GPU 0: NVIDIA A100 (UUID: GPU-a)\n  MIG 1g.5gb Device 0: (UUID: MIG-b)\n"
       "GPU 1: NVIDIA A100 (UUID: GPU-c)\n")


def no_smi():
    raise AssertionError("nvidia-smi must not be asked when CUDA_VISIBLE_DEVICES is set")


@pytest.mark.parametrize("environ, smi, gpus", [
    ({"CUDA_VISIBLE_DEVICES": "3,1"}, no_smi, {"h": (1, 3)}),
    ({"CUDA_VISIBLE_DEVICES": ""}, no_smi, {}),            # set and empty: no GPU at all
    ({}, lambda: SMI, {"h": (0, 1)}),
    ({}, lambda: None, {}),                                 # no nvidia-smi
])
def test_local_gpus_from_cuda_visible_devices_else_nvidia_smi(environ, smi, gpus):
    info = discover(LOCAL, environ, hostname="h", cpu_count=2, nvidia_smi=smi)
    assert info.gpus == gpus
    assert info.pool_nodes_with_gpus() == [("h", [0, 1], list(gpus.get("h", ())))]


def test_uuid_cuda_visible_devices_is_not_counted_with_a_warning():
    info = discover(LOCAL, {"CUDA_VISIBLE_DEVICES": "GPU-5a1b"}, hostname="h", cpu_count=2)
    assert info.gpus == {} and "GPU-5a1b" in info.warnings[0]


def test_nodes_spec_gpus():
    spec_text = "a:4:gpus=0+1,b:2:gpus=2-4,c:1,2:gpus=7"
    assert parse_nodes_spec(spec_text) == [("a", 4), ("b", 2), ("c", 1), ("n3", 2)]
    assert parse_nodes_gpus(spec_text) == {"a": (0, 1), "b": (2, 3, 4), "n3": (7,)}
    info = discover(SimpleNamespace(resources="auto", nodes=spec_text, system_core=False),
                    {"CUDA_VISIBLE_DEVICES": "9"}, nvidia_smi=no_smi)
    assert info.gpus == {"a": (0, 1), "b": (2, 3, 4), "n3": (7,)}  # --nodes wins


@pytest.mark.parametrize("bad", ["a:2:gpus=", "a:2:gpus=x", "a:2:gpus=1+1", "a:2:gpus=3-1"])
def test_nodes_spec_bad_gpus(bad):
    with pytest.raises(ResourcesError, match=re.escape("Invalid --nodes value '%s': " % bad)):
        parse_nodes_spec(bad)


def build(desc_resources, allocation, gpus=True, base_env=None, **execution):
    job = spec("a", resources=desc_resources,
               execution=dict({"exec": "/bin/prog"}, **execution))
    ctx = TaskContext(name="a", index=None, value=None, allocation=allocation,
                      root_wd="/w", step_id="s1", gpus=gpus, aux_dir="/aux")
    return build_task(job.execution, ctx, base_env or {})


TWO_NODES = Allocation((NodeAllocation("n1", (0,), (2, 3)), NodeAllocation("n2", (0,), (0, 1))))


def test_task_gets_its_first_nodes_ids_and_the_map():
    command = build({"numCores": 1}, TWO_NODES, base_env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    env = command.env
    assert (env["CUDA_VISIBLE_DEVICES"], env["QCG_PM_GPUS"]) == ("2,3", "2,3")
    assert env["QCG_PM_GPU_MAP"] == "n1=2,3;n2=0,1"
    assert command.argv == ["/bin/prog"]


def test_task_without_gpus_sees_none_when_the_pool_has_gpus():
    plain = Allocation((NodeAllocation("n1", (0,)),))
    env = build({"numCores": 1}, plain, base_env={"CUDA_VISIBLE_DEVICES": "0,1"}).env
    assert (env["CUDA_VISIBLE_DEVICES"], env["QCG_PM_GPUS"], env["QCG_PM_GPU_MAP"]) == ("", "", "")


def test_no_gpus_in_the_pool_leaves_the_environment_alone():
    plain = Allocation((NodeAllocation("n1", (0,)),))
    env = build({"numCores": 1}, plain, gpus=False, base_env={"CUDA_VISIBLE_DEVICES": "5"}).env
    assert env["CUDA_VISIBLE_DEVICES"] == "5" and "QCG_PM_GPUS" not in env


def test_mpi_ranks_go_through_the_per_node_wrapper():
    command = build({"numCores": 1, "numNodes": 2}, TWO_NODES, model="openmpi")
    assert command.argv[-5:-1] == ["/bin/sh", "-c", command.argv[-3], "qcgflow-gpus"]
    assert command.argv[-1] == "/bin/prog"
    assert command.env["QCG_PM_RANK_NODES"] == "n1 n2"


@pytest.mark.parametrize("extra, expected", [
    ({"SLURMD_NODENAME": "n2"}, "0,1"),                       # Slurm: the node's own name
    ({"SLURMD_NODENAME": "other", "OMPI_COMM_WORLD_RANK": "1"}, "0,1"),
    ({"PMI_RANK": "0"}, "2,3"),                               # local mode: the rank's node
    ({"SLURM_PROCID": "1"}, "0,1"),
])
def test_rank_wrapper_picks_the_ids_of_the_ranks_node(extra, expected):
    argv, env = wrap_ranks(["/bin/sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES|$QCG_PM_GPUS"'],
                           TWO_NODES)
    env.update(QCG_PM_GPU_MAP="n1=2,3;n2=0,1", PATH="/usr/bin:/bin", **extra)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10).stdout
    assert out.strip() == "%s|%s" % (expected, expected)
