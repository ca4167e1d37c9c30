"""Resource discovery inside real allocations of the dev cluster (sbatch and salloc).

A probe (``python -c``) calls ``discover()`` with service options, exactly as the service
does, and prints the record as one JSON line. One batch job runs several probes (module
fixtures), so each allocation's round trip is paid once. Nodes are pinned with ``-w``.
"""

import json
import shlex
import sys
from datetime import datetime, timedelta

import pytest

from support.slurm import require_slurm, salloc_run, sbatch_and_wait

pytestmark = pytest.mark.slurm

PROBE = """\
import json, sys
from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.discovery import discover
info = discover(parse_service_args(["--file-path", "requests.json"] + sys.argv[2:]))
print("PROBE " + json.dumps({
    "label": sys.argv[1], "mode": info.mode, "nodes": info.nodes, "job_id": info.job_id,
    "source": info.source, "reserved": info.reserved_core, "warnings": info.warnings,
    "end_time": info.end_time.isoformat() if info.end_time else None}))
"""

# label -> service options
PROBES = {
    "plain": [],
    "system-core": ["--system-core"],
    "begin-1": ["--slurm-limit-nodes-range-begin", "1"],
    "end-1": ["--slurm-limit-nodes-range-end", "1"],
    "nodes-option": ["--nodes", "3"],
    "resources-slurm": ["--resources", "slurm"],
}


def probe_line(label, options, env_prefix=""):
    command = [sys.executable, "-c", PROBE, label, *options]
    return env_prefix + " ".join(shlex.quote(part) for part in command)


def batch_script(probes, extra_lines=()):
    lines = ["#!/bin/bash"]
    lines += [probe_line(label, options) for label, options in probes.items()]
    lines += list(extra_lines)
    return "\n".join(lines) + "\n"


def parse_probes(text):
    records = {}
    for line in text.splitlines():
        if line.startswith("PROBE "):
            record = json.loads(line[len("PROBE "):])
            records[record.pop("label")] = record
    return records


def sbatch_completed(script, args):
    """Run a batch job to COMPLETED. One resubmission if it was CANCELLED from outside: the
    dev cluster is shared, and restarting it (``dev-cluster.sh``) cancels every job."""
    result = sbatch_and_wait(script, args, timeout=90)
    if result.state == "CANCELLED":
        result = sbatch_and_wait(script, args, timeout=90)
    assert result.state == "COMPLETED", result.stdout
    return result


def nodes(record):
    return [(name, list(cores)) for name, cores in record["nodes"]]


@pytest.fixture(scope="module")
def batch_n2():
    """``sbatch -N2 -w n1,n2 --exclusive -t 5``: the probes, one without scontrol on PATH,
    and the scontrol text saved for the resources-file test."""
    require_slurm()
    no_scontrol = probe_line("no-scontrol", [], env_prefix="env PATH=/nonexistent ")
    script = batch_script(PROBES, [no_scontrol,
                                   "echo SCONTROL_BEGIN",
                                   "scontrol show job -d $SLURM_JOB_ID",
                                   "echo SCONTROL_END"])
    return sbatch_completed(script, ["-N2", "-w", "n1,n2", "--exclusive", "-t", "5"])


@pytest.fixture(scope="module")
def records_n2(batch_n2):
    return parse_probes(batch_n2.stdout)


@pytest.fixture(scope="module")
def batch_n3_n5():
    require_slurm()
    return sbatch_completed(batch_script({"plain": []}), ["-N3", "-n5", "-w", "n1,n2,n3"])


@pytest.fixture(scope="module")
def salloc_records():
    require_slurm()
    command = ["bash", "-c", "\n".join(probe_line(label, options) for label, options in
                                       {"plain": [], "system-core": ["--system-core"]}.items())]
    done = salloc_run(command, nodes=("n1", "n2"), args=["--exclusive"], timeout=90)
    assert done.returncode == 0, done.stderr
    return parse_probes(done.stdout)


