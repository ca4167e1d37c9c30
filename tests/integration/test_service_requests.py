"""Requests of the file interface: error strings and the query replies.

COMPAT.md "Request errors (exact strings, keep them)"; seed "File based interface".
"""

import pytest

from support.jobs import job, submit, wait_marker
from support.services import run_driver, run_service

# (request, exact error message)
ERRORS = [
    (["not", "a", "dict"], "Invalid request"),
    ({"jobNames": ["a"]}, "Invalid request"),
    ({"request": "frobnicate"}, "Unknown request name: frobnicate"),
    ({"request": "control"}, "Wrong control request - missing command"),
    ({"request": "control", "command": "reboot"}, "Wrong control request - unknown command"),
    ({"request": "submit"}, "Wrong submit request - missing jobs data"),
    ({"request": "submit", "jobs": "a"}, "Wrong submit request - missing jobs data (a "
     "non-empty list of job descriptions is needed, not a string)"),
    ({"request": "submit", "jobs": ["a"]}, "Wrong submit request - wrong job data"),
    (submit({"execution": {"exec": "true"}}), "Missing name in job description"),
    (submit({"name": "x"}), "Missing execution element in job description"),
    (submit({"name": "x", "execution": {"exec": "true"}, "iteration": 7.5}),
     "Wrong format of iteration directive: not a dictionary"),
    ({"request": "jobStatus"}, "Wrong job status request - missing job names"),
    ({"request": "jobStatus", "jobNames": []}, "Wrong job status request - missing job names"),
    ({"request": "jobInfo"}, "Wrong job info request - missing job names"),
    ({"request": "cancelJob"}, "Wrong cancel job request - missing job names"),
    ({"request": "removeJob"}, "Wrong remove job request - missing job names"),
    ({"request": "jobStatus", "jobNames": ["nope"]}, "Job 'nope' doesn't exist"),
    ({"request": "jobInfo", "jobNames": ["nope"]}, "Job ['nope'] doesn't exist"),
    (submit({"name": "x", "execution": {"exec": "true"}, "bogus": 1}),
     "Unknown job attribute 'bogus' in job 'x'"),
]


@pytest.fixture(scope="module")
def errors_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("errors")
    requests = [request for request, _ in ERRORS] + [
        {"request": "control", "command": "finishAfterAllTasksDone"}]
    return run_service(tmp_path, requests, timeout=30)


@pytest.mark.parametrize("number", range(1, len(ERRORS) + 1),
                         ids=[message for _, message in ERRORS])
def test_error_reply_exact_text(errors_run, number):
    expected = ERRORS[number - 1][1]
    reply = errors_run.reply(number)
    assert reply["code"] != 0, reply
    if expected.startswith("Unknown job attribute"):
        assert reply["message"].startswith("Unknown job attribute 'bogus'"), reply
    else:
        assert reply["message"] == expected
    assert "qcgflow service: request %d: %s" % (number, reply["message"]) in errors_run.stderr


def test_errors_do_not_stop_the_service(errors_run):
    assert errors_run.returncode == 4, errors_run.describe()  # it went on, but refused some
    last = len(ERRORS) + 1
    assert errors_run.reply(last) == {"code": 0,
                                      "message": "finishAfterAllTasksDone command accepted"}
    assert "Traceback" not in errors_run.service_log + errors_run.stderr


def test_error_replies_never_leak_python_internals(errors_run):
    for message in errors_run.error_messages():
        for leak in ("Traceback", "__init__", "unexpected keyword", "NoneType", "KeyError",
                     "object has no attribute"):
            assert leak not in message, message


# --------------------------------------------------------------------------- query replies

def test_list_jobs_reply(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("b", "true", cores=2)),
                                    {"request": "listJobs"}], timeout=20)
    data = result.reply(2)["data"]
    assert data["length"] == 2
    assert set(data["jobs"]) == {"a", "b"}
    assert data["jobs"]["a"]["status"] == "QUEUED"
    assert data["jobs"]["a"]["inQueue"] == 0
    assert data["jobs"]["b"]["inQueue"] == 1


