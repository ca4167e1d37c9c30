"""Starting and stopping ``qcgflow service`` for tests: the one way, three forms.

Everything is real: ``python -m qcgflow.cli service`` child processes (the checkout first on
``PYTHONPATH``), each in its own session, ZeroMQ on loopback. Waiting uses deadlines.

* ``NetService(tmp_path, *opts, nodes="2", service_id="svc", wd=None, env=None)``: a
  ``qcgflow service --net --ready-fd`` (``nodes=None`` leaves ``--nodes`` out, e.g. for
  ``--governor``; ``service_id=None`` leaves ``--id`` out). The constructor returns once
  the ready line arrived (``ready``, ``address``, ``pub_address``, ``keys_dir``) and fails
  the test, with the service's output, when none comes within ``ready_timeout``.
  ``raw(bytes)`` / ``request(dict)`` on a fresh REQ socket (``socket()`` for your own),
  ``state``/``wait_state``/``info`` of a job, ``log()``, ``stderr()``, ``alive()``;
  ``finish()`` (the finish request; SIGKILL of the group when that does not end it),
  ``kill()``, ``stop()`` (finish or kill, never raises: for teardown; also
  ``with NetService(...) as svc``).
* ``start_service(tmp_path, requests, *opts)`` -> ``ServiceProcess``: a file-interface
  run in the background (``--file-path``), for tests that act while it runs (signals);
  ``run_service(...)`` runs it to the end and returns its ``Result`` (support.results);
  ``run_driver(...)`` does the same through ``_driver.py``, which can hold a request back
  until a job reaches a state (``support.jobs.wait_marker``/``wait_file``).
* ``cli(*args, cwd=, timeout=, env=)``: ``python -m qcgflow.cli ARGS`` to the end, text
  output (CompletedProcess); ``start_cli(*args, cwd=)``: the same in the background, in a
  new session (so a signal can go to its whole group, as Ctrl-C does).
"""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import pytest
import zmq

from .eventually import eventually
from .processes import child_env, kill_group
from .results import Result, collect, report_entries

SERVICE_CMD = [sys.executable, "-m", "qcgflow.cli", "service"]
CLI_CMD = [sys.executable, "-m", "qcgflow.cli"]
DRIVER = Path(__file__).resolve().parent / "_driver.py"
DEFAULT_ID = "test"
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


def aux_dir(wd: Path, service_id: str) -> Path:
    """The service directory of ``service_id`` in ``wd``."""
    return Path(wd) / (".qcgpjm-service-%s" % service_id)


def read_ready_line(fd: int, popen: subprocess.Popen, timeout: float, output) -> dict:
    """The JSON line a service writes to its ``--ready-fd`` (``fd``: the read end, closed
    here); fails the test with the service's ``output()`` when none comes in time."""
    data = b""
    end = time.monotonic() + timeout
    try:
        while b"\n" not in data:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                kill_group(popen)
                pytest.fail("the service sent no ready line within %.0f s: %s"
                            % (timeout, output()[-3000:]))
            chunk = os.read(fd, 65536)
            if not chunk:
                popen.wait(timeout=10)
                pytest.fail("the service exited (%s) without a ready line: %s"
                            % (popen.returncode, output()[-3000:]))
            data += chunk
    finally:
        os.close(fd)
    return json.loads(data.split(b"\n", 1)[0])


# --------------------------------------------------------------------------- network

