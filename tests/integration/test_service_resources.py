"""Resources and the command line (COMPAT.md "Resources and the command line")."""

import pytest

from support.jobs import job, submit
from support.services import run_service

RESOURCES_INFO = {"request": "resourcesInfo"}
LIST = {"request": "listJobs"}


@pytest.mark.parametrize("nodes, total_nodes, total_cores", [
    ("2", 1, 2), ("3,3", 2, 6), ("a:8,b:8", 2, 16), ("n1:2", 1, 2), ("4,2,2", 3, 8),
])
def test_resources_info_reply(tmp_path, nodes, total_nodes, total_cores):
    result = run_service(tmp_path, [RESOURCES_INFO], nodes=nodes, timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.reply(1) == {"code": 0, "data": {
        "total_nodes": total_nodes, "total_cores": total_cores, "used_cores": 0,
        "free_cores": total_cores}}
    assert result.final_status["Resources"]["TotalCores"] == total_cores
    assert result.final_status["Resources"]["TotalNodes"] == total_nodes


def test_nodes_2_is_one_node_n0_with_two_cores(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${nnodes}", "${nlist}", "${ncores}"], cores=2, stdout="a.out"))],
        nodes="2", timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").split() == ["1", "n0", "2"]
    assert result.entry("a")["runtime"]["allocation"] == "n0[0:1]"


def test_nodes_3_3_is_two_unnamed_nodes(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${nnodes}", "${nlist}", "${ncores}"], cores=3, nodes=2,
            stdout="a.out"))], nodes="3,3", timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").split() == ["2", "n0,n1", "6"]
    assert result.entry("a")["runtime"]["allocation"] == "n0[0:1:2],n1[0:1:2]"


def test_named_nodes(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${nlist}"], cores=1, nodes=2, stdout="a.out"))],
        nodes="a:8,b:8", timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "a,b"
    assert result.entry("a")["runtime"]["allocation"] == "a[0],b[0]"


def test_job_without_resources_gets_one_core(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "echo", ["${ncores}"], stdout="a.out"))],
                         timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "1"
    assert result.entry("a")["runtime"]["allocation"] == "n0[0]"


def test_resources_with_only_wall_time_is_an_error(tmp_path):
    desc = job("a", "true", wt="10s")
    result = run_service(tmp_path, [submit(desc), LIST], timeout=20)
    assert result.reply(1)["code"] != 0
    message = result.reply(1)["message"]
    assert message.startswith("No resources defined: job 'a' ")  # upstream's words first
    assert "resources.numCores" in message
    assert result.reply(2)["data"]["length"] == 0


@pytest.mark.parametrize("nodes, resources", [
    ("2", {"numCores": {"exact": 8}}),
    ("2", {"numNodes": {"exact": 2}}),
    ("2", {"numCores": {"min": 4}}),
    ("2,2", {"numNodes": {"exact": 1}, "numCores": {"exact": 3}}),
    ("2,2", {"numCores": {"exact": 5}}),
], ids=["8-cores-on-2", "2-nodes-on-1", "min-4-on-2", "3-per-node-on-2,2", "5-on-2,2"])
def test_job_that_can_never_fit_is_rejected_and_nothing_registered(tmp_path, nodes, resources):
    ok = job("ok", "true")
    big = {"name": "a", "execution": {"exec": "true"}, "resources": resources}
    result = run_service(tmp_path, [submit(ok, big), LIST, submit(job("after", "true"))],
                         nodes=nodes, timeout=20)
    assert result.returncode == 4, result.describe()  # 4: it refused a request
    reply = result.reply(1)
    assert reply["code"] != 0
    assert reply["message"] == "Not enough resources for job a"
    assert "qcgflow service: request 1: Not enough resources for job a" in result.stderr
    assert result.reply(2)["data"] == {"length": 0, "jobs": {}}
    assert result.states == {"after": "SUCCEED"}


def test_a_range_without_max_is_accepted_then_failed_as_upstream(tmp_path):
    """upstream test_slurmenv_api_submit_resource_ranges: ``numCores: {min: 1}`` is
    accepted and ends FAILED with "Both core's range boundaries (min, max) must be
    defined" (scheduleralgo.allocate_job); nothing runs, dependants are OMITTED."""
    open_range = {"name": "a", "execution": {"exec": "touch", "args": ["ran"]},
                  "resources": {"numCores": {"min": 1}}}
    result = run_service(tmp_path, [submit(open_range, job("b", "true", after=["a"]),
                                           job("c", "true"))], nodes="2", timeout=20)
    assert result.reply(1)["code"] == 0, result.describe()
    assert result.states == {"a": "FAILED", "b": "OMITTED", "c": "SUCCEED"}
    assert result.entry("a")["messages"] == (
        "Both core's range boundaries (min, max) must be defined (job 'a': "
        "resources.numCores has only min; give min and max, or exact, or an iteration "
        "scheduler)")
    assert not (result.wd / "ran").exists()


def test_a_job_that_fits_exactly_is_accepted(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", cores=4), job("b", "true", nodes=2,
                                                                          cores=2))],
                         nodes="2,2", timeout=20)
    assert result.reply(1)["code"] == 0, result.describe()
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}


def test_system_core_reserves_one_core(tmp_path):
    result = run_service(tmp_path, [RESOURCES_INFO, submit(
        job("a", "echo", ["${ncores}"], cores=2, stdout="a.out"))],
        "--system-core", nodes="3", timeout=20)
    assert result.returncode == 0, result.describe()
    info = result.reply(1)["data"]
    # as upstream (resources.allocate_for_system): the manager's core counts, as used
    assert info == {"total_nodes": 1, "total_cores": 3, "used_cores": 1, "free_cores": 2}
    assert result.state("a") == "SUCCEED"
    # core 0 of the first node is the manager's
    assert result.entry("a")["runtime"]["allocation"] == "n0[1:2]"


def test_system_core_makes_a_job_of_all_cores_too_big(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", cores=3))], "--system-core",
                         nodes="3", timeout=20)
    assert result.reply(1)["message"] == "Not enough resources for job a"


def test_used_and_free_cores_in_status(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true")), {"request": "status"}],
                         nodes="2,2", timeout=20)
    status = result.reply(2)["data"]
    assert status["Resources"] == {"TotalNodes": 2, "TotalCores": 4, "UsedCores": 0,
                                   "FreeCores": 4}
    assert result.final_status["Resources"]["UsedCores"] == 0