def test_job_status_reply(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("it", "true",
                                                                 iteration={"stop": 2})),
                                    {"request": "jobStatus", "jobNames": ["a", "it:1"]}],
                         timeout=20)
    assert result.reply(2) == {"code": 0, "data": {"jobs": {
        "a": {"status": 0, "data": {"jobName": "a", "status": "QUEUED"}},
        "it:1": {"status": 0, "data": {"jobName": "it:1", "status": "QUEUED"}},
    }}}


def test_job_info_reply(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true")),
                                    {"request": "jobInfo", "jobNames": ["a"]}], timeout=20)
    entry = result.reply(2)["data"]["jobs"]["a"]
    assert entry["status"] == 0
    assert entry["data"]["jobName"] == "a"
    assert entry["data"]["status"] == "QUEUED"
    assert entry["data"]["history"].strip().endswith(": QUEUED")


def test_replies_after_the_jobs_ran(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "true"), job("f", script="exit 4"), job("o", "true", after=["f"])),
        wait_marker("o", "OMITTED"),
        wait_marker("a", "SUCCEED"),
        {"request": "listJobs"},
        {"request": "jobStatus", "jobNames": ["a", "f", "o"]},
        {"request": "jobInfo", "jobNames": ["a", "f"]},
        {"request": "status"},
    ], timeout=20)
    jobs = result.reply(2)["data"]["jobs"]
    assert {name: item["status"] for name, item in jobs.items()} == {
        "a": "SUCCEED", "f": "FAILED", "o": "OMITTED"}
    assert "inQueue" not in jobs["a"]
    assert "f" in jobs["o"]["messages"]

    status = result.reply(3)["data"]["jobs"]
    assert status["a"]["data"]["status"] == "SUCCEED"
    assert status["f"]["data"]["status"] == "FAILED"
    assert status["o"]["data"]["status"] == "OMITTED"

    info = result.reply(4)["data"]["jobs"]
    runtime = info["a"]["data"]["runtime"]
    assert {"allocation", "wd", "rtime", "exit_code"} <= set(runtime)
    assert runtime["exit_code"] == "0"
    assert info["f"]["data"]["runtime"]["exit_code"] == "4"
    history = [line.rsplit(": ", 1)[1] for line in info["a"]["data"]["history"].splitlines()
               if line.strip()]
    assert history[-3:] == ["SCHEDULED", "EXECUTING", "SUCCEED"]

    stats = result.reply(5)["data"]["JobStats"]
    assert stats["TotalJobs"] == 3
    assert stats["FinishedJobs"] == 3
    assert stats["FailedJobs"] == 2
    assert stats["ExecutingJobs"] == 0


def test_resources_info_while_a_job_runs(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", script="sleep 0.5", cores=1)),
        wait_marker("a", "EXECUTING"),
        {"request": "resourcesInfo"},
        {"request": "jobStatus", "jobNames": ["a"]},
    ], nodes="3", timeout=20)
    assert result.reply(2)["data"] == {"total_nodes": 1, "total_cores": 3, "used_cores": 1,
                                       "free_cores": 2}
    assert result.reply(3)["data"]["jobs"]["a"]["data"]["status"] == "EXECUTING"
    assert result.state("a") == "SUCCEED"


def test_status_reply(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true")), {"request": "status"}],
                         "--tags", "x,y", timeout=20)
    data = result.reply(2)["data"]
    assert set(data) >= {"System", "Resources", "JobStats"}
    assert data["System"]["InstanceId"] == "test"
    assert data["System"]["Tags"] == ["x", "y"]
    assert data["System"]["Wd"] == str(result.wd)
    assert data["JobStats"]["TotalJobs"] == 1


def test_long_replies_are_logged_whole(tmp_path):
    """In file mode service.log is the only place replies go ("outputs all responses to the
    log file"): a long reply must be logged complete, as valid JSON."""
    jobs = [job("job_with_a_long_name_%03d" % i, "true") for i in range(60)]
    result = run_service(tmp_path, [submit(*jobs), {"request": "listJobs"}], timeout=30)
    reply = result.reply(2)
    assert reply["data"]["length"] == 60
