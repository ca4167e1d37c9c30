"""Unit tests of qcgflow.runtime.discovery.discover: choosing and reading the resource source.

The environment, scontrol, host facts and the resources file are injected, so every branch
runs without a cluster (tests/slurm/test_slurm_discovery.py runs the same inside real jobs).
"""

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.discovery import (ResourcesInfo, allocation_shortfall, discover,
                                       node_cpu_totals, parse_resources_json)
from qcgflow.runtime.errors import ResourcesError
from qcgflow.runtime.resources import ResourcePool

SCONTROL_N1_N2 = """\
JobId=41 JobName=pilot
   StartTime=2026-11-25T01:00:00 EndTime=2026-11-25T02:00:00 Deadline=N/A
   NodeList=n[1-2]
   NumNodes=2 NumCPUs=3 NumTasks=3 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
     Nodes=n1 CPU_IDs=0-1 Mem=0 GRES=gpu:1(IDX:1)
     Nodes=n2 CPU_IDs=1 Mem=0 GRES=
"""

SLURM_ENV = {"SLURM_JOB_ID": "41", "SLURM_JOB_NODELIST": "n[1-2]",
             "SLURM_JOB_CPUS_PER_NODE": "2,1"}


def config(*argv):
    return parse_service_args(["--file-path", "requests.json", *argv])


def scontrol_text(text):
    calls = []

    def scontrol(job_id):
        calls.append(job_id)
        return text
    scontrol.calls = calls
    return scontrol


def scontrol_missing(job_id):
    raise FileNotFoundError(2, "No such file or directory: 'scontrol'")


def never_called(*_):
    raise AssertionError("must not be called")


def run(*argv, env=None, scontrol=never_called, files=None):
    read = (lambda path: files[path]) if files is not None else never_called
    return discover(config(*argv), env or {}, scontrol, hostname="box", cpu_count=4,
                    read_text=read)


# -- choosing the source --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, env, mode", [
    ((), {}, "local"),
    (("--resources", "auto"), SLURM_ENV, "slurm"),
    (("--resources", "auto", "--nodes", "2"), SLURM_ENV, "local"),   # --nodes implies local
    (("--resources", "local"), SLURM_ENV, "local"),
    (("--resources", "slurm"), SLURM_ENV, "slurm"),
    ((), {"SLURM_JOBID": "41", "SLURM_NODELIST": "n[1-2]"}, "slurm"),
])
def test_mode_choice(argv, env, mode):
    assert run(*argv, env=env, scontrol=scontrol_text(SCONTROL_N1_N2)).mode == mode


def test_resources_slurm_outside_an_allocation_is_a_clear_error():
    with pytest.raises(ResourcesError) as info:
        run("--resources", "slurm", env={"SLURM_JOB_NODELIST": "n1"})
    assert str(info.value) == ("--resources slurm: not inside a Slurm allocation "
                               "(SLURM_JOB_ID is not set)")


# -- local mode: exactly as before ----------------------------------------------------------------

@pytest.mark.parametrize("argv, nodes, source", [
    ((), (("box", (0, 1, 2, 3)),), "host"),
    (("--nodes", "2,a:1"), (("n0", (0, 1)), ("a", (0,))), "nodes"),
    (("--system-core",), (("box", (1, 2, 3)),), "host"),
])
def test_local_resources(argv, nodes, source):
    info = run(*argv)
    assert (info.nodes, info.source, info.job_id, info.end_time) == (nodes, source, None, None)


@pytest.mark.parametrize("argv, reserved", [
    (("--system-core",), ("box", 0)), (("--system-core", "--nodes", "a:2,3"), ("a", 0)), ((), None),
])
def test_local_reserved_core(argv, reserved):
    assert run(*argv).reserved_core == reserved


def test_local_mode_reads_the_real_host_by_default():
    info = discover(config(), {})
    assert info.total_cores >= 1


def test_local_mode_warns_that_node_range_is_ignored():
    info = run("--slurm-limit-nodes-range-begin", "1")
    assert info.warnings == ("--slurm-limit-nodes-range-begin/-end ignored: not inside a Slurm "
                             "allocation, using local resources",)


# -- Slurm mode -----------------------------------------------------------------------------------

