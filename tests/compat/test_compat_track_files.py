"""upstream's tracker files (``track.reqs`` / ``track.states``) written by our service.

The real QCG-PilotJob 0.14.2 (side venv) resumes a run directory that qcgflow interrupted:
it runs only what had not finished.
"""

import json
import subprocess
import sys

from qcgflow.runtime.api.job import Jobs
from qcgflow.runtime.api.local import LocalManager


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_mode_run_writes_upstream_track_files(tmp_path):
    requests = tmp_path / "reqs.json"
    requests.write_text(json.dumps([
        {"request": "submit", "jobs": [
            {"name": "a", "execution": {"exec": "/bin/true"}},
            {"name": "b", "iteration": {"start": 2, "stop": 4},
             "execution": {"exec": "/bin/false"}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]))
    done = subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--file-path",
                           str(requests), "--wd", str(tmp_path), "--id", "t", "--nodes", "2"],
                          capture_output=True, text=True, timeout=60)
    assert "1 of 2 jobs did not succeed" in done.stderr, done.stderr
    aux = tmp_path / ".qcgpjm-service-t"
    assert lines(aux / "track.reqs") == [
        {"name": "a", "execution": {"exec": "/bin/true"},
         "resources": {"numCores": {"exact": 1}}},
        {"name": "b", "iteration": {"start": 2, "stop": 4},
         "execution": {"exec": "/bin/false"}, "resources": {"numCores": {"exact": 1}}}]
    states = lines(aux / "track.states")
    assert sorted(states, key=lambda s: s["task"]) == [
        {"task": "a", "iteration": None, "state": "SUCCEED"},
        {"task": "b", "iteration": None, "state": "FAILED"},
        {"task": "b:2", "iteration": 2, "state": "FAILED"},
        {"task": "b:3", "iteration": 3, "state": "FAILED"}]
    assert states[-1]["task"] == "b"  # the parent after its iterations


def test_upstream_resumes_a_run_qcgflow_interrupted(upstream, tmp_path):
    wd = tmp_path / "wd"
    manager = LocalManager(["--wd", str(wd), "--nodes", "2", "--id", "r1"], {})
    try:
        manager.submit(Jobs()
                       .add(name="a", exec="/bin/sh", args=["-c", "echo A >> a.out"])
                       .add(name="it", exec="/bin/sh", iteration=4,
                            args=["-c", "echo ${it} >> it_${it}.out; sleep 3"])
                       .add(name="c", exec="/bin/sh", args=["-c", "echo C >> c.out"],
                            after=["it"]))
        manager.wait4("it:1", timeout=30)
    finally:
        manager.kill_manager_process()
        manager.cleanup()
    aux = wd / ".qcgpjm-service-r1"
    finished = {s["task"] for s in lines(aux / "track.states")}
    assert {"a", "it:0", "it:1"} <= finished and not finished & {"it", "c"}

    report = aux / "jobs.report"
    before = len(report.read_text().splitlines())
    qcg_pm_service = upstream.parent / "qcg-pm-service"
    done = subprocess.run([str(qcg_pm_service), "--resume", str(aux), "--nodes", "2"],
                          cwd=str(wd), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (wd / "a.out").read_text() == "A\n"  # finished: not run again
    assert (wd / "c.out").read_text() == "C\n"  # ran once, after the resumed iterations
    for it in (0, 1):  # finished iterations: not run again
        assert (wd / ("it_%d.out" % it)).read_text() == "%d\n" % it
    reran = {json.loads(line)["name"]: json.loads(line)["state"]
             for line in report.read_text().splitlines()[before:]}
    assert reran == {"it:2": "SUCCEED", "it:3": "SUCCEED", "it": "SUCCEED", "c": "SUCCEED"}