class NetService:
    """A running ``qcgflow service --net`` (own session, output in a file) and its ready line."""

    def __init__(self, tmp_path: Path, *opts, nodes: Optional[str] = "2",
                 service_id: Optional[str] = "svc", wd: Optional[Path] = None,
                 env: Optional[dict] = None, cwd: Optional[Path] = None,
                 ready_timeout: float = 30.0):
        tmp_path = Path(tmp_path)
        self.wd = Path(wd) if wd is not None else tmp_path / "wd"
        self.service_id = service_id
        self._stderr_text = ""
        self._err = open(_fresh(tmp_path, "service-%s" % (service_id or "default"), ".out"),
                         "w+")
        self.context = zmq.Context()
        argv = SERVICE_CMD + ["--net", "--wd", str(self.wd)]
        if service_id is not None:  # None: the service's default (or an --id in opts)
            argv += ["--id", service_id]
        if nodes is not None:
            argv += ["--nodes", str(nodes)]
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            argv + ["--ready-fd", str(write_fd)] + [str(o) for o in opts],
            pass_fds=(write_fd,), stdout=self._err, stderr=self._err,
            env=env if env is not None else child_env(), cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(write_fd)
        try:
            self.ready = read_ready_line(read_fd, self.proc, ready_timeout, self.stderr)
        except BaseException:
            self.close()
            raise

    # ---- the ready line
    @property
    def address(self) -> str:
        return self.ready["address"]

    @property
    def pub_address(self) -> Optional[str]:
        return self.ready.get("pub_address")

    @property
    def keys_dir(self) -> Optional[str]:
        return self.ready.get("keys_dir")

    @property
    def aux_dir(self) -> Path:
        """The service directory (with ``service_id=None``: the one in ``wd``)."""
        if self.service_id is None:
            found = sorted(self.wd.glob(".qcgpjm-service-*"))
            assert len(found) == 1, "not one service directory in %s: %s" % (self.wd, found)
            return found[0]
        return aux_dir(self.wd, self.service_id)

    # ---- requests
    def socket(self, address: Optional[str] = None, keys: Optional[Tuple] = None,
               timeout_ms: int = 5000) -> "zmq.Socket":
        """A REQ socket (no linger; send and receive time out after ``timeout_ms``);
        ``keys``: (server public, client public, client secret) for CURVE."""
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        if keys is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
        sock.connect(address or self.address)
        return sock

    def raw(self, payload: bytes, timeout: float = 10.0, keys: Optional[Tuple] = None):
        """Send ``payload`` on a fresh REQ socket; the decoded reply, or None if none came."""
        sock = self.socket(keys=keys)
        try:
            sock.send(payload)
            if not sock.poll(int(timeout * 1000), zmq.POLLIN):
                return None
            return json.loads(sock.recv())
        finally:
            sock.close(linger=0)

    def request(self, data, timeout: float = 10.0, sock: Optional["zmq.Socket"] = None) -> dict:
        """The reply to ``data`` (on ``sock``, or a fresh socket); fails without one."""
        if sock is not None:
            sock.send_string(json.dumps(data))
            return json.loads(sock.recv())
        reply = self.raw(json.dumps(data).encode(), timeout)
        assert reply is not None, "no reply to %r within %.1f s" % (data, timeout)
        return reply

    def state(self, name: str) -> Optional[str]:
        reply = self.request({"request": "jobStatus", "jobNames": [name]})
        if reply["code"] != 0:
            return None
        return reply["data"]["jobs"][name]["data"]["status"]

    def wait_state(self, name: str, states: Iterable[str] = FINAL, timeout: float = 20.0):
        """Wait until job ``name`` is in one of ``states``; returns that state."""
        states = tuple(states)
        return eventually(lambda: (lambda s: s if s in states else None)(self.state(name)),
                          timeout, 0.02, lambda: "job %s to reach one of %s (it is %s)"
                          % (name, states, self.state(name)), give_up=self._exited)

    def info(self, name: str) -> dict:
        reply = self.request({"request": "jobInfo", "jobNames": [name]})
        assert reply["code"] == 0, reply
        return reply["data"]["jobs"][name]["data"]

    # ---- what it wrote
    def log(self) -> str:
        path = self.aux_dir / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        """What the service printed so far (stdout and stderr; all of it once stopped)."""
        if self._err.closed:
            return self._stderr_text
        self._err.flush()
        self._err.seek(0)
        return self._err.read()

    # ---- its life
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _exited(self) -> Optional[str]:
        code = self.proc.poll()
        return None if code is None else "the service exited with %s" % code

    def kill(self) -> None:
        """SIGKILL the service's process group."""
        kill_group(self.proc)

    def finish(self, timeout: float = 15.0) -> int:
        """The ``finish`` request; SIGKILL of the group (and TimeoutExpired) when the
        service does not end within ``timeout``. Returns the exit status."""
        try:
            if self.proc.poll() is None:
                self._send_finish()
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self.close()
        return self.proc.returncode

    def _send_finish(self) -> None:
        if self.keys_dir:  # CURVE: the client library reads the keys
            from qcgflow.runtime.client import ClientError, ServiceClient
            try:
                with ServiceClient(self.address, timeout=5, keys_dir=self.keys_dir) as c:
                    c.request({"request": "finish"})
            except ClientError:
                pass  # exited meanwhile, or deaf: the wait decides
        else:
            self.raw(b'{"request": "finish"}', timeout=5)

    def stop(self) -> None:
        """Finish, or kill when that fails; never raises (teardown)."""
        if self.alive():
            try:
                self.finish()
                return
            except Exception:  # noqa: BLE001 -- killed below; the test's own result counts
                pass
            self.kill()
        self.close()

    def close(self) -> None:
        """Release the sockets and the output file (idempotent)."""
        if self._err.closed:
            return
        self.context.destroy(linger=0)
        self._stderr_text = self.stderr()
        self._err.close()

    def __enter__(self) -> "NetService":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _fresh(directory: Path, stem: str, suffix: str) -> Path:
    """``directory/stem<suffix>``, or ``stem-2<suffix>``... when taken (several services)."""
    path, number = directory / (stem + suffix), 1
    while path.exists():
        number += 1
        path = directory / ("%s-%d%s" % (stem, number, suffix))
    return path


# --------------------------------------------------------------------------- file interface