def test_slurm_nodes_carry_the_real_cpu_ids():
    info = run(env=SLURM_ENV, scontrol=scontrol_text(SCONTROL_N1_N2))
    assert info.nodes == (("n1", (0, 1)), ("n2", (1,)))


@pytest.mark.parametrize("field, expected", [
    ("mode", "slurm"), ("job_id", "41"), ("source", "scontrol"), ("gpus", {"n1": (1,)}),
    ("end_time", datetime(2026, 11, 25, 2, 0, 0)), ("warnings", ()), ("reserved_core", None),
])
def test_slurm_record_fields(field, expected):
    info = run(env=SLURM_ENV, scontrol=scontrol_text(SCONTROL_N1_N2))
    assert getattr(info, field) == expected


def test_scontrol_is_asked_about_the_allocation_job():
    scontrol = scontrol_text(SCONTROL_N1_N2)
    run(env=SLURM_ENV, scontrol=scontrol)
    assert scontrol.calls == ["41"]


def test_without_scontrol_counts_are_used_with_warnings():
    info = run(env=SLURM_ENV, scontrol=scontrol_missing)
    assert (info.nodes, info.source, info.end_time) == (
        (("n1", (0, 1)), ("n2", (0,))), "environment", None)


def test_without_scontrol_the_warning_says_why():
    info = run(env=SLURM_ENV, scontrol=scontrol_missing)
    assert info.warnings[0].startswith(
        "scontrol show job -d 41 failed ([Errno 2] No such file or directory: 'scontrol')")


@pytest.mark.parametrize("argv, nodes", [
    (("--slurm-limit-nodes-range-begin", "1"), (("n2", (1,)),)),
    (("--slurm-limit-nodes-range-end", "1"), (("n1", (0, 1)),)),
    (("--slurm-limit-nodes-range-begin", "0", "--slurm-limit-nodes-range-end", "5"),
     (("n1", (0, 1)), ("n2", (1,)))),
    (("--system-core",), (("n1", (1,)), ("n2", (1,)))),
])
def test_slurm_range_and_system_core(argv, nodes):
    assert run(*argv, env=SLURM_ENV, scontrol=scontrol_text(SCONTROL_N1_N2)).nodes == nodes


def test_system_core_applies_after_the_range():
    with pytest.raises(ResourcesError) as info:
        run("--system-core", "--slurm-limit-nodes-range-begin", "1", env=SLURM_ENV,
            scontrol=scontrol_text(SCONTROL_N1_N2))
    assert str(info.value) == ("--system-core needs at least 2 cores (one is kept for the "
                               "manager), but the Slurm allocation provides only 1")


def test_slurm_system_core_records_the_reserved_cpu():
    info = run("--system-core", env=SLURM_ENV, scontrol=scontrol_text(SCONTROL_N1_N2))
    assert info.reserved_core == ("n1", 0)


def test_slurm_range_past_the_allocation_is_an_error():
    with pytest.raises(ResourcesError) as info:
        run("--slurm-limit-nodes-range-begin", "2", env=SLURM_ENV,
            scontrol=scontrol_text(SCONTROL_N1_N2))
    assert str(info.value) == ("--slurm-limit-nodes-range-begin 2 is past the last node of "
                               "the allocation (2 nodes, numbered from 0)")


def test_malformed_scontrol_text_is_an_error_not_a_fallback():
    with pytest.raises(ResourcesError, match="^Invalid scontrol show job -d CPU_IDs value 'x'"):
        run(env=SLURM_ENV, scontrol=scontrol_text("Nodes=n1 CPU_IDs=x"))


def test_config_like_object_is_enough():
    args = SimpleNamespace(resources="slurm", nodes=None, system_core=False)
    info = discover(args, SLURM_ENV, scontrol_text(SCONTROL_N1_N2))
    assert info.pool_nodes() == [("n1", [0, 1]), ("n2", [1])]


# -- the resources file ---------------------------------------------------------------------------

