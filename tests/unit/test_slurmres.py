"""Unit tests of qcgflow.runtime.slurmres: Slurm's notations, parsed (pure, no cluster).

The scontrol texts below are copied from the dev cluster (Slurm 22.05, nodes n1..n4 with
2 CPUs each); the GPU ones follow the same layout with the GRES field Slurm prints.
"""

import ast
import pathlib
from datetime import datetime

import pytest

from qcgflow.runtime import slurmres
from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.resources import ResourcePool
from qcgflow.runtime.slurmres import (JobDetails, SlurmAllocation, SlurmNode, allocation_from_env,
                                      expand_counts, expand_ids, expand_node_list, job_id_of,
                                      limit_nodes, nodes_of, parse_gres_gpus, parse_job_details,
                                      reserve_system_core)

SBATCH_N3_N5 = """\
JobId=35 JobName=env-batch.sh
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   RunTime=00:00:00 TimeLimit=00:10:00 TimeMin=N/A
   StartTime=2026-11-25T00:50:01 EndTime=2026-11-25T01:00:01 Deadline=N/A
   Partition=debug AllocNode:Sid=localhost:16566
   ReqNodeList=n[1-3] ExcNodeList=(null)
   NodeList=n[1-3]
   BatchHost=n1
   NumNodes=3 NumCPUs=5 NumTasks=5 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=5,node=3,billing=5
   JOB_GRES=(null)
     Nodes=n[1-2] CPU_IDs=0-1 Mem=0 GRES=
     Nodes=n3 CPU_IDs=0 Mem=0 GRES=
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
   Command=/tmp/h2/j.sh
   WorkDir=/tmp
"""

ONE_LINE = ("JobId=1 JobName=j.sh UserId=root(0) JobState=RUNNING TimeLimit=00:10:00 "
            "StartTime=2026-11-25T00:50:01 EndTime=2026-11-25T01:00:01 Deadline=N/A "
            "ReqNodeList=n[1-3] ExcNodeList=(null) NodeList=n[1-3] BatchHost=n1 NumNodes=3 "
            "NumCPUs=5 JOB_GRES=(null)   Nodes=n[1-2] CPU_IDs=0-1 Mem=0 GRES=   Nodes=n3 "
            "CPU_IDs=0 Mem=0 GRES= MinCPUsNode=1 Command=/tmp/h2/j.sh WorkDir=/tmp")

UNLIMITED = """\
JobId=2 JobName=interactive
   RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A
   StartTime=2026-11-25T00:50:03 EndTime=Unknown Deadline=N/A
   NodeList=n4
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
     Nodes=n4 CPU_IDs=0 Mem=0 GRES=
"""

GPUS = """\
JobId=7 JobName=gpu
   StartTime=2026-01-02T03:04:05 EndTime=2026-01-02T04:04:05 Deadline=N/A
   NodeList=g[01-03]
   NumNodes=3 NumCPUs=12 NumTasks=3
   JOB_GRES=gpu:6
     Nodes=g[01-02] CPU_IDs=0-3 Mem=1000 GRES=gpu:a100:2(IDX:0-1)
     Nodes=g03 CPU_IDs=4-7 Mem=1000 GRES=gpu:a100:1(IDX:2),mps:100(0/100)
"""

NO_DETAILS = """\
JobId=9 JobName=x
   NodeList=n[1-2]
   NumNodes=2 NumCPUs=4 NumTasks=4
"""


# -- expand_node_list -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("n1", ["n1"]),
    ("n[1-3,5]", ["n1", "n2", "n3", "n5"]),
    ("tcn[0001-0004]", ["tcn0001", "tcn0002", "tcn0003", "tcn0004"]),
    ("a[1-2],b3", ["a1", "a2", "b3"]),
    ("b3,a[1-2]", ["b3", "a1", "a2"]),                      # order kept as written
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),      # as scontrol show hostnames
    ("n[08-10]", ["n08", "n09", "n10"]),
    ("n[8-010]", ["n8", "n9", "n10"]),                       # width of the first bound
    ("n[01-3]", ["n01", "n02", "n03"]),
    ("n[1-2,05]", ["n1", "n2", "n05"]),
    ("x,y", ["x", "y"]),
    ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
    ("node-01.cluster", ["node-01.cluster"]),
    ("n[7]", ["n7"]),
    ("[1-2]", ["1", "2"]),
    ("c[1-2],d[3-4],e", ["c1", "c2", "d3", "d4", "e"]),
])
def test_expand_node_list(spec, expected):
    assert expand_node_list(spec) == expected