class ServiceProcess:
    """A running ``qcgflow service`` (own process group, output captured to files)."""

    def __init__(self, argv: Sequence[str], wd: Path, service_id: Optional[str], tmp_path: Path,
                 report_file: str = "jobs.report", env: Optional[dict] = None):
        self.wd = wd
        self.service_id = service_id
        self.report_file = report_file
        self._out = open(tmp_path / ("svc-%d.stdout" % id(self)), "w+")
        self._err = open(tmp_path / ("svc-%d.stderr" % id(self)), "w+")
        run_env = child_env(env)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(list(argv), stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL, cwd=str(tmp_path), env=run_env,
                                      start_new_session=True)

    @property
    def aux_dir(self) -> Path:
        return aux_dir(self.wd, self.service_id)

    def log_text(self) -> str:
        path = self.aux_dir / "service.log"
        return path.read_text() if path.exists() else ""

    def report_entries(self) -> List[dict]:
        return report_entries(self.aux_dir / self.report_file)

    def wait_until(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Wait for ``predicate`` (fails at once when the service exits first)."""
        return eventually(predicate, timeout, 0.02, what, give_up=self._exited)

    def _exited(self) -> Optional[str]:
        code = self.popen.poll()
        return None if code is None else "the service exited with %s" % code

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        kill_group(self.popen)

    def result(self, timeout: float = 60.0) -> Result:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the service kills its tasks (they run in their own sessions,
            # so killing the service's group alone would orphan them); then SIGKILL.
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
            partial = self._collect()
            pytest.fail("qcgflow service did not exit within %.0fs (killed)\n%s"
                        % (timeout, partial.describe()))
        return self._collect()

    def _collect(self) -> Result:
        elapsed = time.monotonic() - self.started
        self._out.seek(0)
        self._err.seek(0)
        stdout, stderr = self._out.read(), self._err.read()
        self._out.close()
        self._err.close()
        return collect(self.popen.returncode, stdout, stderr, self.wd, self.service_id, elapsed,
                       self.report_file)


def _write_requests(tmp_path: Path, requests: Any) -> Path:
    index = len(list(tmp_path.glob("reqs-*.json")))
    path = tmp_path / ("reqs-%d.json" % index)
    if isinstance(requests, (str, bytes)):
        path.write_text(requests if isinstance(requests, str) else requests.decode())
    else:
        path.write_text(json.dumps(requests, indent=1))
    return path


def _argv(base: Sequence[str], tmp_path: Path, requests, opts, nodes, service_id, wd,
          file_path) -> Tuple[List[str], Path]:
    wd = Path(wd) if wd is not None else tmp_path / "wd"
    if file_path is None:
        file_path = _write_requests(tmp_path, requests)
    argv = list(base) + ["--file-path", str(file_path), "--wd", str(wd)]
    if nodes is not None:
        argv += ["--nodes", nodes]
    if service_id is not None:
        argv += ["--id", service_id]
    argv += [str(o) for o in opts]
    return argv, wd


def start_service(tmp_path: Path, requests: Any, *opts, nodes: Optional[str] = "2",
                  service_id: Optional[str] = DEFAULT_ID, wd=None, file_path=None,
                  report_file: str = "jobs.report", env: Optional[dict] = None,
                  driver: bool = False) -> ServiceProcess:
    """Start the service in the background on ``requests`` (a list, or raw text)."""
    base = [sys.executable, str(DRIVER)] if driver else SERVICE_CMD
    argv, wd = _argv(base, tmp_path, requests, opts, nodes, service_id, wd, file_path)
    return ServiceProcess(argv, wd, service_id, tmp_path, report_file, env)


def run_service(tmp_path: Path, requests: Any, *opts, timeout: float = 60.0,
                nodes: Optional[str] = "2", service_id: Optional[str] = DEFAULT_ID, wd=None,
                file_path=None, report_file: str = "jobs.report",
                env: Optional[dict] = None) -> Result:
    """Run ``qcgflow service --file-path <requests> --wd <wd> --nodes 2 --id test *opts``.

    ``nodes=None`` / ``service_id=None`` leave those options out. The process group is
    killed and the test fails when it does not exit within ``timeout`` seconds.
    """
    proc = start_service(tmp_path, requests, *opts, nodes=nodes, service_id=service_id, wd=wd,
                         file_path=file_path, report_file=report_file, env=env)
    return proc.result(timeout)


def run_driver(tmp_path: Path, requests: Any, *opts, timeout: float = 60.0,
               nodes: Optional[str] = "2", service_id: Optional[str] = DEFAULT_ID,
               env: Optional[dict] = None) -> Result:
    """``run_service`` through ``_driver.py`` (supports ``{"__wait__": ...}`` entries)."""
    proc = start_service(tmp_path, requests, *opts, nodes=nodes, service_id=service_id,
                         env=env, driver=True)
    return proc.result(timeout)


# --------------------------------------------------------------------------- command line

def cli(*args, cwd=None, timeout: float = 90.0, env: Optional[dict] = None,
        input: Optional[str] = None) -> subprocess.CompletedProcess:
    """``python -m qcgflow.cli ARGS`` to the end (text output; ``env`` added to ours)."""
    return subprocess.run(CLI_CMD + [str(a) for a in args], cwd=cwd, env=child_env(env),
                          capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


def start_cli(*args, cwd, env: Optional[dict] = None) -> subprocess.Popen:
    """``python -m qcgflow.cli ARGS`` in the background, in a new session, text pipes."""
    return subprocess.Popen(CLI_CMD + [str(a) for a in args], cwd=str(cwd), env=child_env(env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