def upstream_json(kind="SLURM", **node_extra):
    node = {"name": "c1", "total_cores": 3, "core_ids": ["0", "1", "2"],
            "free_cores": ["0", "1", "2"], "crs": None}
    node.update(node_extra)
    return json.dumps({"type": kind, "binding": True, "nodes": [
        node, {"name": "c2", "total_cores": 2, "core_ids": ["4", "5"], "free_cores": ["4", "5"],
               "crs": {"GPU": {"class": "CRBind",
                               "data": {"type": "GPU", "ids": ["0", "1"], "free": ["0", "1"]}}}}]})


def test_file_with_scontrol_text():
    info = run("--slurm-resources-file", "res.txt", files={"res.txt": SCONTROL_N1_N2})
    assert (info.mode, info.source, info.nodes, info.job_id) == (
        "slurm", "file", (("n1", (0, 1)), ("n2", (1,))), "41")


def test_file_with_upstream_json():
    info = run("--slurm-resources-file", "res.json", files={"res.json": upstream_json()})
    assert (info.mode, info.nodes, info.gpus) == (
        "slurm", (("c1", (0, 1, 2)), ("c2", (4, 5))), {"c2": (0, 1)})


@pytest.mark.parametrize("extra, cores", [
    ({"free_cores": ["1", "2"]}, (1, 2)),              # a core upstream had already taken
    ({"free_cores": None, "core_ids": [7, 8, 9]}, (7, 8, 9)),
    ({"free_cores": None, "core_ids": None}, (0, 1, 2)),
    ({"free_cores": None, "core_ids": ["0", "1", "2", "3"]}, (0, 1, 2)),   # total_cores cuts
])
def test_file_json_core_sources(extra, cores):
    info = run("--slurm-resources-file", "r", files={"r": upstream_json(**extra)})
    assert info.nodes[0] == ("c1", cores)


def test_file_json_local_type_gives_local_mode():
    assert run("--slurm-resources-file", "r", files={"r": upstream_json("LOCAL")}).mode == "local"


def test_file_with_range_and_system_core():
    info = run("--slurm-resources-file", "r", "--slurm-limit-nodes-range-begin", "1",
               "--system-core", files={"r": upstream_json()})
    assert (info.nodes, info.reserved_core) == ((("c2", (5,)),), ("c2", 4))


def test_file_wins_over_the_slurm_environment():
    info = run("--slurm-resources-file", "r", env=SLURM_ENV, files={"r": upstream_json()})
    assert [name for name, _ in info.nodes] == ["c1", "c2"]


@pytest.mark.parametrize("text, message", [
    ("JobId=3 NodeList=n1", "--slurm-resources-file 'r': no 'Nodes=... CPU_IDs=...' lines "
                            "(expected the output of `scontrol show job -d JOBID` or a JSON "
                            "resources description)"),
    ("", "--slurm-resources-file 'r': no 'Nodes=... CPU_IDs=...' lines (expected the output "
         "of `scontrol show job -d JOBID` or a JSON resources description)"),
    ("{nope", "--slurm-resources-file 'r': not valid JSON (Expecting property name enclosed "
              "in double quotes: line 1 column 2 (char 1))"),
    ('{"nodes": []}', "--slurm-resources-file 'r': 'type' must be \"SLURM\" or \"LOCAL\", "
                      "got None"),
    ('{"type": "SLURM", "nodes": []}', "--slurm-resources-file 'r': 'nodes' must be a "
                                       "non-empty list"),
    ('{"type": "SLURM", "nodes": [3]}', "--slurm-resources-file 'r': node 0 is not an object"),
    ('{"type": "SLURM", "nodes": [{"total_cores": 2}]}',
     "--slurm-resources-file 'r': node 0 has no valid 'name' (got None)"),
    ('{"type": "SLURM", "nodes": [{"name": "a:b", "total_cores": 2}]}',
     "--slurm-resources-file 'r': node 0 has no valid 'name' (got 'a:b')"),
    ('{"type": "SLURM", "nodes": [{"name": "a"}]}',
     "--slurm-resources-file 'r' node 'a': no cores (give total_cores, core_ids or free_cores)"),
    ('{"type": "SLURM", "nodes": [{"name": "a", "free_cores": []}]}',
     "--slurm-resources-file 'r' node 'a': no free cores"),
    ('{"type": "SLURM", "nodes": [{"name": "a", "free_cores": ["0,1"]}]}',
     "--slurm-resources-file 'r' node 'a' free_cores: '0,1' is not a non-negative integer id "
     "(hyper-thread groups are not supported)"),
    ('{"type": "SLURM", "nodes": [{"name": "a", "free_cores": "01"}]}',
     "--slurm-resources-file 'r' node 'a' free_cores must be a list"),
    ('{"type": "SLURM", "nodes": [{"name": "a", "free_cores": [1, 1]}]}',
     "--slurm-resources-file 'r' node 'a' free_cores: an id is listed twice"),
    ('{"type": "SLURM", "nodes": [{"name": "a", "total_cores": 1},'
     ' {"name": "a", "total_cores": 1}]}',
     "--slurm-resources-file 'r': node 'a' is listed twice"),
])
def test_file_errors(text, message):
    with pytest.raises(ResourcesError) as info:
        run("--slurm-resources-file", "r", files={"r": text})
    assert str(info.value) == message


