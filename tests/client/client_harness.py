"""Helpers and fixtures of the client tests (qcgflow.runtime.client, .api, .executor_api).

Everything runs for real: services are ``python -m qcgflow.cli service --net`` processes on
loopback (or on this host's non-loopback address for the CURVE tests), jobs are real
processes. Waiting uses deadlines, never fixed sleeps.

* ``local_manager`` fixture: a ``LocalManager(['--nodes', '4'], cfg={'wd': tmp_path/run})``
  finished (or killed) at teardown.
* ``start_service(tmp_path, *args)`` -> ``ServiceProc`` (for tests that need a service the
  API did not start: plain ``Manager``, killing it, CURVE).
* ``no_leftovers`` fixture (autouse where imported): fails a test that leaves any process
  whose command line or working directory is under its tmp_path.
* ``upstream_python()``: the side venv with QCG-PilotJob 0.14.2, or None.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest

import upstream_venv

REPO = Path(__file__).resolve().parents[2]
SERVICE_CMD = [sys.executable, "-m", "qcgflow.cli", "service"]


def deadline_wait(predicate: Callable[[], bool], timeout: float, what: str,
                  step: float = 0.005) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


# --------------------------------------------------------------------------- services

@dataclass
class ServiceProc:
    popen: subprocess.Popen
    ready: dict

    @property
    def address(self) -> str:
        return self.ready["address"]

    @property
    def pub_address(self) -> Optional[str]:
        return self.ready.get("pub_address")

    def kill(self) -> None:
        """SIGKILL the service and everything in its process group."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except OSError:
            pass
        self.popen.wait(10)

    def stop(self) -> None:
        """The ``finish`` request (SIGKILL of the group if that does not end it)."""
        from qcgflow.runtime.client import client
        if self.popen.poll() is None:
            try:
                with client.ServiceClient(self.address, timeout=2,
                                          keys_dir=self.ready.get("keys_dir")) as c:
                    c.request({"request": "finish"})
                self.popen.wait(10)
            except (client.ClientError, subprocess.TimeoutExpired):
                self.kill()
        if self.popen.stderr is not None:
            self.popen.stderr.close()


def start_service(tmp_path: Path, *args: str, timeout: float = 20.0) -> ServiceProc:
    """Start our service with ``--ready-fd`` in its own session; returns once it is ready."""
    wd = tmp_path / "svc"
    wd.mkdir(exist_ok=True)
    read_fd, write_fd = os.pipe()
    command = SERVICE_CMD + ["--net", "--wd", str(wd), "--ready-fd", str(write_fd)] + list(args)
    popen = subprocess.Popen(command, pass_fds=(write_fd,), start_new_session=True,
                             stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=child_env(), cwd=str(wd))
    os.close(write_fd)
    try:
        data = b""
        end = time.monotonic() + timeout
        while b"\n" not in data:
            left = end - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                popen.kill()
                pytest.fail("service not ready within %.0f s" % timeout)
            chunk = os.read(read_fd, 4096)
            if not chunk:
                popen.wait(10)
                pytest.fail("service did not start: %s" % popen.stderr.read().decode())
            data += chunk
    finally:
        os.close(read_fd)
    return ServiceProc(popen, json.loads(data.split(b"\n")[0]))


@pytest.fixture
def service(tmp_path):
    proc = start_service(tmp_path, "--nodes", "4")
    yield proc
    proc.stop()


@pytest.fixture
def local_manager(tmp_path):
    from qcgflow.runtime.api import LocalManager
    manager = LocalManager(["--nodes", "4"], cfg={"wd": str(tmp_path / "run")})
    yield manager
    if manager._process is not None and not manager._process.exited():
        try:
            manager.finish()
        except Exception:  # a test that broke the service: make sure it is gone
            manager.kill_manager_process()
            manager.cleanup()


def exposed_address() -> str:
    """What the tests bind to leave loopback: all interfaces. They still connect only
    through loopback (tcp://0.0.0.0:P reaches this host), so no packet leaves the machine."""
    return "0.0.0.0"


def upstream_python() -> Optional[Path]:
    """The side venv with QCG-PilotJob 0.14.2 (created on first use), or None if it cannot
    be installed here (then the test skips with the reason)."""
    try:
        return upstream_venv.upstream_python()
    except (RuntimeError, subprocess.SubprocessError, OSError):
        return None


# --------------------------------------------------------------------------- leftovers

def _mine(proc: "psutil.Process", root: str) -> bool:
    try:
        if any(root in part for part in proc.cmdline()):
            return True
        return proc.cwd().startswith(root)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def leftovers(tmp_path: Path):
    root = str(tmp_path)
    return [p for p in psutil.process_iter() if p.pid != os.getpid() and _mine(p, root)]


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path):
    """Fail a test that leaves a process started under its tmp_path (and kill it)."""
    yield
    end = time.monotonic() + 3.0
    left = leftovers(tmp_path)
    while left and time.monotonic() < end:
        time.sleep(0.02)
        left = leftovers(tmp_path)
    if left:
        names = []
        for proc in left:
            try:
                names.append("%d %s" % (proc.pid, " ".join(proc.cmdline())))
                proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        pytest.fail("processes left behind: %s" % names)


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