@pytest.mark.parametrize("spec, reason", [
    ("", "no nodes"),
    ("   ", "no nodes"),
    ("n[5-3]", "range '5-3' goes backwards"),
    ("n[]", "empty '[]'"),
    ("n[1-10:2]", "bad range '1-10:2' in brackets (expected N or N-M)"),
    ("n[a-b]", "bad range 'a-b' in brackets (expected N or N-M)"),
    ("n[1-]", "bad range '1-' in brackets (expected N or N-M)"),
    ("n[-2]", "bad range '-2' in brackets (expected N or N-M)"),
    ("n[1,,2]", "bad range '' in brackets (expected N or N-M)"),
    ("n[\u00b2]", "bad range '\u00b2' in brackets (expected N or N-M)"),
    ("a,,b", "empty entry"),
    ("a,", "empty entry"),
    (",a", "empty entry"),
    ("n[1", "'[' without ']'"),
    ("n]", "']' without '['"),
    ("n[[1]]", "nested '['"),
    ("n1,n1", "node 'n1' is listed twice"),
    ("n[1-2],n2", "node 'n2' is listed twice"),
    ("a b", "node lists contain no whitespace"),
    ("n1:2", "node name 'n1:2' contains one of , : [ ]"),
    ("n[0-2000000]", "range '0-2000000' is too large"),
    ("a[1-1000]b[1-1000]c[1-2]", "expands to more than 1000000 names"),
])
def test_expand_node_list_errors(spec, reason):
    with pytest.raises(ResourcesError) as info:
        expand_node_list(spec)
    assert str(info.value) == f"Invalid SLURM_JOB_NODELIST value '{spec}': {reason}"


def test_expand_node_list_error_names_the_given_source():
    with pytest.raises(ResourcesError, match=r"^Invalid SLURM_NODELIST value 'n\[': "):
        expand_node_list("n[", "SLURM_NODELIST")


# -- expand_counts / expand_ids -------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("2", [2]),
    ("2(x3),1", [2, 2, 2, 1]),
    ("2(x2)", [2, 2]),
    ("1(x4)", [1, 1, 1, 1]),
    ("2,1", [2, 1]),
    ("48(x2),24,48(x1)", [48, 48, 24, 48]),
    (" 2(x2) , 1 ", [2, 2, 1]),
])
def test_expand_counts(spec, expected):
    assert expand_counts(spec) == expected


@pytest.mark.parametrize("spec, reason", [
    ("", "no counts"),
    ("2,,1", "entry '' is not N or N(xM)"),
    ("x", "entry 'x' is not N or N(xM)"),
    ("2(3)", "entry '2(3)' is not N or N(xM)"),
    ("2(x)", "entry '2(x)' is not N or N(xM)"),
    ("2x3", "entry '2x3' is not N or N(xM)"),
    ("-1", "entry '-1' is not N or N(xM)"),
    ("\u0662", "entry '\u0662' is not N or N(xM)"),      # an Arabic-Indic digit two
    ("0", "entry '0' has a zero count"),
    ("2(x0)", "entry '2(x0)' has a zero count"),
    ("1(x2000000)", "expands to more than 1000000 values"),
])
def test_expand_counts_errors(spec, reason):
    with pytest.raises(ResourcesError) as info:
        expand_counts(spec)
    assert str(info.value) == f"Invalid SLURM_JOB_CPUS_PER_NODE value '{spec}': {reason}"


@pytest.mark.parametrize("spec, expected", [
    ("0", [0]), ("0-1", [0, 1]), ("0-1,4", [0, 1, 4]), ("4,0-1", [0, 1, 4]),
    ("2-2", [2]), ("10-12,3", [3, 10, 11, 12]),
])
def test_expand_ids(spec, expected):
    assert expand_ids(spec, "CPU_IDs") == expected


@pytest.mark.parametrize("spec, reason", [
    ("", "no ids"), ("a", "entry 'a' is not N or N-M"), ("1-0", "range '1-0' goes backwards"),
    ("0-1,1", "an id is listed twice"), ("0,,1", "entry '' is not N or N-M"),
    ("0x1", "entry '0x1' is not N or N-M"),
])
def test_expand_ids_errors(spec, reason):
    with pytest.raises(ResourcesError) as info:
        expand_ids(spec, "CPU_IDs")
    assert str(info.value) == f"Invalid CPU_IDs value '{spec}': {reason}"


