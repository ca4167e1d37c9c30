"""``qcgflow service --resume``: faults of the service and resuming from the journal.

Real service processes killed with real signals; executions are counted through the files
the tasks append to (resume_harness.py).
"""

import json
import os
import re
import signal
import subprocess
from collections import Counter

import pytest

from qcgflow.runtime.client import ServiceClient

from resume_harness import (assert_not_rerun, counted_job, counts, journal_path,
                            journal_records, journaled_finished, sigkill, start_resume)
from support.eventually import eventually
from support.jobs import job, submit
from support.results import words
from support.services import SERVICE_CMD, NetService, run_service, start_service

pytestmark = pytest.mark.slow


def _wait_ends(proc, at_least: int, timeout: float = 20.0) -> None:
    proc.wait_until(lambda: len(words(proc.wd / "ends")) >= at_least, timeout=timeout,
                    what="%d finished tasks" % at_least)


def _stats(result):
    """(total, finished, failed) jobs of final_status.json."""
    stats = result.final_status["JobStats"]
    return stats["TotalJobs"], stats["FinishedJobs"], stats["FailedJobs"]


def _kill_and_resume(tmp_path, proc, *opts):
    """SIGKILL ``proc``, snapshot what it had journaled, resume to the end."""
    sigkill(proc)
    finished = journaled_finished(proc.wd)
    before = counts(proc.wd)
    result = start_resume(tmp_path, proc.wd, *opts).result(timeout=60)
    return result, finished, before


def _wait_journaled(proc, at_least: int, timeout: float = 20.0) -> None:
    """Wait for ``at_least`` iterations the service has JOURNALED as finished. A task writes
    its line to ``ends`` before it exits, and the service journals it only after reaping it,
    so counting ``ends`` lines says nothing about what a SIGKILL right after leaves behind."""
    proc.wait_until(lambda: journal_path(proc.wd).exists()
                    and len(journaled_finished(proc.wd)) >= at_least, timeout=timeout,
                    what="%d journaled iterations" % at_least)


def test_sigkill_mid_run_then_resume_runs_every_unfinished_iteration_once_more(tmp_path):
    proc = start_service(tmp_path, [submit(counted_job("a", iteration={"start": 0, "stop": 30}))])
    _wait_journaled(proc, 6)
    result, finished, before = _kill_and_resume(tmp_path, proc)
    after = counts(proc.wd)
    assert result.returncode == 0, result.describe()
    assert _stats(result) == (1, 1, 0), result.describe()
    assert set(words(proc.wd / "ends")) == {"a:%d" % i for i in range(30)}
    assert_not_rerun(before, after, finished)
    assert len(finished) >= 6


def test_resume_finishes_dependent_and_per_iteration_jobs(tmp_path):
    jobs = [counted_job("a", iteration={"start": 0, "stop": 12}),
            counted_job("b", iteration={"start": 0, "stop": 12}, after=["a:${it}"]),
            counted_job("c", after=["a", "b"])]
    proc = start_service(tmp_path, [submit(*jobs)])
    _wait_ends(proc, 8)
    result, finished, before = _kill_and_resume(tmp_path, proc)
    assert result.returncode == 0, result.describe()
    assert _stats(result) == (3, 3, 0), result.describe()
    assert counts(proc.wd, "ends")["c:"] == 1
    assert_not_rerun(before, counts(proc.wd), finished)


def test_network_submitted_jobs_are_resumed(tmp_path):
    wd = tmp_path / "wd"
    service = NetService(tmp_path, wd=wd, service_id="test")
    try:
        with ServiceClient(service.address, timeout=10) as client:
            data = client.request({"request": "submit", "jobs": [
                counted_job("n", iteration={"start": 0, "stop": 16})]})
        eventually(lambda: len(words(wd / "ends")) >= 4, 20, message="4 finished tasks")
    finally:
        service.kill()
        service.close()
    assert data["jobs"] == ["n"]
    finished, before = journaled_finished(wd), counts(wd)
    result = start_resume(tmp_path, wd).result(timeout=60)
    assert result.returncode == 0, result.describe()
    assert set(words(wd / "ends")) == {"n:%d" % i for i in range(16)}
    assert_not_rerun(before, counts(wd), finished)


