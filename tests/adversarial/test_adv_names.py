"""Issue 17, class 5: names and messages.

The job-name rule (qcgflow/runtime/names.py, docs/file-interface.md) on every way in: the
network interface, requests files, the graph API's ``name=`` option and workflow task
names. Every refusal is one line; a hostile name is shown escaped in it. Also: resources
without a count name the job and the field; after ``finish`` the jobs still queued are in
jobs.report and in the exit summary.
"""

import json
import subprocess

import pytest

import qcgflow
from qcgflow.errors import TaskOptionError
from adv_proc_harness import PY
from support.processes import child_env
from support.services import NetService

SERVICE = [PY, "-m", "qcgflow.cli", "service"]

BAD_NAMES = {
    "dot": ".",
    "dotdot": "..",
    "dash-rf": "-rf",
    "dash-help": "--help",
    "surrogate": "a\ud800b",
    "lone-low-surrogate": "\udfff",
    "bidi-rlo": "job\u202eexe.txt",
    "bidi-isolate": "a\u2066b",
    "zero-width": "a\u200bb",
    "newline": "a\nb",
    "carriage-return": "a\rb",
    "tab": "a\tb",
    "escape": "a\x1b[31mred",
    "nul": "a\x00b",
    "long": "x" * 10000,
    "just-too-long": "y" * 201,
    "long-utf8": "\u00e9" * 101,  # 202 bytes
    "slash": "a/b",
    "colon": "a:1",
    "space": "a b",
    "line-separator": "a\u2028b",
    "nbsp": "a\u00a0b",
}
GOOD_NAMES = ["job1", "j-1", "a_b", "a.b", ".hidden", "x" * 200, "\u00e9t\u00e9", "\u540d\u524d",
              "a+b", "A,B=C", "v1.2.3", "_", "9"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with NetService(tmp_path_factory.mktemp("names")) as net:
        yield net


def _submit(service, name, **extra):
    job = {"name": name, "execution": {"exec": "/bin/true"}}
    job.update(extra)
    return service.request({"request": "submit", "jobs": [job]})


@pytest.mark.parametrize("key", sorted(BAD_NAMES))
def test_bad_job_names_are_refused_in_one_line(service, key):
    name = BAD_NAMES[key]
    reply = _submit(service, name)
    assert reply["code"] != 0, reply
    message = reply["message"]
    assert message.startswith("Invalid job name"), message
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "\u202e" not in message and "\u2066" not in message and "\u2028" not in message
    assert len(message) < 300, message
    listed = service.request({"request": "listJobs"})["data"]["jobs"]
    assert name not in listed


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_job_names_are_accepted(service, name):
    reply = _submit(service, name)
    assert reply["code"] == 0, reply
    assert name in service.request({"request": "listJobs"})["data"]["jobs"]


def test_upstream_words_for_a_colon_are_kept(service):
    assert _submit(service, "a:1")["message"] == "Invalid job name a:1"


def test_a_name_made_bad_by_variables_is_refused(service):
    reply = _submit(service, "-${rcnt}")
    assert reply["code"] != 0 and "starts with '-'" in reply["message"], reply


def test_queries_with_hostile_names_answer_in_one_line(service):
    for request in ("jobStatus", "cancelJob", "removeJob", "jobInfo"):
        reply = service.request({"request": request, "jobNames": ["no\nsuch\u202e"]})
        assert reply["code"] != 0, reply
        assert "\n" not in reply["message"] and "\u202e" not in reply["message"], reply


def test_unknown_attribute_with_a_hostile_name_is_one_line(service):
    reply = service.request({"request": "submit", "jobs": [
        {"name": "a\nb", "bogus\nkey": 1, "execution": {"exec": "/bin/true"}}]})
    assert reply["code"] != 0 and "\n" not in reply["message"], reply


@pytest.mark.parametrize("resources, field", [
    ({"wt": "10m"}, "{wt}"),
    ({}, "{}"),
])
def test_resources_without_a_count_name_the_job_and_field(service, resources, field):
    reply = _submit(service, "needs-cores", resources=resources)
    assert reply["code"] != 0
    message = reply["message"]
    assert message.startswith("No resources defined"), message  # upstream's words first
    assert "job 'needs-cores'" in message and field in message
    assert "resources.numCores" in message


def test_requests_file_with_a_bad_name_is_one_line(tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps([{"request": "submit", "jobs": [
        {"name": "x\n" * 5000, "execution": {"exec": "/bin/true"}}]}]))
    done = subprocess.run(SERVICE + ["--file-path", str(path), "--wd", str(tmp_path / "wd")],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    refusals = [line for line in lines if "Invalid job name" in line]
    assert len(refusals) == 1, done.stderr  # the name's newlines do not split the message
    assert len(refusals[0]) < 300
    # the only other line is the count of refused requests (the exit status 4 says it too)
    assert [line for line in lines if line not in refusals] == [
        "qcgflow service: 1 request(s) of %s refused (see the lines above)" % path], done.stderr
    assert done.returncode == 4


@pytest.mark.parametrize("name", [".", "..", "-rf", "a\u202eb", "a\nb", "x" * 10000])
def test_graph_name_option_refuses_bad_names(name):
    @qcgflow.task
    def f():
        return 1
    with pytest.raises(TaskOptionError) as info:
        f.options(name=name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task", ["..", ".", "-rf", '"a\\u202eb"'])
def test_workflow_task_with_a_bad_name_writes_nothing(tmp_path, task):
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: w\ntasks:\n  %s:\n    python: os.getcwd\n" % task)
    run = tmp_path / "run"
    done = subprocess.run([PY, "-m", "qcgflow.cli", "run", str(wf), "--wd", str(run),
                           "--nodes", "1"], env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid task name" in lines[0], done.stderr
    assert not run.exists() or not any(run.iterdir()), list(run.iterdir())


def test_queued_jobs_after_finish_are_reported(tmp_path):
    service = NetService(tmp_path, nodes="1")
    jobs = [{"name": "runs", "execution": {"exec": "sleep", "args": ["60"]}},
            {"name": "waits", "execution": {"exec": "sleep", "args": ["60"]}},
            {"name": "waits-too", "execution": {"exec": "/bin/true"},
             "iteration": {"stop": 3}}]
    try:
        assert service.request({"request": "submit", "jobs": jobs})["code"] == 0
        service.wait_state("runs", ["EXECUTING"])
    except BaseException:
        service.stop()
        raise
    service.finish()
    stderr = service.stderr()
    report = next((tmp_path / "wd").glob(".qcgpjm-service-*/jobs.report"))
    entries = {e["name"]: e for e in map(json.loads, report.read_text().splitlines())}
    assert entries["runs"]["state"] == "CANCELED"
    assert entries["waits"]["state"] == "QUEUED"
    assert entries["waits-too"]["state"] == "QUEUED"
    assert "service stopped (finish)" in entries["waits"]["messages"]
    assert "3 of 3 jobs did not succeed" in stderr and "QUEUED: 2" in stderr, stderr


@pytest.mark.parametrize("after", ["x\ny", "a\u202eb", "\ud800", "x\ny:1", "ok:\nbad"])
def test_hostile_dependency_names_are_refused_in_one_line(service, after):
    reply = _submit(service, "dep-check", dependencies={"after": [after]})
    assert reply["code"] != 0, reply
    assert "dependencies.after" in reply["message"]
    for bad in ("\n", "\u202e", "\ud800"):
        assert bad not in reply["message"], reply
