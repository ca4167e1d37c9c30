"""The service and its resource source: --resources, --slurm-resources-file, node ranges.

Real service processes; no Slurm needed (tests/slurm/test_slurm_discovery.py covers real
allocations). SLURM_JOB_ID is set empty so that a run inside an allocation behaves the same.
"""

import json

import pytest

from support.jobs import job, submit
from support.services import run_service

NO_SLURM = {"SLURM_JOB_ID": "", "SLURM_JOBID": ""}
RESOURCES_INFO = {"request": "resourcesInfo"}


def one_line_error(result, *needles):
    assert result.returncode == 2, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def local_json(tmp_path):
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"type": "LOCAL", "binding": False, "nodes": [
        {"name": "a", "total_cores": 2, "core_ids": ["0", "1"], "free_cores": ["0", "1"],
         "crs": None},
        {"name": "b", "total_cores": 1, "core_ids": ["0"], "free_cores": ["0"], "crs": None}]}))
    return path


def test_resources_slurm_outside_an_allocation_is_refused(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"))], "--resources", "slurm",
                         nodes=None, env=NO_SLURM, timeout=20)
    one_line_error(result, "--resources slurm: not inside a Slurm allocation")


def test_missing_resources_file_is_a_one_line_error(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"))], "--slurm-resources-file",
                         str(tmp_path / "nope.json"), nodes=None, env=NO_SLURM, timeout=20)
    one_line_error(result, "Cannot read --slurm-resources-file", "nope.json")


def test_resources_file_gives_the_nodes(tmp_path):
    result = run_service(tmp_path, [RESOURCES_INFO], "--slurm-resources-file",
                         str(local_json(tmp_path)), nodes=None, env=NO_SLURM, timeout=20)
    assert result.reply(1)["data"] == {"total_nodes": 2, "total_cores": 3, "used_cores": 0,
                                       "free_cores": 3}, result.describe()


def test_jobs_run_on_the_nodes_of_the_resources_file(tmp_path):
    result = run_service(tmp_path, [submit(
        job("a", "echo", ["${nlist}"], cores=3, stdout="a.out"))], "--slurm-resources-file",
        str(local_json(tmp_path)), nodes=None, env=NO_SLURM, timeout=20)
    assert result.state("a") == "SUCCEED", result.describe()
    assert result.read("a.out").strip() == "a,b"


def test_node_range_outside_slurm_is_run_locally_with_a_warning(tmp_path):
    result = run_service(tmp_path, [RESOURCES_INFO], "--slurm-limit-nodes-range-begin", "1",
                         nodes=None, env=NO_SLURM, timeout=20)
    assert result.returncode == 0, result.describe()
    assert "--slurm-limit-nodes-range-begin/-end ignored" in result.service_log


@pytest.mark.parametrize("option, needle", [
    (["--nl-start-method", "rsh"], "--nl-start-method"),
    (["--nl-init-timeout", "0"], "--nl-init-timeout"),
    (["--nl-ready-treshold", "2"], "--nl-ready-treshold"),
    (["--slurm-limit-nodes-range-begin", "3", "--slurm-limit-nodes-range-end", "1"],
     "--slurm-limit-nodes-range-begin"),
    (["--resources", "slurm", "--nodes", "2"], "--nodes"),
], ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_bad_slurm_option_values(tmp_path, option, needle):
    result = run_service(tmp_path, [], *option, nodes=None, env=NO_SLURM, timeout=10)
    one_line_error(result, needle, "qcgflow service")
