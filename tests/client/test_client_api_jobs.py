"""Jobs (job groups, simple -> standard conversion, files) and JobInfo parsing."""

import json
from datetime import timedelta

import pytest

from qcgflow.runtime.api import (FileError, InvalidJobDescriptionError, JobInfo,
                                 JobNotDefinedError, Jobs)


def test_add_converts_the_simple_format():
    jobs = Jobs().add(name="a", exec="/bin/date", args=["-u"], numCores=2, numNodes=1,
                      iteration=10, after="x", wt="10m", model="threads", stdout="o.${it}",
                      stderr="e", stdin="i", wd="w", modules="m", venv="/v",
                      model_opts={"mpirun": "x"}, env={"A": "1"})
    assert jobs.jobs() == [{
        "name": "a",
        "execution": {"exec": "/bin/date", "args": ["-u"], "stdin": "i", "stdout": "o.${it}",
                      "stderr": "e", "wd": "w", "modules": "m", "venv": "/v",
                      "model": "threads", "model_opts": {"mpirun": "x"}, "env": {"A": "1"}},
        "resources": {"numCores": {"exact": 2}, "numNodes": {"exact": 1}, "wt": "10m"},
        "iteration": {"start": 0, "stop": 10},
        "dependencies": {"after": ["x"]},
    }]


def test_add_variants():
    jobs = (Jobs().add({"name": "s", "script": "echo"}, iteration=["x", "y"])
            .add(name="d", exec="e", numCores={"min": 1, "max": 4}, iteration={"start": 2,
                                                                                "stop": 5},
                 after=["a", "b"]))
    s, d = jobs.ordered_jobs()
    assert s == {"name": "s", "execution": {"script": "echo"},
                 "iteration": {"values": ["x", "y"]}}
    assert d["resources"] == {"numCores": {"min": 1, "max": 4}}
    assert d["iteration"] == {"start": 2, "stop": 5}
    assert d["dependencies"] == {"after": ["a", "b"]}
    unnamed = Jobs().add(exec="/bin/true")
    assert len(unnamed.job_names()[0]) == 36  # a uuid4


@pytest.mark.parametrize("attrs,message", [
    ({"name": "a"}, "No 'exec' nor 'script'"),
    ({"name": "a", "exec": "x", "script": "y"}, "Both 'exec' and 'script'"),
    ({"name": "a", "exec": "x", "bogus": 1}, "Unknown attribute bogus "),
    ({"name": "a", "exec": 5}, "Invalid attribute exec type int"),
    ({"name": "a", "exec": "x", "numCores": {"exactly": 2}},
     "Unknown numCores attribute exactly"),
    ({"name": "a", "exec": "x", "iteration": {"start": 1}}, "stop of element iteration"),
    ({"name": "a", "exec": "x", "iteration": {"stop": 1, "values": []}}, "excluding"),
    ({"name": "a", "exec": "x", "iteration": 10 ** 6}, "Wrong number of iterations"),
    ({"name": "a", "exec": "x", "numCores": True}, "Invalid attribute numCores type bool"),
])
def test_add_rejects_invalid_descriptions(attrs, message):
    with pytest.raises(InvalidJobDescriptionError, match=message):
        Jobs().add(**attrs)


def test_names_are_unique_and_ordered():
    jobs = Jobs().add(name="b", exec="x").add_std(name="a", execution={"exec": "y"})
    with pytest.raises(InvalidJobDescriptionError, match="Job a already in list"):
        jobs.add(name="a", exec="x")
    with pytest.raises(InvalidJobDescriptionError, match="execution/exec"):
        jobs.add_std({"name": "c"})
    assert jobs.ordered_job_names() == ["b", "a"] and sorted(jobs.job_names()) == ["a", "b"]
    jobs.remove("b")
    jobs.add(name="b", exec="x")
    assert jobs.ordered_job_names() == ["a", "b"]
    with pytest.raises(JobNotDefinedError):
        jobs.remove("zz")
    assert jobs.clear() == 2 and jobs.jobs() == [] and len(jobs) == 0


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "jobs.json"
    jobs = Jobs().add(name="a", exec="x", iteration=2).add_std(
        {"name": "b", "execution": {"script": "s"}, "dependencies": {"after": ["a"]}})
    jobs.save_to_file(str(path))
    assert json.loads(path.read_text()) == jobs.ordered_jobs()
    loaded = Jobs()
    loaded.load_from_file(str(path))
    assert loaded.ordered_jobs() == jobs.ordered_jobs()
    with pytest.raises(InvalidJobDescriptionError, match="already in list"):
        loaded.load_from_file(str(path))
    assert len(loaded) == 2  # nothing of a failed load is added
    with pytest.raises(FileError):
        Jobs().load_from_file(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FileError):
        Jobs().load_from_file(str(tmp_path / "bad.json"))
    with pytest.raises(FileError):
        jobs.save_to_file(str(tmp_path / "no" / "such" / "dir.json"))


def test_jobinfo_from_job_and_child():
    data = {"jobName": "j", "status": "SUCCEED",
            "runtime": {"allocation": "n0[0:1],n1[2]", "wd": "/w", "rtime": "0:00:01.500000",
                        "exit_code": "0"},
            "iterations": {"start": 0, "stop": 1, "total": 1, "finished": 1, "failed": 0},
            "childs": [{"iteration": 0, "state": "SUCCEED",
                        "runtime": {"allocation": "n0[3]", "rtime": "1 day, 1:02:03.5"}}],
            "history": "\n2026-01-01 00:00:00.1: QUEUED\n2026-01-01 00:00:01.1: SUCCEED",
            "messages": "m"}
    info = JobInfo.from_job(data)
    assert info.name == "j" and info.status == "SUCCEED" and info.messages == "m"
    assert info.nodes == {"n0": ["0", "1"], "n1": ["2"]} and info.total_cores == 3
    assert info.time == timedelta(seconds=1.5) and info.wdir == "/w" and info.exit_code == 0
    assert info.history == ["2026-01-01 00:00:00.1: QUEUED", "2026-01-01 00:00:01.1: SUCCEED"]
    child = info.childs[0]
    assert child.name == "j:0" and child.iteration == 0 and child.total_cores == 1
    assert child.time == timedelta(days=1, hours=1, minutes=2, seconds=3.5)
    empty = JobInfo.from_job({"jobName": "q", "status": "QUEUED"})
    assert empty.nodes == {} and empty.total_cores == 0 and empty.time is None
    assert empty.history == [] and empty.childs is None


def test_add_passes_node_crs_to_resources():
    jobs = Jobs().add(name="g", exec="/bin/true", numCores=2, nodeCrs={"gpu": 1})
    assert jobs.jobs()[0]["resources"] == {"numCores": {"exact": 2}, "nodeCrs": {"gpu": 1}}
    with pytest.raises(InvalidJobDescriptionError, match="nodeCrs"):
        Jobs().add(name="g", exec="/bin/true", nodeCrs=1)
