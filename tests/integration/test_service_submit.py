"""Submit: replies, atomicity, names, iterations (COMPAT.md "Submit")."""

import pytest

from support.jobs import job, submit, wait_marker
from support.services import run_driver, run_service

LIST = {"request": "listJobs"}


def test_submit_reply_format(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("b", "true"))], timeout=20)
    assert result.reply(1) == {"code": 0, "message": "2 jobs submitted",
                               "data": {"submitted": 2, "jobs": ["a", "b"]}}
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}


def test_submit_is_atomic(tmp_path):
    bad = {"name": "b"}  # no execution
    result = run_service(tmp_path, [submit(job("a", "true"), bad, job("c", "true")), LIST,
                                    submit(job("a", "true"))], timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"] == "Missing execution element in job description"
    assert result.reply(2)["data"] == {"length": 0, "jobs": {}}
    assert result.reply(3)["code"] == 0  # the name "a" was not taken by the failed request
    assert result.states == {"a": "SUCCEED"}


def test_duplicate_name_in_one_request(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("a", "true")), LIST],
                         timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"] == "Job a already exist"
    assert result.reply(2)["data"]["length"] == 0
    assert result.report_lines == []


def test_duplicate_name_across_requests(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "echo", ["first"], stdout="a.out")),
                                    submit(job("a", "echo", ["second"], stdout="a.out"))],
                         timeout=20)
    assert result.reply(1)["code"] == 0
    assert result.reply(2)["code"] != 0
    assert result.reply(2)["message"] == "Job a already exist"
    assert [e["name"] for e in result.report_lines] == ["a"]
    assert result.read("a.out") == "first\n"


def test_name_can_be_reused_after_remove(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "echo", ["first"], stdout="a.out")),
        wait_marker("a", "SUCCEED"),
        {"request": "removeJob", "jobNames": ["a"]},
        submit(job("a", "echo", ["second"], stdout="a.out")),
    ], timeout=20)
    assert result.reply(2) == {"code": 0, "data": {"removed": 1}}
    assert result.reply(3)["code"] == 0, result.describe()
    assert [(e["name"], e["state"]) for e in result.report_lines] == [("a", "SUCCEED"),
                                                                      ("a", "SUCCEED")]
    assert result.read("a.out") == "first\nsecond\n"


def test_name_with_a_colon_is_invalid(tmp_path):
    result = run_service(tmp_path, [submit(job("a:1", "true")), LIST], timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"] == "Invalid job name a:1"
    assert result.reply(2)["data"]["length"] == 0


@pytest.mark.parametrize("bad, message", [
    ({"execution": {"exec": "true"}}, "Missing name in job description"),
    ({"name": "", "execution": {"exec": "true"}}, "Missing name in job description"),
    ({"name": "a"}, "Missing execution element in job description"),
    ({"name": "a", "execution": {"exec": "true"}, "iteration": "x"},
     "Wrong format of iteration directive: not a dictionary"),
    ({"name": "a", "execution": {"exec": "true"}, "iteration": [1, 2]},
     "Wrong format of iteration directive: not a dictionary"),
])
def test_job_description_errors_exact_text(tmp_path, bad, message):
    result = run_service(tmp_path, [submit(bad)], timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"] == message


def test_unknown_job_attribute_is_named_without_python_internals(tmp_path):
    result = run_service(tmp_path, [submit({"name": "a", "execution": {"exec": "true"},
                                            "bogus": 1})], timeout=20)
    message = result.reply(1)["message"]
    assert result.reply(1)["code"] != 0
    assert "Unknown job attribute 'bogus'" in message
    for leak in ("__init__", "keyword argument", "Traceback", "Error:"):
        assert leak not in message


def test_unknown_execution_key_is_named(tmp_path):
    result = run_service(tmp_path, [submit({"name": "a", "execution": {"exec": "true",
                                                                       "bogus": 1}})],
                         timeout=20)
    assert result.reply(1)["code"] != 0
    assert "bogus" in result.reply(1)["message"]


# --------------------------------------------------------------------------- iterations

def test_iteration_start_stop_names_children(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "job", "echo", ["${it}"], stdout="out_${it}", iteration={"start": 2, "stop": 12}))],
        timeout=20)
    assert result.returncode == 0, result.describe()
    children = ["job:%d" % i for i in range(2, 12)]
    assert sorted(e["name"] for e in result.report_lines) == sorted(children + ["job"])
    assert result.report_lines[-1]["name"] == "job"
    for i in range(2, 12):
        assert result.state("job:%d" % i) == "SUCCEED"
        assert result.read("out_%d" % i).strip() == str(i)
    assert result.state("job") == "SUCCEED"