# -- sbatch -N2 ----------------------------------------------------------------------------------

def test_sbatch_n2_nodes_are_slurm_node_names_with_real_cpu_ids(records_n2):
    assert nodes(records_n2["plain"]) == [("n1", [0, 1]), ("n2", [0, 1])]


@pytest.mark.parametrize("field, expected", [
    ("mode", "slurm"), ("source", "scontrol"), ("reserved", None), ("warnings", []),
])
def test_sbatch_n2_record(records_n2, field, expected):
    assert records_n2["plain"][field] == expected


def test_sbatch_n2_job_id_is_the_allocation(records_n2, batch_n2):
    assert records_n2["plain"]["job_id"] == batch_n2.job_id


def test_sbatch_end_time_follows_the_time_limit(records_n2):
    end = datetime.fromisoformat(records_n2["plain"]["end_time"])
    # -t 5: the job started at most a minute ago (Slurm prints local time, as datetime.now)
    assert timedelta(minutes=3) < end - datetime.now() <= timedelta(minutes=5, seconds=5)


def test_system_core_reserves_the_first_cpu_of_the_first_node(records_n2):
    record = records_n2["system-core"]
    assert (nodes(record), record["reserved"]) == ([("n1", [1]), ("n2", [0, 1])], ["n1", 0])


@pytest.mark.parametrize("label, expected", [
    ("begin-1", [("n2", [0, 1])]),
    ("end-1", [("n1", [0, 1])]),
])
def test_node_range_limits(records_n2, label, expected):
    assert nodes(records_n2[label]) == expected


def test_nodes_option_inside_an_allocation_is_local(records_n2):
    record = records_n2["nodes-option"]
    assert (record["mode"], nodes(record)) == ("local", [("n0", [0, 1, 2])])


def test_resources_slurm_explicitly(records_n2):
    assert nodes(records_n2["resources-slurm"]) == [("n1", [0, 1]), ("n2", [0, 1])]


def test_without_scontrol_counts_are_used(records_n2):
    record = records_n2["no-scontrol"]
    assert (record["source"], nodes(record)) == ("environment", [("n1", [0, 1]), ("n2", [0, 1])])


def test_without_scontrol_a_warning_says_why(records_n2):
    assert records_n2["no-scontrol"]["warnings"][0].startswith("scontrol show job -d ")


def test_saved_scontrol_output_as_resources_file(batch_n2, tmp_path):
    from qcgflow.runtime.config import parse_service_args
    from qcgflow.runtime.discovery import discover
    text = batch_n2.stdout.split("SCONTROL_BEGIN\n", 1)[1].split("SCONTROL_END", 1)[0]
    path = tmp_path / "resources.txt"
    path.write_text(text)
    config = parse_service_args(["--file-path", "r.json", "--slurm-resources-file", str(path)])
    info = discover(config, {})
    assert (info.mode, info.nodes, info.job_id) == (
        "slurm", (("n1", (0, 1)), ("n2", (0, 1))), batch_n2.job_id)


# -- sbatch -N3 -n5 ------------------------------------------------------------------------------

def test_sbatch_n3_n5_uneven_cpus(batch_n3_n5):
    record = parse_probes(batch_n3_n5.stdout)["plain"]
    assert nodes(record) == [("n1", [0, 1]), ("n2", [0, 1]), ("n3", [0])]


# -- salloc -N2 ----------------------------------------------------------------------------------

def test_salloc_shell_sees_the_allocation(salloc_records):
    """The salloc shell has no SLURMD_NODENAME/SLURM_CPUS_ON_NODE: not needed."""
    record = salloc_records["plain"]
    assert (record["mode"], nodes(record)) == ("slurm", [("n1", [0, 1]), ("n2", [0, 1])])


def test_salloc_system_core(salloc_records):
    assert nodes(salloc_records["system-core"]) == [("n1", [1]), ("n2", [0, 1])]
