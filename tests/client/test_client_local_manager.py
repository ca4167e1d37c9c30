"""LocalManager: start-up and finish time, no side effects on the caller, run directory."""

import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest
import zmq

from client_harness import median, no_leftovers, exposed_address  # noqa: F401
from qcgflow.runtime.api import ConnectionError, Jobs, LocalManager, Manager

RUNS = 7


def test_local_manager_and_finish_are_fast(tmp_path, record_property):
    durations = []
    for run in range(RUNS):
        started = time.perf_counter()
        manager = LocalManager(cfg={"wd": str(tmp_path / str(run))})
        manager.finish()
        durations.append(time.perf_counter() - started)
        assert manager._process.returncode == 0
    record_property("local_manager_finish_median_s", round(median(durations), 4))
    print("LocalManager()+finish(): median %.3f s over %d runs (%s)"
          % (median(durations), RUNS, ", ".join("%.3f" % d for d in durations)))
    assert median(durations) < 1.0  # target 0.3 s; generous for loaded CI machines


def test_submit_and_wait4_of_one_job_is_fast(tmp_path, record_property):
    manager = LocalManager(["--nodes", "2"], cfg={"wd": str(tmp_path)})
    try:
        durations = []
        for index in range(40):
            started = time.perf_counter()
            names = manager.submit(Jobs().add(name="t%d" % index, exec="/bin/true"))
            assert manager.wait4(names, timeout=10) == {names[0]: "SUCCEED"}
            durations.append(time.perf_counter() - started)
    finally:
        manager.finish()
    record_property("submit_wait4_median_ms", round(median(durations) * 1000, 3))
    print("submit+wait4 of /bin/true: median %.2f ms over %d" % (median(durations) * 1000,
                                                                   len(durations)))
    assert median(durations) < 0.05  # target 5 ms


def _snapshot():
    return {
        "start_method": multiprocessing.get_start_method(allow_none=True),
        "root_handlers": list(logging.getLogger().handlers),
        "root_level": logging.getLogger().level,
        "api_handlers": list(logging.getLogger("qcgflow.runtime.api").handlers),
        "signals": {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                           signal.SIGCHLD, signal.SIGHUP)},
        "cwd": os.getcwd(),
        "threads": threading.active_count(),
        "zmq_instance": getattr(zmq.Context, "_instance", None),
        "fds": len(os.listdir("/proc/self/fd")),
    }


def test_no_side_effects_on_the_caller(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(temp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    before = _snapshot()
    manager = LocalManager(["--nodes", "1"])
    names = manager.submit(Jobs().add(name="a", exec="/bin/echo", args=["x"], stdout="a.out"))
    manager.wait4(names, timeout=10)
    manager.finish()
    assert _snapshot() == before
    assert os.listdir(cwd) == []  # nothing in the caller's working directory
    assert manager.wd.startswith(str(temp)) and os.path.basename(manager.wd).startswith(
        "qcgflow-run-")
    assert open(os.path.join(manager.wd, "a.out")).read() == "x\n"  # outputs stay there


def test_server_args_wd_is_used_and_not_mutated(tmp_path):
    args = ["--nodes", "1", "--wd", str(tmp_path / "given")]
    manager = LocalManager(args)
    try:
        assert manager.wd == str(tmp_path / "given")
        assert args == ["--nodes", "1", "--wd", str(tmp_path / "given")]
        assert manager.aux_dir.startswith(str(tmp_path / "given" / ".qcgpjm-service-"))
    finally:
        manager.finish()


def test_service_runs_in_its_own_session(tmp_path):
    manager = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path)})
    try:
        assert os.getsid(manager.pid) == manager.pid != os.getsid(0)
    finally:
        manager.finish()


def test_a_forgotten_manager_is_stopped_when_collected(tmp_path):
    import gc
    manager = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path)})
    process = manager._process
    manager._disconnect()
    del manager
    gc.collect()
    assert process.returncode is not None


def test_local_manager_on_a_non_loopback_interface_uses_curve(tmp_path, monkeypatch):
    monkeypatch.delenv("QCGFLOW_KEYS_DIR", raising=False)
    manager = LocalManager(["--nodes", "1", "--net-address", exposed_address()],
                           cfg={"wd": str(tmp_path)})
    try:
        assert not manager.address.startswith("tcp://127.")
        keys_dir = manager.ready["keys_dir"]
        assert keys_dir and manager._client.secure
        names = manager.submit(Jobs().add(name="a", exec="/bin/true"))
        assert manager.wait4(names, timeout=10) == {"a": "SUCCEED"}  # events through CURVE
        assert manager._events is not None and manager._events.connected
        with pytest.raises(ConnectionError, match="keys_dir"):
            Manager(manager.address, cfg={"timeout": 1})
        other = Manager(manager.address, cfg={"keys_dir": keys_dir})
        try:
            assert other.list()["a"]["status"] == "SUCCEED"
        finally:
            other.cleanup()
    finally:
        manager.finish()


def test_client_log_goes_under_wdir_only(tmp_path, monkeypatch):
    # upstream writes <wdir>/.qcgpjm-client/api.log (its tests look for it); without a wdir
    # (or a log_file) nothing is written, in particular not into the current directory
    monkeypatch.chdir(tmp_path)
    quiet = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path / "run1")})
    quiet.finish()
    assert not (tmp_path / ".qcgpjm-client").exists()
    wdir = tmp_path / "client"
    manager = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path / "run2"),
                                                  "wdir": str(wdir)})
    try:
        assert (wdir / ".qcgpjm-client" / "api.log").is_file()
    finally:
        manager.finish()
    assert not (tmp_path / ".qcgpjm-client").exists()