# -- GRES -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("", []), ("(null)", []),
    ("gpu:2(IDX:0-1)", [0, 1]),
    ("gpu:a100:2(IDX:0-1)", [0, 1]),
    ("gpu(IDX:0-1)", [0, 1]),                        # GRES_IDX= of older Slurm versions
    ("gpu:a100:1(IDX:0),gpu:v100:1(IDX:3)", [0, 3]),
    ("gpu:4(IDX:0,2-3,5)", [0, 2, 3, 5]),
    ("gpu:1(IDX:N/A)", []),
    ("mps:100(0/100)", []),
    ("mps:100(0/100),gpu:1(IDX:1)", [1]),
    ("nvgpu:1(IDX:0)", []),                           # another GRES kind, not a gpu
])
def test_parse_gres_gpus(value, expected):
    assert parse_gres_gpus(value) == expected


@pytest.mark.parametrize("value, message", [
    ("gpu:2(IDX:x)", "Invalid GRES value 'x': entry 'x' is not N or N-M"),
    ("gpu:a:1(IDX:0),gpu:b:1(IDX:0)",
     "Invalid GRES value 'gpu:a:1(IDX:0),gpu:b:1(IDX:0)': a GPU index is listed twice"),
])
def test_parse_gres_gpus_errors(value, message):
    with pytest.raises(ResourcesError) as info:
        parse_gres_gpus(value)
    assert str(info.value) == message


# -- parse_job_details ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [SBATCH_N3_N5, ONE_LINE], ids=["multi-line", "one-line"])
def test_parse_job_details_cpu_ids(text):
    details = parse_job_details(text)
    assert details.cpu_ids == {"n1": (0, 1), "n2": (0, 1), "n3": (0,)}


@pytest.mark.parametrize("text, field, expected", [
    (SBATCH_N3_N5, "job_id", "35"),
    (SBATCH_N3_N5, "node_list", "n[1-3]"),
    (SBATCH_N3_N5, "end_time", datetime(2026, 11, 25, 1, 0, 1)),
    (SBATCH_N3_N5, "gpu_ids", {}),
    (ONE_LINE, "end_time", datetime(2026, 11, 25, 1, 0, 1)),
    (UNLIMITED, "end_time", None),
    (UNLIMITED, "cpu_ids", {"n4": (0,)}),
    (GPUS, "cpu_ids", {"g01": (0, 1, 2, 3), "g02": (0, 1, 2, 3), "g03": (4, 5, 6, 7)}),
    (GPUS, "gpu_ids", {"g01": (0, 1), "g02": (0, 1), "g03": (2,)}),
    (NO_DETAILS, "cpu_ids", {}),
    (NO_DETAILS, "node_list", "n[1-2]"),
    ("", "job_id", None),
    ("EndTime=garbage", "end_time", None),            # unreadable: unknown, not fatal
])
def test_parse_job_details_fields(text, field, expected):
    assert getattr(parse_job_details(text), field) == expected


@pytest.mark.parametrize("text, message", [
    ("JobId=1 CPU_IDs=0-1", "Invalid scontrol show job -d value 'CPU_IDs=0-1': "
                            "detail entry without a preceding Nodes="),
    ("Nodes=n1 CPU_IDs=0-1 Nodes=n[1-2] CPU_IDs=0",
     "Invalid scontrol show job -d Nodes value 'n[1-2]': node 'n1' appears in two groups"),
    ("Nodes=n[1-2 CPU_IDs=0", "Invalid scontrol show job -d Nodes value 'n[1-2': '[' without ']'"),
    ("Nodes=n1 CPU_IDs=1-0", "Invalid scontrol show job -d CPU_IDs value '1-0': "
                             "range '1-0' goes backwards"),
    ("Nodes=n1 CPU_IDs=0 GRES=gpu:1(IDX:z)",
     "Invalid scontrol show job -d GRES value 'z': entry 'z' is not N or N-M"),
])
def test_parse_job_details_errors(text, message):
    with pytest.raises(ResourcesError) as info:
        parse_job_details(text)
    assert str(info.value) == message


def test_parse_job_details_gres_idx_of_older_slurm():
    details = parse_job_details("Nodes=g1 CPU_IDs=0-1 Mem=0 GRES_IDX=gpu(IDX:0-1)")
    assert details.gpu_ids == {"g1": (0, 1)}


# -- allocation_from_env --------------------------------------------------------------------------

ENV_N3 = {"SLURM_JOB_ID": "35", "SLURM_JOB_NODELIST": "n[1-3]",
          "SLURM_JOB_CPUS_PER_NODE": "2(x2),1"}


def test_allocation_from_scontrol_details():
    allocation = allocation_from_env(ENV_N3, parse_job_details(SBATCH_N3_N5))
    assert allocation == SlurmAllocation(
        job_id="35", nodes=(SlurmNode("n1", (0, 1)), SlurmNode("n2", (0, 1)), SlurmNode("n3", (0,))),
        end_time=datetime(2026, 11, 25, 1, 0, 1), source="scontrol")