def test_resume_of_a_resumed_run(tmp_path):
    proc = start_service(tmp_path, [submit(counted_job("a", iteration={"start": 0, "stop": 30}))])
    _wait_ends(proc, 5)
    sigkill(proc)
    first, before1 = journaled_finished(proc.wd), counts(proc.wd)
    second = start_resume(tmp_path, proc.wd)
    second.wait_until(lambda: len(journaled_finished(proc.wd)) >= len(first) + 5, timeout=20,
                      what="five more journaled iterations")
    sigkill(second)
    finished, before2 = journaled_finished(proc.wd), counts(proc.wd)
    result = start_resume(tmp_path, proc.wd).result(timeout=60)
    assert result.returncode == 0, result.describe()
    assert set(words(proc.wd / "ends")) == {"a:%d" % i for i in range(30)}
    assert_not_rerun(before1, before2, first)
    assert_not_rerun(before2, counts(proc.wd), finished)
    runs = [r for r in journal_records(proc.wd) if r["k"] == "run"]
    assert [r["resumed"] for r in runs] == [False, True, True]


def test_truncated_journal_tail_is_cut_with_a_warning(tmp_path):
    proc = start_service(tmp_path, [submit(counted_job("a", iteration={"start": 0, "stop": 10}))])
    _wait_ends(proc, 3)
    sigkill(proc)
    path = journal_path(proc.wd)
    whole = len(path.read_text().splitlines())
    with open(path, "a") as handle:
        handle.write('{"k":"end","job":"a","it":9,"sta')
    result = start_resume(tmp_path, proc.wd).result(timeout=60)
    assert result.returncode == 0, result.describe()
    assert "journal %s: line %d is truncated" % (path, whole + 1) in result.service_log
    assert set(words(proc.wd / "ends")) == {"a:%d" % i for i in range(10)}
    assert (path.parent / "journal.jsonl.corrupt").read_text() == '{"k":"end","job":"a","it":9,"sta'


def test_resume_kills_tasks_left_running_by_the_killed_service(tmp_path):
    script = '[ -e second ] && exit 0; echo $BASHPID >> pids; exec sleep 60'
    proc = start_service(tmp_path, [submit(job("a", script=script,
                                               iteration={"start": 0, "stop": 2}))])
    proc.wait_until(lambda: len(words(proc.wd / "pids")) == 2, what="two running tasks")
    sigkill(proc)
    pids = [int(p) for p in words(proc.wd / "pids")]
    assert all(_running(pid) for pid in pids)  # they outlive the service
    (proc.wd / "second").write_text("")
    result = start_resume(tmp_path, proc.wd).result(timeout=60)
    assert result.returncode == 0, result.describe()
    assert not [pid for pid in pids if _running(pid)]
    killed = re.search(r"killed (\d+) processes left running", result.service_log)
    assert killed and int(killed.group(1)) >= 2, result.service_log


