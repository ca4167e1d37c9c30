"""Working files in ``<wd>/.qcgpjm-service-<id>/`` (COMPAT.md "Working files"; seed
"Log files")."""

import json
import re
import socket
from datetime import datetime

from support.jobs import history_states, job, submit
from support.services import run_service

RUNTIME_KEYS = {"allocation", "wd", "rtime", "exit_code", "pid", "pname"}


def test_aux_dir_is_named_after_the_id(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"))], service_id="my-run", timeout=20)
    assert result.returncode == 0, result.describe()
    aux = result.wd / ".qcgpjm-service-my-run"
    assert aux.is_dir()
    assert {p.name for p in aux.iterdir()} >= {"service.log", "jobs.report",
                                               "final_status.json"}


def test_default_id_is_host_dot_pid(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"))], service_id=None, timeout=20)
    assert result.returncode == 0, result.describe()
    dirs = list(result.wd.glob(".qcgpjm-service-*"))
    assert len(dirs) == 1
    service_id = dirs[0].name[len(".qcgpjm-service-"):]
    assert re.fullmatch(re.escape(socket.gethostname()) + r"\.\d+", service_id), service_id
    assert result.final_status["System"]["InstanceId"] == service_id
    assert result.final_status["System"]["Pid"] == int(service_id.rsplit(".", 1)[1])


def test_service_log_names_the_id_and_tags(tmp_path):
    result = run_service(tmp_path, [], "--tags", "alpha,beta", service_id="idx42", timeout=20)
    assert "idx42" in result.service_log
    assert "alpha" in result.service_log and "beta" in result.service_log
    assert result.final_status["System"]["Tags"] == ["alpha", "beta"]


def test_jobs_report_json_lines(tmp_path):
    result = run_service(tmp_path, [submit(
        job("ok", "echo", ["x"], stdout="ok.out"),
        job("bad", script="exit 5"),
        job("it", "true", iteration={"stop": 3}),
    )], timeout=20)
    assert result.returncode == 0, result.describe()
    lines = [line for line in result.report_text.splitlines() if line.strip()]
    assert len(lines) == len(result.report_lines) == 6  # ok, bad, it:0..2, it
    assert sorted(e["name"] for e in result.report_lines) == ["bad", "it", "it:0", "it:1",
                                                              "it:2", "ok"]
    names = [e["name"] for e in result.report_lines]
    assert names.index("it") > max(names.index("it:%d" % i) for i in range(3))
    for entry in result.report_lines:
        assert {"name", "state", "history"} <= set(entry), entry
        if entry["name"] != "it":  # every unit that ran a process (not the parent)
            assert set(entry.get("runtime", {})) >= RUNTIME_KEYS, entry
        assert entry["history"], entry
        dates = []
        for item in entry["history"]:
            assert set(item) == {"state", "date"}
            dates.append(datetime.fromisoformat(item["date"]))
        assert dates == sorted(dates)
        assert entry["history"][-1]["state"] == entry["state"]
    ok = result.entry("ok")
    assert ok["state"] == "SUCCEED"
    assert history_states(ok)[-3:] == ["SCHEDULED", "EXECUTING", "SUCCEED"]
    assert set(ok["runtime"]) >= RUNTIME_KEYS
    assert ok["runtime"]["exit_code"] == "0"
    assert ok["runtime"]["pname"] == "echo"
    assert ok["runtime"]["wd"] == str(result.wd)
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", ok["runtime"]["rtime"])
    assert "messages" not in ok or not ok["messages"]
    bad = result.entry("bad")
    assert bad["state"] == "FAILED" and bad["runtime"]["exit_code"] == "5"
    assert bad["messages"]
    assert set(result.entry("it:1")["runtime"]) >= RUNTIME_KEYS


def test_jobs_report_text_format(tmp_path):
    result = run_service(tmp_path, [submit(job("ok", "true"), job("bad", script="exit 5"))],
                         "--report-format", "text", timeout=20)
    assert result.returncode == 0, result.describe()
    text = result.report_text
    assert text.strip()
    assert result.report_lines == []  # not JSON lines
    assert "ok" in text and "SUCCEED" in text
    assert "bad" in text and "FAILED" in text


def test_report_file_option(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"))], "--report-file", "my.report",
                         report_file="my.report", timeout=20)
    assert result.returncode == 0, result.describe()
    assert (result.aux_dir / "my.report").exists()
    assert not (result.aux_dir / "jobs.report").exists()
    assert [e["name"] for e in result.report_lines] == ["a"]


def test_final_status(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("b", script="exit 1"),
                                           job("c", "true", after=["b"]))],
                         "--tags", "t1", nodes="2,2", timeout=20)
    status = result.final_status
    assert status is not None and set(status) >= {"System", "Resources", "JobStats"}
    system = status["System"]
    assert system["InstanceId"] == "test"
    assert system["Tags"] == ["t1"]
    assert system["Wd"] == str(result.wd)
    assert system["Host"] == socket.gethostname()
    assert "file" in system["Ifaces"]
    assert status["Resources"] == {"TotalNodes": 2, "TotalCores": 4, "UsedCores": 0,
                                   "FreeCores": 4}
    stats = status["JobStats"]
    assert stats["TotalJobs"] == 3
    assert stats["FinishedJobs"] == 3
    assert stats["FailedJobs"] == 2
    assert stats["ExecutingJobs"] == 0
    assert stats["InScheduleJobs"] == 0


def test_final_status_matches_the_status_reply_structure(tmp_path):
    result = run_service(tmp_path, [{"request": "status"}], timeout=20)
    reply = result.reply(1)["data"]
    status = result.final_status
    assert set(reply) == set(status)
    for key in reply:
        assert set(reply[key]) == set(status[key]), key


def test_no_environment_dump(tmp_path):
    secret = "s3cr3t-token-value-9f8e7d"
    result = run_service(tmp_path, [submit(job("a", "true"))], "--log", "debug",
                         env={"QCGFLOW_T_SECRET_TOKEN": secret}, timeout=20)
    assert result.returncode == 0, result.describe()
    assert not (result.aux_dir / "env.log").exists()
    for path in result.aux_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert secret not in text, "the environment leaked into %s" % path.name
            assert "QCGFLOW_T_SECRET_TOKEN" not in text, path.name


def test_log_level_option(tmp_path):
    quiet = run_service(tmp_path, [submit(job("a", "true"))], "--log", "error",
                        service_id="quiet", timeout=20)
    verbose = run_service(tmp_path, [submit(job("a", "true"))], "--log", "debug",
                          service_id="verbose", timeout=20)
    assert quiet.returncode == 0 and verbose.returncode == 0
    assert len(quiet.service_log) < len(verbose.service_log)
    assert quiet.report_lines and verbose.report_lines


def test_report_and_final_status_are_valid_json(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true", iteration={"stop": 5}))],
                         timeout=20)
    for line in result.report_text.splitlines():
        json.loads(line)
    json.loads((result.aux_dir / "final_status.json").read_text())


def test_service_log_starts_with_upstreams_version_and_tags_line(tmp_path):
    # upstream's own tests (test_governor) and log readers look for these two parts
    result = run_service(tmp_path, [submit(job("a", "true"))], "--tags", "x,y",
                         service_id="m1", timeout=20)
    assert result.returncode == 0, result.describe()
    first = (result.wd / ".qcgpjm-service-m1" / "service.log").read_text().splitlines()[0]
    assert re.search(r"service m1 version \d+\.\d+\.\d+ started .* @ %s \(with tags m1,x,y\) "
                     % re.escape(socket.gethostname()), first), first