def test_allocation_real_cpu_ids_win_over_counts():
    details = parse_job_details("NodeList=n[1-2] Nodes=n1 CPU_IDs=1 Nodes=n2 CPU_IDs=0,3")
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_CPUS_PER_NODE": "1,2"}
    assert nodes_of(allocation_from_env(env, details)) == [("n1", [1]), ("n2", [0, 3])]


def test_allocation_from_counts_only():
    allocation = allocation_from_env(ENV_N3)
    assert nodes_of(allocation) == [("n1", [0, 1]), ("n2", [0, 1]), ("n3", [0])]


@pytest.mark.parametrize("field, expected", [
    ("source", "environment"),
    ("end_time", None),
    ("notes", ("CPU ids of the Slurm allocation are unknown (no scontrol details): using "
               "0..n-1 from SLURM_JOB_CPUS_PER_NODE",)),
])
def test_allocation_from_counts_only_says_so(field, expected):
    assert getattr(allocation_from_env(ENV_N3), field) == expected


def test_allocation_details_without_cpu_ids_fall_back_to_counts():
    allocation = allocation_from_env(ENV_N3, parse_job_details(NO_DETAILS))
    assert allocation.source == "environment"


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_JOBID": "4", "SLURM_NODELIST": "n[3-4]", "SLURM_JOB_CPUS_PER_NODE": "2(x2)"},
     [("n3", [0, 1]), ("n4", [0, 1])]),
    ({"SLURM_JOB_ID": "4", "SLURM_JOB_NODELIST": "tcn[0001-0002]",
      "SLURM_NODELIST": "ignored", "SLURM_JOB_CPUS_PER_NODE": "1,3"},
     [("tcn0001", [0]), ("tcn0002", [0, 1, 2])]),
])
def test_allocation_variable_fallbacks(env, expected):
    assert nodes_of(allocation_from_env(env)) == expected


def test_allocation_node_list_from_details_when_environment_has_none():
    allocation = allocation_from_env({"SLURM_JOB_ID": "2"}, parse_job_details(UNLIMITED))
    assert nodes_of(allocation) == [("n4", [0])]


def test_allocation_gpus_from_gres():
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "g[01-03]"}
    allocation = allocation_from_env(env, parse_job_details(GPUS))
    assert [node.gpus for node in allocation.nodes] == [(0, 1), (0, 1), (2,)]


@pytest.mark.parametrize("env, gpus, notes", [
    # The pilot's own node only (the batch host: SLURMD_NODENAME, else the first node);
    # the other nodes' ids are unknown, never assumed to be the same (a note says so).
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, [(0, 1), (), ()], 2),
    ({"CUDA_VISIBLE_DEVICES": "3", "SLURMD_NODENAME": "n2"}, [(), (3,), ()], 2),
    ({"SLURM_JOB_GPUS": "1,2"}, [(1, 2), (), ()], 2),
    ({"SLURM_STEP_GPUS": "5", "SLURM_JOB_GPUS": "1,2"}, [(5,), (), ()], 2),
    ({"CUDA_VISIBLE_DEVICES": ""}, [(), (), ()], 1),
    ({"CUDA_VISIBLE_DEVICES": "GPU-5a1b,GPU-77c2"}, [(), (), ()], 2),  # UUIDs: a note
])
def test_allocation_gpus_from_the_environment_are_the_pilot_nodes(env, gpus, notes):
    allocation = allocation_from_env(dict(ENV_N3, **env))
    assert ([node.gpus for node in allocation.nodes], len(allocation.notes)) == (gpus, notes)


@pytest.mark.parametrize("env, details, message", [
    ({"SLURM_JOB_ID": "1"}, None,
     "Not inside a Slurm allocation: SLURM_JOB_NODELIST is not set"),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-2]"}, None,
     "Cannot tell the cores of the Slurm allocation: no CPU_IDs from scontrol and "
     "SLURM_JOB_CPUS_PER_NODE is not set"),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_CPUS_PER_NODE": "2(x2)"},
     None, "SLURM_JOB_CPUS_PER_NODE '2(x2)' gives 2 counts but SLURM_JOB_NODELIST 'n[1-3]' "
           "lists 3 nodes"),
    ({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_CPUS_PER_NODE": "2(x)"},
     None, "Invalid SLURM_JOB_CPUS_PER_NODE value '2(x)': entry '2(x)' is not N or N(xM)"),
    ({"SLURM_JOB_ID": "1", "SLURM_NODELIST": "n[1-"}, None,
     "Invalid SLURM_NODELIST value 'n[1-': '[' without ']'"),
    ({"SLURM_JOB_ID": "35", "SLURM_JOB_NODELIST": "n[1-4]"}, SBATCH_N3_N5,
     "scontrol show job -d 35 gives no CPU_IDs for node 'n4' of SLURM_JOB_NODELIST 'n[1-4]'"),
])
def test_allocation_errors(env, details, message):
    parsed = parse_job_details(details) if details else None
    with pytest.raises(ResourcesError) as info:
        allocation_from_env(env, parsed)
    assert str(info.value) == message


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_JOB_ID": "12"}, "12"), ({"SLURM_JOBID": "13"}, "13"),
    ({"SLURM_JOB_ID": "12", "SLURM_JOBID": "13"}, "12"), ({}, None), ({"SLURM_JOB_ID": ""}, None),
])
def test_job_id_of(env, expected):
    assert job_id_of(env) == expected