def test_unreadable_file_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(ResourcesError) as info:
        discover(config("--slurm-resources-file", str(missing)), {})
    assert str(info.value) == (f"Cannot read --slurm-resources-file '{missing}': "
                               "No such file or directory")


def test_real_file_is_read(tmp_path):
    path = tmp_path / "res.txt"
    path.write_text(SCONTROL_N1_N2)
    info = discover(config("--slurm-resources-file", str(path)), {})
    assert info.total_cores == 3


def test_parse_resources_json_gpu_counts_without_ids():
    text = json.dumps({"type": "SLURM", "nodes": [
        {"name": "g", "total_cores": 1, "crs": {"GPU": {"class": "CR",
                                                        "data": {"type": "GPU", "total": 2}}}}]})
    mode, allocation = parse_resources_json(text, "r")
    assert allocation.nodes[0].gpus == (0, 1)


@pytest.mark.parametrize("argv, env", [
    ((), {}), (("--nodes", "3,a:2", "--system-core"), {}), ((), SLURM_ENV),
    (("--system-core",), SLURM_ENV),
])
def test_every_record_feeds_a_resource_pool(argv, env):
    info = run(*argv, env=env, scontrol=scontrol_text(SCONTROL_N1_N2))
    assert isinstance(info, ResourcesInfo)
    assert ResourcePool(info.pool_nodes()).total_cores == info.total_cores


# ------------------------------------------------------------ allocation shortfall


NODE_TEXT = ("NodeName=n1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=1 CPUEfctv=2 CPUTot=2 X=y\n"
             "NodeName=n2 Arch=x86_64 CoresPerSocket=1 CPUAlloc=1 CPUEfctv=2 CPUTot=2 X=y\n")


def test_node_cpu_totals_reads_cputot_per_node():
    assert node_cpu_totals(NODE_TEXT + "garbage line\n") == {"n1": 2, "n2": 2}


def test_shortfall_names_nodes_given_fewer_cpus_than_they_have():
    info = ResourcesInfo(mode="slurm", nodes=(("n1", (0,)), ("n2", (1,))), source="scontrol")
    asked = []
    line = allocation_shortfall(info, lambda names: asked.append(names) or NODE_TEXT)
    assert asked == [["n1", "n2"]]
    assert line.startswith("the Slurm allocation gives fewer CPUs than its nodes have "
                           "(n1 1 of 2, n2 1 of 2)") and "--exclusive" in line


@pytest.mark.parametrize("info", [
    ResourcesInfo(mode="slurm", nodes=(("n1", (0, 1)), ("n2", (0, 1)))),
    # --system-core kept core 0 of n1 back: still a whole node from Slurm
    ResourcesInfo(mode="slurm", nodes=(("n1", (1,)), ("n2", (0, 1))), reserved_core=("n1", 0)),
    ResourcesInfo(mode="local", nodes=(("n1", (0,)),)),
])
def test_no_shortfall_for_whole_nodes_or_local_mode(info):
    assert allocation_shortfall(info, lambda names: NODE_TEXT) is None


def test_shortfall_is_silent_when_scontrol_fails():
    def broken(names):
        raise OSError("exit status 1: no such node")
    info = ResourcesInfo(mode="slurm", nodes=(("n1", (0,)),))
    assert allocation_shortfall(info, broken) is None