def test_iteration_stop_only_starts_at_zero(tmp_path):
    result = run_service(tmp_path, [submit(job("j", "true", iteration={"stop": 3}))],
                         timeout=20)
    assert sorted(result.states) == ["j", "j:0", "j:1", "j:2"]


def test_iteration_values_set_it_and_itval(tmp_path):
    result = run_service(tmp_path, [submit(job(
        "v", "echo", ["${it}", "${itval}"], stdout="out_${itval}",
        iteration={"values": ["x", "y"]}))], timeout=20)
    assert result.state("v") == "SUCCEED", result.describe()
    assert result.read("out_x").split() == ["0", "x"]
    assert result.read("out_y").split() == ["1", "y"]
    assert {"v:0", "v:1"} <= set(result.states)


def test_iteration_start_larger_than_stop_is_an_error(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", iteration={"start": 5, "stop": 2})),
                                    LIST], timeout=20)
    assert result.reply(1)["code"] != 0
    assert result.reply(1)["message"].startswith("Wrong format of iteration directive")
    assert result.reply(2)["data"]["length"] == 0


def test_iteration_start_equal_to_stop_is_an_error_worded_right(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", iteration={"start": 3, "stop": 3}))],
                         timeout=20)
    message = result.reply(1)["message"]
    assert result.reply(1)["code"] != 0
    assert message.startswith("Wrong format of iteration directive")
    # upstream says "start index larger then stop one" here, which is false for 3 == 3
    assert "larger then stop" not in message


def test_parent_succeeds_only_if_all_iterations_succeeded(tmp_path):
    result = run_service(tmp_path, [submit(
        job("good", "true", iteration={"stop": 3}),
        job("bad", script="test ${it} -ne 1", iteration={"stop": 3}))], timeout=20)
    assert result.state("good") == "SUCCEED", result.describe()
    assert [result.state("bad:%d" % i) for i in range(3)] == ["SUCCEED", "FAILED", "SUCCEED"]
    assert result.state("bad") == "FAILED"


def test_job_info_with_childs_after_the_run(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", script="test ${it} -ne 1", iteration={"start": 0, "stop": 3})),
        wait_marker("a", "FAILED"),
        {"request": "jobInfo", "jobNames": ["a"], "params": {"withChilds": True}},
    ], timeout=20)
    info = result.reply(2)["data"]["jobs"]["a"]
    assert info["status"] == 0
    data = info["data"]
    assert data["jobName"] == "a" and data["status"] == "FAILED"
    assert data["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 3, "failed": 1}
    assert [c["iteration"] for c in data["childs"]] == [0, 1, 2]
    assert [c["state"] for c in data["childs"]] == ["SUCCEED", "FAILED", "SUCCEED"]


def test_job_info_with_childs_of_queued_iterations(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a", "true", iteration={"start": 4, "stop": 7})),
        {"request": "jobInfo", "jobNames": ["a"], "withChilds": True},
    ], timeout=20)
    data = result.reply(2)["data"]["jobs"]["a"]["data"]
    assert data["iterations"] == {"start": 4, "stop": 7, "total": 3, "finished": 0, "failed": 0}
    assert [c["iteration"] for c in data["childs"]] == [4, 5, 6]
    assert result.state("a") == "SUCCEED"


def test_job_info_without_childs_has_no_childs(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a", "true", iteration={"stop": 2})),
        {"request": "jobInfo", "jobNames": ["a"]},
    ], timeout=20)
    data = result.reply(2)["data"]["jobs"]["a"]["data"]
    assert "childs" not in data
    assert data["iterations"]["total"] == 2
