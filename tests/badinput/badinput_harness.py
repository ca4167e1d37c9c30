"""Helpers of the bad-input catalogue (tests/badinput) and the fault tests (tests/faults).

Everything is real: ``python -m qcgflow.cli service`` processes, ZeroMQ REQ sockets on
loopback, the ``qcgflow`` command line. Waiting uses deadlines, never fixed sleeps.

* ``NetService(tmp_path, *opts, wd=None)``: ``qcgflow service --net --ready-fd`` on
  loopback, working in ``wd`` (default ``tmp_path/wd``), its stderr in ``tmp_path``;
  ``raw(bytes, timeout)`` sends bytes on a fresh REQ socket and returns the decoded reply
  (None when none comes in time), ``request(dict)``, ``wait_state(name, states)``,
  ``finish()``, ``log()``.
* ``cli(*args)``: ``python -m qcgflow.cli ARGS`` with a deadline (CompletedProcess, text).
* ``one_line(text)``: the single non-empty line of ``text`` (fails when there are more).
* ``tests/integration`` is put on ``sys.path`` so that ``service_harness`` (the file-mode
  runner: ``run_service``, ``job``, ``submit``) can be imported after this module.
* ``strays(root)`` / ``kill_strays(root)``: processes whose command line or working
  directory lies under ``root`` (tasks of a killed service).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import psutil
import pytest

import zmq

from process_harness import processes_under

REPO = Path(__file__).resolve().parents[2]
# The requests-file catalogue reuses the file-mode runner of the integration tests.
INTEGRATION = REPO / "tests" / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.append(str(INTEGRATION))
SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


def child_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def deadline(predicate, timeout: float, what: str, step: float = 0.01):
    """Poll ``predicate`` until it returns a true value (returned); fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one line, got %d:\n%s" % (len(lines), text[-3000:])
    return lines[0]


def cli(*args, cwd=None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcgflow.cli"] + [str(a) for a in args],
                          cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class NetService:
    """A running ``qcgflow service --net`` (own process group) and its ready line."""

    def __init__(self, tmp_path: Path, *opts, nodes: str = "2", service_id: str = "bad",
                 wd: Optional[Path] = None):
        read_fd, write_fd = os.pipe()
        self.wd = Path(wd) if wd is not None else Path(tmp_path) / "wd"
        self.service_id = service_id
        self._err = open(Path(tmp_path) / "service.stderr", "w+")
        self.proc = subprocess.Popen(
            SERVICE + ["--net", "--nodes", nodes, "--wd", str(self.wd), "--id", service_id,
                       "--ready-fd", str(write_fd)] + [str(o) for o in opts],
            pass_fds=(write_fd,), stdout=self._err, stderr=self._err, env=child_env(),
            stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(write_fd)
        with os.fdopen(read_fd) as ready:
            line = ready.readline()
        if not line:
            self.proc.wait(timeout=10)
            pytest.fail("the service did not announce itself: %s" % self.stderr())
        self.ready = json.loads(line)
        self.address = self.ready["address"]
        self.context = zmq.Context()

    @property
    def aux_dir(self) -> Path:
        return self.wd / (".qcgpjm-service-%s" % self.service_id)

    def socket(self, timeout_ms: int = 5000) -> "zmq.Socket":
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.connect(self.address)
        return sock

    def raw(self, payload: bytes, timeout: float = 5.0):
        """Send ``payload`` on a fresh REQ socket; the decoded reply, or None if none came."""
        sock = self.socket()
        try:
            sock.send(payload)
            if not sock.poll(int(timeout * 1000), zmq.POLLIN):
                return None
            return json.loads(sock.recv())
        finally:
            sock.close(linger=0)

    def request(self, data, timeout: float = 5.0) -> dict:
        reply = self.raw(json.dumps(data).encode(), timeout)
        assert reply is not None, "no reply to %r within %.1f s" % (data, timeout)
        return reply

    def state(self, name: str) -> Optional[str]:
        reply = self.request({"request": "jobStatus", "jobNames": [name]})
        if reply["code"] != 0:
            return None
        return reply["data"]["jobs"][name]["data"]["status"]

    def wait_state(self, name: str, states: Iterable[str] = FINAL, timeout: float = 20.0):
        states = tuple(states)
        return deadline(lambda: (lambda s: s if s in states else None)(self.state(name)),
                        timeout, "job %s to reach one of %s" % (name, states), step=0.02)

    def info(self, name: str) -> dict:
        reply = self.request({"request": "jobInfo", "jobNames": [name]})
        assert reply["code"] == 0, reply
        return reply["data"]["jobs"][name]["data"]

    def log(self) -> str:
        path = self.aux_dir / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        """What the service printed so far (all of it, after ``finish``)."""
        if self._err.closed:
            return self._stderr_text
        self._err.flush()
        self._err.seek(0)
        return self._err.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def finish(self, timeout: float = 15.0) -> int:
        """The ``finish`` request (SIGKILL of the group if that does not end it)."""
        try:
            if self.proc.poll() is None:
                self.raw(json.dumps({"request": "finish"}).encode(), timeout=5)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self.context.destroy(linger=0)
            self._stderr_text = self.stderr()
            self._err.close()
        return self.proc.returncode


strays = processes_under


def kill_strays(root) -> list:
    """Kill what is left under ``root`` (only processes a test started live there)."""
    found = strays(root)
    for proc in found:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(found, timeout=5)
    return found
