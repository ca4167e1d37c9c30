"""runtime/client/spawn.py (the one way to start a service child), runtime/client/workdir.py
(the one jobs.report reader and service-directory finder), ``python -m qcgflow.runtime``,
and who decides which modules run in warm workers (the caller, not the runtime)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from qcgflow.runtime.client import ServiceClient, is_loopback
from qcgflow.runtime.client.spawn import (SERVICE_MODULE, ServiceStartError, child_env,
                                          start_service)
from qcgflow.runtime.client.workdir import (latest_report, read_report, report_end,
                                            service_dirs)
from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.errors import UnsupportedOption
from qcgflow.session.warm import SERVICE_ARGS, with_warm_modules
from support.eventually import WaitTimeout, eventually

DEADLINE = 30.0


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def _ended(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _gone(pid: int, deadline: float = DEADLINE) -> bool:
    """True once ``pid`` no longer runs (or is a zombie), within ``deadline`` seconds."""
    try:
        return eventually(lambda: _ended(pid), deadline, 0.05, "process %d to end" % pid)
    except WaitTimeout:
        return False


def test_a_started_service_reports_ready_and_finishes(tmp_path):
    process = start_service(["--net", "--nodes", "2", "--wd", str(tmp_path)], cwd=str(tmp_path))
    try:
        ready = process.ready
        assert ready["wd"] == str(tmp_path) and ready["pid"] == process.pid
        with open("/proc/%d/cmdline" % process.pid, "rb") as handle:
            argv = handle.read().split(b"\0")
        assert argv[1:4] == [b"-m", SERVICE_MODULE.encode(), b"service"]
        assert b"--owner-fd" in argv and b"--ready-fd" in argv
        with ServiceClient(ready["address"]) as client:
            assert client.request({"request": "resourcesInfo"})["total_cores"] == 2
            process.stop(finish=lambda: client.request({"request": "finish"}))
        assert process.returncode == 0 and process.liveness() is not None
    finally:
        process.stop(grace=2.0)
        process.close()


def test_a_service_that_cannot_start_is_one_clear_error_and_leaves_nothing(tmp_path):
    before = _open_fds()
    with pytest.raises(ServiceStartError) as info:
        start_service(["--net", "--nodes", "x:y", "--wd", str(tmp_path)])
    error = info.value
    assert (error.reason, error.returncode) == ("exited", 2)
    assert "\n" not in str(error)
    assert str(error).startswith("the service did not start (exit code 2): qcgflow service: "
                                 "Invalid --nodes value 'x:y'")
    assert _open_fds() == before  # pipes, pidfd and the temporary stderr file are closed


def test_a_start_timeout_stops_the_child(tmp_path):
    before = _open_fds()
    with pytest.raises(ServiceStartError, match="did not start within 0.0 s") as info:
        start_service(["--net", "--wd", str(tmp_path)], timeout=0.001)
    assert info.value.reason == "timeout"
    assert _open_fds() == before
    # the child was stopped and reaped: no child of ours is left
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_the_service_stops_when_its_starter_dies(tmp_path):
    script = textwrap.dedent("""
        import sys
        from qcgflow.runtime.client.spawn import start_service
        process = start_service(["--net", "--nodes", "1", "--wd", sys.argv[1]])
        print(process.pid, flush=True)
        sys.stdin.read()
    """)
    starter = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env=child_env())
    try:
        service_pid = int(starter.stdout.readline())
        assert not _gone(service_pid, 0.3)
        starter.kill()  # SIGKILL: no cleanup of its own; the owner pipe closes
        starter.wait(DEADLINE)
        assert _gone(service_pid), "the service outlived its starter"
    finally:
        starter.kill()
        starter.wait(DEADLINE)
        starter.stdin.close()
        starter.stdout.close()


def test_file_mode_output_and_own_group(tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": [
        {"name": "a", "execution": {"exec": "/bin/echo", "args": ["hi"]}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]))
    with open(tmp_path / "out", "wb") as out:
        process = start_service(["--file-path", str(requests), "--wd", str(tmp_path)],
                                cwd=str(tmp_path), output=out, ready=False,
                                own_session=False)
        try:
            assert os.getpgid(process.pid) == os.getpgid(0)  # Ctrl-C reaches it too
            assert process.exited(DEADLINE) and process.returncode == 0
        finally:
            process.stop(grace=2.0)
            process.close()
    report = latest_report(str(tmp_path))
    assert report is not None and os.path.dirname(report) in service_dirs(str(tmp_path))
    assert [(e["name"], e["state"]) for e in read_report(report)] == [("a", "SUCCEED")]


# --------------------------------------------------------------------------- workdir

def test_the_report_reader_follows_a_growing_report(tmp_path):
    path = str(tmp_path / "jobs.report")
    first = json.dumps({"name": "a", "state": "SUCCEED"}) + "\n"
    with open(path, "w") as handle:
        handle.write(first + '[1, 2]\n{"name": "b", "sta')  # a non-entry, a torn last line
    assert [e["name"] for e in read_report(path)] == ["a"]
    offset = report_end(path, 0)
    assert offset == len(first) + len("[1, 2]\n")
    with open(path, "a") as handle:
        handle.write('te": "FAILED"}\n')
    assert [(e["name"], e["state"]) for e in read_report(path, offset)] == [("b", "FAILED")]
    assert list(read_report(str(tmp_path / "missing"))) == []
    with pytest.raises(OSError):
        list(read_report(str(tmp_path / "missing"), strict=True))


def test_latest_report_skips_the_directories_that_were_there(tmp_path):
    old, new = tmp_path / ".qcgpjm-service-old", tmp_path / ".qcgpjm-service-new"
    for directory in (old, new):
        directory.mkdir()
        (directory / "jobs.report").write_text("")
    (tmp_path / ".qcgpjm-service-file").write_text("not a directory")
    assert service_dirs(str(tmp_path)) == [str(new), str(old)]
    assert latest_report(str(tmp_path), exclude=[str(new)]) == str(old / "jobs.report")
    assert latest_report(str(tmp_path), exclude=[str(new), str(old)]) is None


@pytest.mark.parametrize("where,expected", [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("192.0.2.7", False),
    ("tcp://127.0.0.1:5555", True), ("tcp://[::1]:1", True), ("ipc:///tmp/x", True),
    ("tcp://192.0.2.7:1", False), ("0.0.0.0", False), ("example.org", False)])
def test_one_is_loopback_for_hosts_and_endpoints(where, expected):
    assert is_loopback(where) is expected


# --------------------------------------------------------------------------- entry point

def test_python_m_qcgflow_runtime(tmp_path):
    done = subprocess.run([sys.executable, "-m", "qcgflow.runtime"], capture_output=True,
                          text=True, timeout=DEADLINE, env=child_env())
    assert done.returncode == 2 and "no command" in done.stderr
    done = subprocess.run([sys.executable, "-m", "qcgflow.runtime", "service", "--nodes",
                           "x:y", "--net", "--wd", str(tmp_path)], capture_output=True,
                          text=True, timeout=DEADLINE, env=child_env())
    assert done.returncode == 2
    assert done.stderr.startswith("qcgflow service: Invalid --nodes value 'x:y'")
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback
    # the runtime alone imports nothing of the graph side but the port that the top
    # package (qcgflow/__init__.py, run first) plugs the session loader into: a module
    # without imports (docs/architecture.md)
    probe = ("import sys, qcgflow.runtime.__main__, qcgflow.runtime.service; "
             "print(sorted(m for m in sys.modules if m.startswith('qcgflow.') "
             "and not m.startswith('qcgflow.runtime')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=DEADLINE, env=child_env())
    assert done.stdout.strip() == "['qcgflow.graph', 'qcgflow.graph.port']", done.stderr


def test_warm_modules_come_from_the_caller():
    base = ["--net"]
    assert parse_service_args(base).warm_modules == ()  # the runtime names none
    assert parse_service_args(base + ["--warm-modules", "a.b, c"]).warm_modules == ("a.b", "c")
    assert parse_service_args(base + ["--warm-modules", ""]).warm_modules == ()
    with pytest.raises(UnsupportedOption, match="--warm-modules: 'a-b' is not a module name"):
        parse_service_args(base + ["--warm-modules", "a-b"])
    # the graph side names its runner, unless the caller chose
    assert with_warm_modules(["--net"]) == list(SERVICE_ARGS) + ["--net"]
    assert SERVICE_ARGS == ("--warm-modules", "qcgflow.runner")
    assert with_warm_modules(["--warm-modules=x"]) == ["--warm-modules=x"]


def test_the_runtime_service_runs_runner_tasks_cold_and_qcgflow_service_warm(tmp_path):
    """The same compiled Python tasks: ``python -m qcgflow.runtime service`` (no warm
    modules) gives each its own process; ``qcgflow service`` runs them in one worker."""
    import qcgflow

    @qcgflow.task
    def pid(_):
        return os.getpid()

    graph = [pid.bind(i) for i in range(3)]
    pids = {}
    for name, command in (("runtime", [sys.executable, "-m", "qcgflow.runtime", "service"]),
                          ("cli", [sys.executable, "-m", "qcgflow.cli", "service"])):
        wd = tmp_path / name
        wd.mkdir()
        requests = str(wd / "requests.json")
        qcgflow.compile(graph, path=requests)
        done = subprocess.run(command + ["--file-path", requests, "--wd", str(wd),
                                         "--nodes", "1"],
                              capture_output=True, text=True, timeout=120, env=child_env(),
                              cwd=str(wd))
        assert done.returncode == 0, done.stderr
        pids[name] = _results(wd)
    assert len(pids["runtime"]) == 3
    assert len(pids["cli"]) == 1


def _results(wd):
    from qcgflow.build import payload
    found = set()
    for root, _dirs, files in os.walk(str(wd / ".qcgflow")):
        for name in files:
            if name.startswith("result"):
                found.add(payload.load_value(os.path.join(root, name)))
    return found
