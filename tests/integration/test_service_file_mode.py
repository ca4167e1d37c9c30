"""File mode and the command line: when the service exits, how it refuses bad input.

COMPAT.md "File mode", "Resources and the command line"; issue 2 items 7 and 8.
"""

import shutil
import signal
import subprocess
import time

import psutil
import pytest

from support.jobs import job, submit, wait_marker
from support.services import SERVICE_CMD, run_driver, run_service, start_service


def _one_line_error(result, *needles):
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, "expected a one-line message, got:\n%s" % result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- exiting

@pytest.mark.parametrize("requests", [
    [],
    [{"request": "control", "command": "finishAfterAllTasksDone"}],
    [{"request": "resourcesInfo"}, {"request": "listJobs"}],
], ids=["empty-list", "control-only", "queries-only"])
def test_run_without_jobs_exits_by_itself(tmp_path, requests):
    # how fast it exits is measured by benchmarks/timings_bench.py (no wall-clock bound
    # here: a loaded machine makes one); here: it ends on its own, well, with its files
    result = run_service(tmp_path, requests, timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.final_status is not None
    assert result.final_status["JobStats"]["TotalJobs"] == 0


def test_service_exits_when_submitted_jobs_are_done(tmp_path):
    result = run_service(tmp_path, [submit(job("a", "true"), job("b", "true"))], timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.states == {"a": "SUCCEED", "b": "SUCCEED"}
    assert result.elapsed < 5


def test_finish_after_all_tasks_done_waits_for_the_jobs(tmp_path):
    result = run_service(tmp_path, [
        {"request": "control", "command": "finishAfterAllTasksDone"},
        submit(job("a", script="echo done > a.out")),
    ], timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.reply(1) == {"code": 0, "message": "finishAfterAllTasksDone command accepted"}
    assert result.state("a") == "SUCCEED"
    assert result.read("a.out").strip() == "done"


def test_failed_jobs_do_not_change_the_exit_status(tmp_path):
    result = run_service(tmp_path, [submit(job("a", script="exit 3"))], timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.state("a") == "FAILED"


def test_replies_are_logged_and_errors_printed_to_stderr(tmp_path):
    result = run_service(tmp_path, [{"request": "listJobs"}, {"request": "bogus"}], timeout=20)
    assert result.returncode == 4, result.describe()  # 4: a request was refused
    assert result.reply(1)["code"] == 0
    assert result.reply(2)["code"] != 0
    assert "qcgflow service: request 2: Unknown request name: bogus" in result.stderr
    assert "request 1" not in result.stderr


def test_finish_request_kills_a_running_job_quickly(tmp_path):
    """``finish``: "Finish the QCG-PilotJob Manager application immediately. The jobs being
    currently executed are killed." The job must not run its 60 s."""
    result = run_service(tmp_path, [submit(job("a", "sleep", ["60"])), {"request": "finish"}],
                         timeout=10)
    assert result.returncode == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    assert result.reply(2)["code"] == 0
    states = result.states
    assert states.get("a") != "SUCCEED"


def test_finish_request_while_the_job_executes(tmp_path):
    result = run_driver(tmp_path, [submit(job("a", "sleep", ["60"])), wait_marker("a"),
                                   {"request": "finish"}], timeout=20)
    assert result.returncode == 0, result.describe()
    assert result.elapsed < 5, result.describe()
    assert result.state("a") == "CANCELED"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_kills_running_tasks_and_exits_128_plus_signal(tmp_path, signum):
    proc = start_service(tmp_path, [submit(
        job("a", script="echo $BASHPID > pid; exec sleep 60"))])
    pid_file = proc.wd / "pid"
    proc.wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10,
                    "the job to start")
    task_pid = int(pid_file.read_text())
    signalled = time.monotonic()
    proc.send_signal(signum)
    result = proc.result(timeout=15)
    assert result.returncode == 128 + signum, result.describe()
    assert time.monotonic() - signalled < 3
    assert "Traceback" not in result.stderr
    try:
        assert psutil.Process(task_pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
    assert result.state("a") != "SUCCEED"
    assert result.final_status is not None


@pytest.mark.parametrize("delay", [0.2, 0.45, 0.7])
def test_a_signal_during_a_busy_sweep_ends_the_service(tmp_path, delay):
    # The loop spends most of a sweep of short tasks creating processes: a signal raised
    # where the main thread stood (just after a process was created, before it was
    # recorded; between an epoll registration and its callback) left the service waiting
    # for a task it had lost, or spinning on a descriptor it no longer knew. It must be
    # taken between two callbacks of the loop, whenever it comes.
    proc = start_service(tmp_path, [submit(job(
        "s", "/bin/sh", ["-c", "echo x >> ends"], iteration={"start": 0, "stop": 20000}))])
    ends = proc.wd / "ends"
    proc.wait_until(lambda: ends.exists() and ends.stat().st_size > 100, 20,
                    "the sweep to run")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    result = proc.result(timeout=20)
    assert result.returncode == 130, result.describe()
    assert "Traceback" not in result.stderr
    assert result.final_status is not None


def test_report_lines_reach_the_disk_while_a_sweep_is_busy(tmp_path):
    # jobs.report is written in batches at most 0.25 s apart (docs/resume.md: a SIGKILL
    # loses at most that much of it). The batch's timer was armed only on a turn that
    # queued nothing, and in a busy sweep every turn queues a scheduling pass: nothing
    # reached the disk before the end, and a SIGKILL lost the whole run's report.
    proc = start_service(tmp_path, [submit(job(
        "s", "/bin/sh", ["-c", "echo x >> ends"], iteration={"start": 0, "stop": 20000}))])
    ends = proc.wd / "ends"
    try:
        proc.wait_until(lambda: ends.exists() and ends.stat().st_size > 2000, 20,
                        "the sweep to run")
        proc.wait_until(lambda: (proc.aux_dir / "jobs.report").exists()
                        and (proc.aux_dir / "jobs.report").stat().st_size > 0, 5,
                        "report lines on disk while the sweep runs")
        assert proc.popen.poll() is None, "the sweep ended before its report was looked at"
    finally:
        proc.kill()
        proc.result(timeout=20)


# --------------------------------------------------------------------------- unusable input

def test_missing_requests_file(tmp_path):
    missing = tmp_path / "nope.json"
    result = run_service(tmp_path, None, file_path=missing, timeout=10)
    _one_line_error(result, str(missing))


@pytest.mark.parametrize("text, problem", [
    ('[{"request": "listJobs"', "malformed JSON"),
    ("", "malformed JSON"),
    ('{"request": "listJobs"}', "list"),
    ('"submit"', "list"),
], ids=["truncated", "empty", "object", "string"])
def test_unusable_requests_file(tmp_path, text, problem):
    path = tmp_path / "reqs.json"
    path.write_text(text)
    result = run_service(tmp_path, None, file_path=path, timeout=10)
    line = _one_line_error(result, str(path))
    assert problem in line


def test_requests_file_is_a_directory(tmp_path):
    result = run_service(tmp_path, None, file_path=tmp_path, timeout=10)
    _one_line_error(result, str(tmp_path))


def test_no_requests_file_option(tmp_path):
    completed = subprocess.run(SERVICE_CMD + ["--nodes", "2"], cwd=str(tmp_path),
                               capture_output=True, text=True, timeout=10)
    assert completed.returncode == 2
    assert "--file-path" in completed.stderr and "--net" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("option, needle", [
    (["--governor"], "no resources of its own"),  # the harness gives --nodes
    (["--parent", "tcp://127.0.0.1:5555"], "--parent-secrets"),
    (["--slurm-partition-nodes", "2"], "--slurm-partition-nodes"),
], ids=lambda o: o[0] + ("=" + o[1] if len(o) > 1 else "") if isinstance(o, list) else "")
def test_governor_options_without_what_they_need_are_refused(tmp_path, option, needle):
    result = run_service(tmp_path, [submit(job("a", "true"))], *option, timeout=10)
    line = _one_line_error(result)
    assert needle in line, line
    assert result.report_lines == []
    assert not (tmp_path / "wd" / "a").exists()


@pytest.mark.parametrize("option, needle", [
    (["--nodes", "0"], "--nodes"),
    (["--nodes", "two"], "--nodes"),
    (["--nodes", "2,,2"], "--nodes"),
    (["--nodes", "a:2,a:2"], "duplicate"),
    (["--report-format", "xml"], "--report-format"),
    (["--resources", "cloud"], "--resources"),
    (["--system-core", "--nodes", "1"], "--system-core"),
], ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_bad_option_values(tmp_path, option, needle):
    result = run_service(tmp_path, [], *option, nodes=None, timeout=10)
    line = _one_line_error(result, needle)
    assert "qcgflow service" in line


@pytest.mark.parametrize("option", [["--bogus"], ["--log", "chatty"], ["--nodes"]])
def test_argparse_errors_exit_2_without_traceback(tmp_path, option):
    result = run_service(tmp_path, [], *option, nodes=None, timeout=10)
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr


def test_help_lists_the_upstream_option_names(tmp_path):
    completed = subprocess.run(SERVICE_CMD + ["--help"], capture_output=True, text=True,
                               timeout=10, cwd=str(tmp_path))
    assert completed.returncode == 0
    for name in ("--file-path", "--wd", "--nodes", "--report-format", "--report-file", "--id",
                 "--tags", "--log", "--system-core"):
        assert name in completed.stdout


def test_python_module_entry_point(tmp_path):
    """``python -m qcgflow.cli service`` and the ``qcgflow`` console script are the same."""
    exe = shutil.which("qcgflow")
    if exe is None:
        pytest.skip("the qcgflow console script is not on PATH")
    path = tmp_path / "r.json"
    path.write_text('[{"request": "submit", "jobs": [{"name": "a", "execution": '
                    '{"exec": "true"}}]}]')
    completed = subprocess.run([exe, "service", "--file-path", str(path), "--nodes", "1",
                                "--wd", str(tmp_path / "wd"), "--id", "cs"],
                               capture_output=True, text=True, timeout=20)
    assert completed.returncode == 0, completed.stderr
    assert '"SUCCEED"' in (tmp_path / "wd" / ".qcgpjm-service-cs" / "jobs.report").read_text()
