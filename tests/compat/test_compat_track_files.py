"""upstream's tracker files (``track.reqs`` / ``track.states``), both ways.

The real QCG-PilotJob 0.14.2 (side venv) resumes a run directory that qcgflow interrupted,
and qcgflow resumes one that QCG-PilotJob interrupted: each runs only what had not finished.
"""

import json
import os
import signal
import subprocess
import sys

from qcgflow.runtime.api.job import Jobs
from qcgflow.runtime.api.local import LocalManager
from support.eventually import eventually


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
    aux = wd / ".qcgpjm-service-r1"
    try:
        manager.submit(Jobs()
                       .add(name="a", exec="/bin/sh", args=["-c", "echo A >> a.out"])
                       .add(name="it", exec="/bin/sh", iteration=4,
                            args=["-c", "echo ${it} >> it_${it}.out; sleep 3"])
                       .add(name="c", exec="/bin/sh", args=["-c", "echo C >> c.out"],
                            after=["it"]))
        eventually(lambda: '"it:1"' in (aux / "track.states").read_text(), 30, 0.05,
                   "it:1 in track.states")
    finally:
        manager.kill_manager_process()
        manager.cleanup()
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


def test_qcgflow_resumes_a_run_upstream_interrupted(upstream, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "reqs.json").write_text(json.dumps([
        {"request": "submit", "jobs": [
            {"name": "a", "execution": {"exec": "/bin/sh", "args": ["-c", "echo A >> a.out"]}},
            {"name": "s", "execution": {"script": "echo S >> s.out"}},
            {"name": "it", "iteration": {"stop": 4}, "execution": {
                "exec": "/bin/sh", "args": ["-c", "echo ${it} >> it_${it}.out; sleep 3"]}},
            {"name": "c", "execution": {"exec": "/bin/sh", "args": ["-c", "echo C >> c.out"]},
             "dependencies": {"after": ["it"]}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]))
    aux = wd / ".qcgpjm-service-u1"
    proc = subprocess.Popen([str(upstream.parent / "qcg-pm-service"), "--file", "--file-path",
                             "reqs.json", "--nodes", "2", "--id", "u1"], cwd=str(wd),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        eventually(lambda: (aux / "track.states").exists()
                   and '"it:0"' in (aux / "track.states").read_text(), 60, 0.1,
                   "upstream to finish it:0 (track.states)")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the service and its running iterations
        proc.wait()
    done_before = {s["task"] for s in lines(aux / "track.states")}
    assert {"a", "s", "it:0"} <= done_before and "c" not in done_before

    done = subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--resume",
                           str(aux), "--nodes", "2"], cwd=str(wd), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (wd / "a.out").read_text() == "A\n" and (wd / "s.out").read_text() == "S\n"
    assert (wd / "it_0.out").read_text() == "0\n"  # finished under upstream: not again
    for it in range(1, 4):
        assert (wd / ("it_%d.out" % it)).read_text().endswith("%d\n" % it)
    assert (wd / "c.out").read_text() == "C\n"
    # the journal now holds the whole run: a second resume has nothing left to do
    again = subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--resume",
                            str(aux), "--nodes", "2"], cwd=str(wd), capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert (wd / "c.out").read_text() == "C\n"
