"""cancelJob and removeJob (COMPAT.md "Cancel and remove").

The file interface handles every request before the first job starts, so cancelJob in a
plain requests file meets QUEUED jobs; the tests that cancel or remove a *running* job go
through ``tests/support/_driver.py`` (``support.services.run_driver``), which holds the
request back until the job runs.
"""

import time

import pytest

from support.jobs import history_states, job, submit, wait_file, wait_marker
from support.services import run_driver, run_service


def cancel(*names):
    return {"request": "cancelJob", "jobNames": list(names)}


def remove(*names):
    return {"request": "removeJob", "jobNames": list(names)}


# --------------------------------------------------------------------------- queued jobs

def test_cancel_a_queued_job_and_its_dependants_are_omitted(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a", "sleep", ["30"]), job("b", "true", after=["a"]), job("c", "true")),
        cancel("a"),
    ], timeout=10)
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    assert result.states == {"a": "CANCELED", "b": "OMITTED", "c": "SUCCEED"}
    assert "EXECUTING" not in history_states(result.entry("a"))
    b = result.entry("b")
    assert "a" in b["messages"] and "CANCELED" in b["messages"]


def test_cancel_some_queued_iterations(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "true", iteration={"stop": 4})),
        cancel("a:1", "a:3"),
        wait_marker("a", "FAILED"),
        {"request": "jobInfo", "jobNames": ["a"], "withChilds": True},
    ], timeout=20)
    assert result.reply(2)["code"] == 0, result.describe()
    states = result.states
    assert [states["a:%d" % i] for i in range(4)] == ["SUCCEED", "CANCELED", "SUCCEED",
                                                      "CANCELED"]
    assert states["a"] == "FAILED"
    data = result.reply(3)["data"]["jobs"]["a"]["data"]
    assert data["iterations"]["failed"] == 2
    assert data["iterations"]["finished"] == 4
    assert [c["state"] for c in data["childs"]] == ["SUCCEED", "CANCELED", "SUCCEED",
                                                    "CANCELED"]


def test_cancel_some_iterations_in_plain_file_mode(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", iteration={"stop": 3})),
                                    cancel("a:1")], timeout=20)
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.state("a:1") == "CANCELED"
    assert result.state("a:0") == "SUCCEED" and result.state("a:2") == "SUCCEED"
    assert result.state("a") == "FAILED"


def test_cancel_a_whole_queued_iterative_job(tmp_path):
    result = run_service(tmp_path, [
        submit(job("a", "sleep", ["30"], iteration={"stop": 3}),
               job("b", "true", after=["a"]),
               job("c", "true", after=["a:${it}"], iteration={"stop": 3})),
        cancel("a"),
    ], timeout=10)
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    states = result.states
    assert states["a"] == "CANCELED"
    assert all(states.get("a:%d" % i) == "CANCELED" for i in range(3)), states
    assert states["b"] == "OMITTED"
    assert states.get("c") in ("OMITTED", "FAILED"), states
    assert all(states.get("c:%d" % i, "OMITTED") == "OMITTED" for i in range(3)), states


def test_cancel_unknown_job_is_an_error_and_cancels_nothing(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true")), cancel("a", "nope")],
                         timeout=20)
    reply = result.reply(2)
    assert reply["code"] != 0
    assert "nope" in reply["message"]
    assert result.state("a") == "SUCCEED"


def test_remove_unknown_job_is_an_error(tmp_path):
    result = run_service(tmp_path, [remove("nope")], timeout=20)
    assert result.reply(1)["code"] != 0
    assert "nope" in result.reply(1)["message"]


def test_remove_a_finished_job(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "true")),
        wait_marker("a", "SUCCEED"),
        remove("a"),
        {"request": "jobStatus", "jobNames": ["a"]},
        {"request": "listJobs"},
    ], timeout=20)
    assert result.reply(2) == {"code": 0, "data": {"removed": 1}}
    assert result.reply(3)["message"] == "Job 'a' doesn't exist"
    assert result.reply(4)["data"]["length"] == 0
    assert result.final_status["JobStats"]["TotalJobs"] == 0


