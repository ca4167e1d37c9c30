"""Upstream's governor flow with real processes (issue 20; upstream test_governor.py).

Upstream's managers join with ``--parent <the governor's client address>`` and nothing
else; ours still authenticate, with credentials the same user finds in its own entries
(governor/directory.py). A ``--parent`` manager with a requests file ending in
``finishAfterAllTasksDone`` ends by itself; the governor's resourcesInfo counts the
managers' ``--system-core`` cores as upstream does.
"""

import json
import os
import stat
import subprocess
import time

import pytest

from governor_harness import SERVICE, Cluster, job


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def resources(cluster):
    return cluster.request({"request": "resourcesInfo"})["data"]


def test_a_manager_given_the_client_address_alone_registers(cluster, tmp_path):
    cluster.start_governor("--id", "gov")
    entries = list((tmp_path / "governors").iterdir())
    assert len(entries) == 1
    assert stat.S_IMODE(os.stat(tmp_path / "governors").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entries[0]).st_mode) == 0o600
    cluster.start_manager("m1", "--nodes", "n0:4,n1:4", upstream_flow=True)
    cluster.start_manager("m2", "--nodes", "2", upstream_flow=True)
    cluster.wait_managers(2)
    assert resources(cluster) == {"total_nodes": 3, "total_cores": 10, "used_cores": 0,
                                  "free_cores": 10}
    reply = cluster.request({"request": "submit", "jobs": [job("a", "echo hi > a.txt")]})
    assert reply["code"] == 0
    assert cluster.wait_final(["a"])["a"]["status"] == "SUCCEED"
    assert (tmp_path / "a.txt").read_text() == "hi\n"
    cluster.stop()
    assert cluster.governor.returncode == 0
    assert not list((tmp_path / "governors").iterdir())  # the entry left with it


def test_status_right_after_submit_is_queued_or_succeed(cluster):
    """upstream test_submit_single_direct_single_job: a unit sent to a manager reads
    QUEUED until the manager starts it (its history keeps SCHEDULED)."""
    cluster.start_governor("--id", "gov")
    cluster.start_manager("m1", "--nodes", "1", upstream_flow=True)
    cluster.wait_managers(1)
    jobs = [job("first", "sleep 2"), job("second", "true")]
    assert cluster.request({"request": "submit", "jobs": jobs})["code"] == 0
    status = cluster.request({"request": "jobStatus", "jobNames": ["first", "second"]})
    states = {name: entry["data"]["status"] for name, entry in status["data"]["jobs"].items()}
    assert states["second"] == "QUEUED"  # waits for the only core
    assert states["first"] in ("QUEUED", "EXECUTING")
    cluster.wait_state("first", "EXECUTING")
    info = cluster.request({"request": "jobInfo", "jobNames": ["first"]})
    assert "SCHEDULED" in info["data"]["jobs"]["first"]["data"]["history"]
    assert cluster.wait_final(["second"])["second"]["status"] == "SUCCEED"


def test_a_parent_manager_with_a_finishing_requests_file_ends_by_itself(cluster, tmp_path):
    """upstream test_register_manager: QCGPMService().start() returns."""
    cluster.start_governor("--id", "gov")
    requests = tmp_path / "reqs.json"
    requests.write_text(json.dumps([{"request": "resourcesInfo"},
                                    {"request": "control",
                                     "command": "finishAfterAllTasksDone"}]))
    process = cluster.start_manager("m1", "--nodes", "2", "--file-path", str(requests),
                                    upstream_flow=True)
    assert process.wait(timeout=30) == 0, process.stderr.read()


def test_finish_after_all_tasks_done_ends_a_network_governor(cluster, tmp_path):
    """upstream test_slurm_partition_submit: the governor exits once the jobs ended."""
    cluster.start_governor("--id", "gov")
    cluster.start_manager("m1", "--nodes", "2", upstream_flow=True)
    cluster.wait_managers(1)
    jobs = [job("it", "sleep 0.5; echo ${it} > out_${it}", iteration={"stop": 4})]
    assert cluster.request({"request": "submit", "jobs": jobs})["code"] == 0
    reply = cluster.request({"request": "control", "command": "finishAfterAllTasksDone"})
    assert reply == {"code": 0, "message": "finishAfterAllTasksDone command accepted"}
    assert cluster.governor.wait(timeout=30) == 0
    assert sorted(p.name for p in tmp_path.glob("out_*")) == ["out_%d" % i for i in range(4)]
    assert cluster.managers["m1"].wait(timeout=30) == 0  # finished by its governor


def test_system_cores_of_the_managers_count_as_upstream(cluster):
    """upstream test_slurm_partition_resources: 2 managers of 2 cores with --system-core
    give total 4, used 2, free 2 (not 2/0/2)."""
    cluster.start_governor("--id", "gov")
    cluster.start_manager("m1", "--nodes", "2", "--system-core", upstream_flow=True)
    cluster.start_manager("m2", "--nodes", "2", "--system-core", upstream_flow=True)
    cluster.wait_managers(2)
    assert resources(cluster) == {"total_nodes": 2, "total_cores": 4, "used_cores": 2,
                                  "free_cores": 2}
    status = cluster.status()["Resources"]
    assert (status["TotalCores"], status["UsedCores"], status["FreeCores"]) == (4, 2, 2)


def manager_alone(tmp_path, parent, env, *extra):
    return subprocess.run(SERVICE + ["--nodes", "1", "--wd", str(tmp_path), "--parent", parent,
                                     *extra], env=env, capture_output=True, text=True,
                          timeout=60)


def test_without_an_entry_the_manager_says_what_to_give(tmp_path):
    env = dict(os.environ, QCGFLOW_GOVERNORS_DIR=str(tmp_path / "none"))
    done = manager_alone(tmp_path, "tcp://127.0.0.1:1", env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "qcgflow service: --parent tcp://127.0.0.1:1: no governor with that address in %s "
        "(a governor started by this user writes one there) and no --parent-secrets DIR "
        "(the governor's <aux dir>/governor-secrets) was given" % (tmp_path / "none"))


def test_entries_open_to_others_are_refused_or_ignored(cluster, tmp_path):
    cluster.start_governor("--id", "gov")
    governors = tmp_path / "governors"
    entry = next(governors.iterdir())
    entry.chmod(0o644)  # an entry others could have written: never trusted
    done = manager_alone(tmp_path, cluster.ready["address"], cluster.env, "--id", "m9")
    assert done.returncode == 2 and "no governor with that address" in done.stderr
    entry.chmod(0o600)
    governors.chmod(0o755)
    done = manager_alone(tmp_path, cluster.ready["address"], cluster.env, "--id", "m9")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "qcgflow service: %s must belong to this user and be closed to others (chmod 700 %s)"
        % (governors, governors))
    governors.chmod(0o700)


def test_an_entry_of_a_dead_governor_is_removed(tmp_path):
    governors = tmp_path / "governors"
    governors.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    entry = governors / "old.json"
    fd = os.open(entry, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"id": "old", "host": os.uname().nodename, "pid": dead.pid,
                   "addresses": ["tcp://127.0.0.1:9"], "governor_address": "tcp://127.0.0.1:8",
                   "secrets": str(tmp_path)}, handle)
    env = dict(os.environ, QCGFLOW_GOVERNORS_DIR=str(governors))
    started = time.monotonic()
    done = manager_alone(tmp_path, "tcp://127.0.0.1:9", env)
    assert done.returncode == 2 and "no governor with that address" in done.stderr
    assert not entry.exists() and time.monotonic() - started < 30