# -- limit_nodes ----------------------------------------------------------------------------------

FOUR = SlurmAllocation(job_id="1", nodes=tuple(SlurmNode(f"n{i}", (0, 1)) for i in range(1, 5)))


@pytest.mark.parametrize("begin, end, names", [
    (None, None, ["n1", "n2", "n3", "n4"]),
    (0, 4, ["n1", "n2", "n3", "n4"]),
    (1, None, ["n2", "n3", "n4"]),
    (None, 2, ["n1", "n2"]),
    (1, 3, ["n2", "n3"]),
    (3, 4, ["n4"]),
    (2, 99, ["n3", "n4"]),             # the end is cut to the allocation (as upstream)
])
def test_limit_nodes(begin, end, names):
    assert [node.name for node in limit_nodes(FOUR, begin, end).nodes] == names


@pytest.mark.parametrize("begin, end, message", [
    (4, None, "--slurm-limit-nodes-range-begin 4 is past the last node of the allocation "
              "(4 nodes, numbered from 0)"),
    (2, 2, "--slurm-limit-nodes-range-begin 2 / -end 2 select no nodes (the end is exclusive)"),
    (3, 1, "--slurm-limit-nodes-range-begin 3 / -end 1 select no nodes (the end is exclusive)"),
    (None, 0, "--slurm-limit-nodes-range-begin 0 / -end 0 select no nodes (the end is exclusive)"),
    (-1, None, "--slurm-limit-nodes-range-begin -1 is negative"),
    (None, -1, "--slurm-limit-nodes-range-end -1 is negative"),
])
def test_limit_nodes_errors(begin, end, message):
    with pytest.raises(ResourcesError) as info:
        limit_nodes(FOUR, begin, end)
    assert str(info.value) == message


# -- reserve_system_core --------------------------------------------------------------------------

@pytest.mark.parametrize("nodes, kept, reserved", [
    ([("n1", (0, 1)), ("n2", (0, 1))], [("n1", [1]), ("n2", [0, 1])], ("n1", 0)),
    ([("n1", (3, 5)), ("n2", (0,))], [("n1", [5]), ("n2", [0])], ("n1", 3)),   # real ids
    ([("n1", (0,)), ("n2", (0, 1))], [("n2", [0, 1])], ("n1", 0)),          # emptied: dropped
    ([("n1", (0, 1))], [("n1", [1])], ("n1", 0)),
])
def test_reserve_system_core(nodes, kept, reserved):
    allocation = SlurmAllocation("1", tuple(SlurmNode(name, cores) for name, cores in nodes))
    result = reserve_system_core(allocation)
    assert (nodes_of(result), result.reserved_core) == (kept, reserved)


def test_reserve_system_core_needs_two_cores():
    with pytest.raises(ResourcesError) as info:
        reserve_system_core(SlurmAllocation("1", (SlurmNode("n1", (0,)),)))
    assert str(info.value) == ("--system-core needs at least 2 cores (one is kept for the "
                               "manager), but the Slurm allocation provides only 1")


def test_the_whole_chain_feeds_a_resource_pool():
    allocation = allocation_from_env(ENV_N3, parse_job_details(SBATCH_N3_N5))
    allocation = reserve_system_core(limit_nodes(allocation, 0, 3))
    pool = ResourcePool(nodes_of(allocation))
    assert (pool.total_nodes, pool.total_cores) == (3, 4)


def test_job_details_defaults_are_empty():
    assert JobDetails() == JobDetails(None, None, None, {}, {})


def test_slurmres_is_pure():
    """No I/O, environment or clock: everything comes in as arguments."""
    tree = ast.parse(pathlib.Path(slurmres.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported & {"os", "subprocess", "socket", "time", "io", "pathlib", "shutil"} == set()
