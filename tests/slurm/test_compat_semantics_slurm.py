"""Issue 20's runtime semantics inside ``salloc -N2`` on the dev cluster (upstream's
test_slurmenv_api.py / test_governor.py scenarios, checked with our own assertions).

* a whole cancel of a running iterative job through node agents: the parent ends CANCELED
  only after its iterations (which take a while to obey SIGTERM) have ended;
* a ``--slurm-partition-nodes 1 --system-core`` governor: resourcesInfo counts the
  managers' system cores as upstream (total 4, used 2, free 2 on 2 nodes of 2 cores),
  ``$${it}`` in ``wd`` gives every iteration its own directory, and a core range with only
  ``min`` ends FAILED with upstream's wording.
"""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from support.slurm import require_slurm, salloc_run

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]

pytestmark = pytest.mark.slurm

CANCEL_DRIVER = textwrap.dedent('''
    import json, sys, time
    from qcgflow.runtime.api import Jobs, LocalManager
    wd = sys.argv[1]
    m = LocalManager(["--wd", wd], cfg={"wd": wd})
    try:
        script = "trap 'sleep 3; exit 0' TERM; sleep 60 & wait"
        m.submit(Jobs().add(name="s", script=script, iteration=4))
        deadline = time.monotonic() + 60
        while True:
            info = m.info_parsed(["s"], withChilds=True)["s"]
            if [c.status for c in info.childs].count("EXECUTING") == 4:
                break
            assert time.monotonic() < deadline, [c.status for c in info.childs]
            time.sleep(0.05)
        started = time.monotonic()
        m.cancel(["s"])
        right_after = m.status(["s"])["jobs"]["s"]["data"]["status"]
        final = m.wait4(["s"], timeout=60)
        waited = time.monotonic() - started
        info = m.info_parsed(["s"], withChilds=True)["s"]
        print(json.dumps({"right_after": right_after, "final": final, "waited": waited,
                          "childs": [c.status for c in info.childs],
                          "iterations": info.iterations}))
    finally:
        m.finish()
''')


def test_whole_cancel_waits_for_iterations_through_node_agents(tmp_path):
    require_slurm()
    driver = tmp_path / "driver.py"
    driver.write_text(CANCEL_DRIVER)
    result = salloc_run([sys.executable, str(driver), str(tmp_path / "run")],
                        nodes=("n1", "n2"), args=["-n4"], timeout=150, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["right_after"] == "EXECUTING", outcome  # not final while they run
    assert outcome["final"] == {"s": "CANCELED"}, outcome
    assert outcome["waited"] >= 2.5, outcome  # they took 3 s to obey SIGTERM
    assert outcome["childs"] == ["CANCELED"] * 4, outcome
    assert (outcome["iterations"]["finished"], outcome["iterations"]["failed"]) == (4, 4)


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    require_slurm()
    wd = tmp_path_factory.mktemp("compat-governor")
    jobs = [
        {"name": "env_a", "iteration": {"stop": 4},
         "execution": {"exec": "/bin/sh", "args": ["-c", "echo ${it} '$$$$it'"],
                       "wd": str(wd / "env_a_$${it}"), "stdout": "env.stdout"},
         "resources": {"numCores": {"exact": 1}}},
        {"name": "open", "execution": {"exec": "/bin/true"},
         "resources": {"numCores": {"min": 1}}},
    ]
    requests = [{"request": "resourcesInfo"}, {"request": "submit", "jobs": jobs},
                {"request": "control", "command": "finishAfterAllTasksDone"}]
    (wd / "reqs.json").write_text(json.dumps(requests))
    result = salloc_run(SERVICE + ["--slurm-partition-nodes", "1", "--system-core",
                                   "--file-path", str(wd / "reqs.json"), "--wd", str(wd),
                                   "--id", "gov"],
                        nodes=("n1", "n2"), args=["-n4"], timeout=150, cwd=str(wd))
    return wd, result


def _reply(wd: Path, number: int) -> dict:
    marker = "request %d (" % number
    for line in (wd / ".qcgpjm-service-gov" / "service.log").read_text().splitlines():
        if marker in line:
            return json.loads(line.split("): ", 1)[1])
    raise AssertionError("no reply to request %d in service.log" % number)


def _report(wd: Path) -> dict:
    lines = (wd / ".qcgpjm-service-gov" / "jobs.report").read_text().splitlines()
    return {entry["name"]: entry for entry in map(json.loads, lines)}


def test_governor_counts_the_system_cores_as_upstream(partitioned):
    wd, result = partitioned
    assert result.returncode == 0, result.stderr[-3000:]
    assert _reply(wd, 1)["data"] == {"total_nodes": 2, "total_cores": 4, "used_cores": 2,
                                     "free_cores": 2}


def test_dollar_dollar_it_through_the_partition_governor(partitioned):
    wd, _ = partitioned
    report = _report(wd)
    assert [report["env_a:%d" % i]["state"] for i in range(4)] == ["SUCCEED"] * 4
    for i in range(4):
        # ${it} is the index; $$$$it reached the shell as the literal $it
        assert (wd / ("env_a_%d" % i) / "env.stdout").read_text() == "%d $it\n" % i
    assert not (wd / "env_a_${it}").exists()


def test_an_open_core_range_fails_with_upstreams_words(partitioned):
    wd, _ = partitioned
    entry = _report(wd)["open"]
    assert entry["state"] == "FAILED"
    assert entry["messages"].startswith(
        "Both core's range boundaries (min, max) must be defined"), entry