# --------------------------------------------------------------------------- running jobs

def test_cancel_a_running_job(tmp_path):
    started = time.monotonic()
    result = run_driver(tmp_path, [
        submit(job("a", "sleep", ["30"]), job("b", "true", after=["a"])),
        wait_marker("a", "EXECUTING"),
        cancel("a"),
    ], timeout=10)
    assert result.reply(2)["code"] == 0, result.describe()
    assert time.monotonic() - started < 5, result.describe()
    a = result.entry("a")
    assert a["state"] == "CANCELED"
    assert history_states(a)[-2:] == ["EXECUTING", "CANCELED"]
    assert a["runtime"]["exit_code"] == "-15"  # SIGTERM was enough
    assert result.state("b") == "OMITTED"
    assert "CANCELED" in result.entry("b")["messages"]


def test_cancel_sends_sigterm_first(tmp_path):
    script = ("trap 'echo got-term > term.txt; exit 0' TERM; touch ready; "
              "sleep 30 & wait")
    result = run_driver(tmp_path, [
        submit(job("a", script=script)),
        wait_file("ready"),
        cancel("a"),
    ], timeout=20)
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.read("term.txt").strip() == "got-term"
    assert result.state("a") == "CANCELED"  # even though it exited 0 after the signal


def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace(tmp_path):
    # --cancel-grace 1 instead of the default 10 s: the test need not wait out the default
    script = "trap '' TERM; touch ready; sleep 40"
    result = run_driver(tmp_path, [
        submit(job("a", script=script)),
        wait_file("ready"),
        cancel("a"),
    ], "--cancel-grace", "1", timeout=30)
    assert result.reply(2)["code"] == 0, result.describe()
    a = result.entry("a")
    assert a["state"] == "CANCELED", result.describe()
    assert a["runtime"]["exit_code"] == "-9"  # SIGTERM was ignored: SIGKILL ended it
    # not before the grace; long before the 10 s default (so the option was used)
    assert 1.0 <= result.elapsed < 9.0, "the run took %.1fs" % result.elapsed


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_a_bad_cancel_grace_is_a_one_line_error(tmp_path, value):
    result = run_service(tmp_path, [submit(job("a", "true"))], "--cancel-grace", value)
    assert result.returncode == 2, result.describe()
    assert "--cancel-grace: %s is not a number of seconds (0 or more)" % value \
        in result.stderr, result.stderr


def test_cancel_a_running_iteration(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", script="if [ ${it} -eq 0 ]; then sleep 30; fi",
                   iteration={"stop": 2})),
        wait_marker("a:0", "EXECUTING"),
        cancel("a:0"),
    ], timeout=10)
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    assert result.state("a:0") == "CANCELED"
    assert result.state("a:1") == "SUCCEED"
    assert result.state("a") == "FAILED"


def test_cancel_a_whole_running_iterative_job(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "sleep", ["30"], iteration={"stop": 4}),
               job("b", "true", after=["a"]),
               job("c", "true", after=["a:${it}"], iteration={"stop": 4})),
        wait_marker("a:1", "EXECUTING"),
        cancel("a"),
    ], timeout=10)  # 2 cores: a:0 and a:1 run, a:2 and a:3 wait
    assert result.reply(2)["code"] == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    states = result.states
    assert states["a"] == "CANCELED"
    assert [states.get("a:%d" % i) for i in range(4)] == ["CANCELED"] * 4, states
    assert states["b"] == "OMITTED"
    assert states["c"] in ("OMITTED", "FAILED")


def test_remove_an_executing_job_is_refused(tmp_path):
    result = run_driver(tmp_path, [
        submit(job("a", "sleep", ["30"])),
        wait_marker("a", "EXECUTING"),
        remove("a"),
        {"request": "jobStatus", "jobNames": ["a"]},
        cancel("a"),
    ], timeout=20)
    assert result.reply(2)["code"] != 0
    assert "a" in result.reply(2)["message"]
    assert result.reply(3)["data"]["jobs"]["a"]["data"]["status"] == "EXECUTING"
    assert result.state("a") == "CANCELED"
