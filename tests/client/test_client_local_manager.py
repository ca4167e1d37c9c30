"""LocalManager: start and finish, no side effects on the caller, run directory.

How fast LocalManager starts and finishes and how fast a submit+wait4 round trip is are
measured by benchmarks/client_bench.py (measures 1 and 2), not asserted here.
"""

import logging
import multiprocessing
import os
import signal
import threading

import pytest
import zmq

from client_harness import exposed_address
from qcgflow.runtime.api import ConnectionError, Jobs, LocalManager, Manager

RUNS = 3


def test_local_manager_starts_and_finishes_again_and_again(tmp_path):
    for run in range(RUNS):
        manager = LocalManager(cfg={"wd": str(tmp_path / str(run))})
        manager.finish()
        assert manager._process.returncode == 0


def test_submit_and_wait4_of_one_job_after_another(tmp_path):
    manager = LocalManager(["--nodes", "2"], cfg={"wd": str(tmp_path)})
    try:
        for index in range(40):
            names = manager.submit(Jobs().add(name="t%d" % index, exec="/bin/true"))
            assert manager.wait4(names, timeout=10) == {names[0]: "SUCCEED"}
    finally:
        manager.finish()
    assert manager._process.returncode == 0


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