def _running(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_terminates_tasks_journals_them_and_exit_status_says_so(tmp_path, signum,
                                                                      status):
    script = '[ -e second ] && exit 0; echo $BASHPID >> pids; exec sleep 60'
    proc = start_service(tmp_path, [submit(job("a", script=script,
                                               iteration={"start": 0, "stop": 3}))])
    proc.wait_until(lambda: len(words(proc.wd / "pids")) == 2, what="two running tasks")
    proc.send_signal(signum)
    result = proc.result(timeout=20)
    pids = [int(p) for p in words(proc.wd / "pids")]
    ends = [r for r in journal_records(proc.wd) if r["k"] == "end"]
    assert result.returncode == status, result.describe()
    assert not [pid for pid in pids if _running(pid)]
    assert sorted((r["it"], r["state"], r.get("stop")) for r in ends if "it" in r) == [
        (0, "CANCELED", 1), (1, "CANCELED", 1)]
    assert {"k": "stop", "why": signal.Signals(signum).name} in journal_records(proc.wd)
    (proc.wd / "second").write_text("")
    resumed = start_resume(tmp_path, proc.wd).result(timeout=60)
    assert resumed.returncode == 0, resumed.describe()
    assert _stats(resumed) == (1, 1, 0), resumed.describe()


def test_finished_failures_stay_failed_on_resume(tmp_path):
    result = run_service(tmp_path, [submit(job("bad", script="echo x >> bad.runs; exit 3"),
                                           job("after_bad", after=["bad"]))])
    assert result.returncode == 0
    resumed = start_resume(tmp_path, tmp_path / "wd").result(timeout=30)
    assert (resumed.returncode, (tmp_path / "wd" / "bad.runs").read_text()) == (0, "x\n")
    assert _stats(resumed) == (2, 2, 2), resumed.describe()


@pytest.mark.parametrize("setup, message", [
    ("nothing", "no such directory"),
    ("empty", "neither a service directory"),
])
def test_resume_of_nothing_resumable_is_a_one_line_error(tmp_path, setup, message):
    target = tmp_path / "missing"
    if setup == "empty":
        target.mkdir()
    out = subprocess.run(SERVICE_CMD + ["--resume", str(target), "--nodes", "2"],
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, len(out.stderr.strip().splitlines())) == (2, 1), out.stderr
    assert message in out.stderr


def test_resume_of_a_live_run_is_refused(tmp_path):
    proc = start_service(tmp_path, [submit(job("a", "sleep", ["30"]))])
    proc.wait_until(lambda: journal_path(proc.wd).exists(), what="the journal")
    out = subprocess.run(SERVICE_CMD + ["--resume", str(proc.wd), "--nodes", "2"],
                         capture_output=True, text=True, timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.result(timeout=20)
    assert out.returncode == 2
    assert "is in use by a running service" in out.stderr


def test_no_journal_option_writes_none(tmp_path):
    result = run_service(tmp_path, [submit(job("a"))], "--no-journal")
    assert result.returncode == 0
    assert not journal_path(tmp_path / "wd").exists()


def test_resume_with_net_serves_restored_jobs_and_accepts_new_ones(tmp_path):
    proc = start_service(tmp_path, [submit(counted_job("a", iteration={"start": 0, "stop": 20}))])
    _wait_ends(proc, 4)
    sigkill(proc)
    with NetService(tmp_path, "--resume", proc.wd, wd=proc.wd, service_id="test") as service, \
            ServiceClient(service.address, timeout=10) as client:
        submitted = client.request({"request": "submit", "jobs": [counted_job("more")]})
        jobs = eventually(lambda: (lambda jobs: jobs if all(
            jobs[name]["status"] == "SUCCEED" for name in ("a", "more")) else None)(
                client.request({"request": "listJobs"})["jobs"]), 30,
            message="a and more to succeed")
        client.request({"request": "finish"})
        assert service.proc.wait(timeout=20) == 0
    assert (submitted["jobs"], jobs["a"]["status"], jobs["more"]["status"]) == (
        ["more"], "SUCCEED", "SUCCEED")


def test_a_resume_after_sigkill_leaves_one_report_line_per_unit(tmp_path):
    # jobs.report is written in batches (0.25 s at most apart), the journal at once: a
    # SIGKILL in a busy sweep leaves finished units without a report line. The resume
    # adds them from the journal (state and message), and nothing twice.
    count = 3000
    proc = start_service(tmp_path, [submit(job(
        "s", "/bin/sh", ["-c", "echo x >> ends"], iteration={"start": 0, "stop": count}))])
    _wait_journaled(proc, 300, timeout=60)
    report = proc.aux_dir / "jobs.report"
    pid = proc.popen.pid
    for _ in range(50):  # stopped where the journal is ahead of the report (nearly always)
        os.kill(pid, signal.SIGSTOP)
        os.waitpid(pid, os.WUNTRACED)
        journaled = journaled_finished(proc.wd)
        reported = {json.loads(line)["name"] for line in report.read_text().splitlines()
                    if line.endswith("}")}
        lacking = journaled - reported
        if lacking:
            break
        os.kill(pid, signal.SIGCONT)
        _wait_journaled(proc, len(journaled) + 1, timeout=60)
    assert lacking, "the journal was never ahead of the report"
    sigkill(proc)
    result = start_resume(tmp_path, proc.wd).result(timeout=120)
    assert result.returncode == 0, result.describe()
    names = Counter(json.loads(line)["name"] for line in report.read_text().splitlines())
    expected = {"s:%d" % i for i in range(count)} | {"s"}
    assert set(names) == expected
    assert [name for name, n in names.items() if n != 1] == []
    assert "%d units ended just before the earlier service was killed had no line" % len(
        lacking) in result.service_log
