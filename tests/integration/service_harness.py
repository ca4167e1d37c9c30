"""Fixtures for the integration tests of ``qcgflow service`` (file interface, local mode).

Every test runs the real command line in a subprocess (``python -m qcgflow.cli service``)
on a requests file written into the test's ``tmp_path`` and inspects what it leaves:
exit status, stdout/stderr, the replies logged in ``service.log``, ``jobs.report``,
``final_status.json`` and the files the jobs wrote.

* ``run_service(tmp_path, requests, *opts, timeout=60)`` -> ``Result`` (runs to the end).
* ``start_service(...)`` -> ``ServiceProcess`` for tests that act while the service runs
  (signals): ``wait_until(predicate)``, ``send_signal``, ``result()``.
* ``run_driver(...)``: like ``run_service`` but through ``_driver.py``, which can hold a
  request back until a job reaches a state (``{"__wait__": {"job": "a", "state":
  "EXECUTING"}}``). The file interface handles every request before the first job starts,
  so a request that must meet a *running* job (cancel, remove, finish) needs the driver.

A teardown check (autouse) fails the test when any process started under ``tmp_path``
(command line or working directory inside it) is still alive after the test, and kills it.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DRIVER = HERE / "_driver.py"
SERVICE_CMD = [sys.executable, "-m", "qcgflow.cli", "service"]
DEFAULT_ID = "test"

_REPLY_LINE = re.compile(r" request (\d+) \(([^)]*)\): (.*)$")


# --------------------------------------------------------------------------- results

@dataclass
class Reply:
    number: int     # 1-based position of the request in the file
    request: str    # the request name as logged
    raw: str        # the logged JSON text
    data: Any       # the parsed reply (None when the logged text is not valid JSON)

    @property
    def code(self):
        return self.data.get("code") if isinstance(self.data, dict) else None

    @property
    def message(self):
        return self.data.get("message") if isinstance(self.data, dict) else None


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    wd: Path
    aux_dir: Optional[Path]
    report_lines: List[dict]
    report_text: str
    final_status: Optional[dict]
    service_log: str
    elapsed: float
    replies: List[Reply] = field(default_factory=list)

    # ---- replies
    def reply(self, number: int) -> dict:
        """The parsed reply to request ``number`` (1-based)."""
        for item in self.replies:
            if item.number == number:
                assert item.data is not None, "reply %d is not valid JSON in service.log: %r" % (
                    number, item.raw[-200:])
                return item.data
        raise AssertionError("no reply to request %d in service.log:\n%s"
                             % (number, self.service_log))

    def error_messages(self) -> List[str]:
        return [r.message for r in self.replies if r.code not in (0, None)]

    # ---- jobs.report
    def entry(self, name: str) -> dict:
        """The (last) jobs.report entry of ``name``."""
        found = [e for e in self.report_lines if e.get("name") == name]
        assert found, "no jobs.report entry for %r; entries: %s" % (
            name, [e.get("name") for e in self.report_lines])
        return found[-1]

    def state(self, name: str) -> str:
        return self.entry(name)["state"]

    @property
    def states(self) -> Dict[str, str]:
        return {e["name"]: e["state"] for e in self.report_lines}

    # ---- files
    def read(self, relpath: str) -> str:
        return (self.wd / relpath).read_text()

    def describe(self) -> str:
        return ("exit %s after %.2fs\n--- stderr\n%s\n--- stdout\n%s\n--- service.log\n%s"
                % (self.returncode, self.elapsed, self.stderr[-3000:], self.stdout[-2000:],
                   self.service_log[-4000:]))


def parse_replies(log: str) -> List[Reply]:
    replies = []
    for line in log.splitlines():
        match = _REPLY_LINE.search(line)
        if not match:
            continue
        raw = match.group(3)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        replies.append(Reply(int(match.group(1)), match.group(2), raw, data))
    return replies


def _find_aux_dir(wd: Path, service_id: Optional[str]) -> Optional[Path]:
    if service_id is not None:
        path = wd / (".qcgpjm-service-%s" % service_id)
        return path if path.is_dir() else None
    found = sorted(wd.glob(".qcgpjm-service-*")) if wd.is_dir() else []
    return found[0] if len(found) == 1 else None


def collect(returncode, stdout, stderr, wd: Path, service_id, elapsed,
            report_file="jobs.report") -> Result:
    aux = _find_aux_dir(wd, service_id)
    report_lines, report_text, final_status, log = [], "", None, ""
    if aux is not None:
        report = aux / report_file
        if report.exists():
            report_text = report.read_text()
            for line in report_text.splitlines():
                if line.strip():
                    try:
                        report_lines.append(json.loads(line))
                    except ValueError:
                        pass  # text format: tests read report_text
        status = aux / "final_status.json"
        if status.exists():
            try:
                final_status = json.loads(status.read_text())
            except ValueError:
                final_status = {"__invalid__": status.read_text()}
        if (aux / "service.log").exists():
            log = (aux / "service.log").read_text()
    return Result(returncode, stdout, stderr, wd, aux, report_lines, report_text, final_status,
                  log, elapsed, parse_replies(log))


# --------------------------------------------------------------------------- processes

class ServiceProcess:
    """A running ``qcgflow service`` (own process group, output captured to files)."""

    def __init__(self, argv: Sequence[str], wd: Path, service_id: Optional[str], tmp_path: Path,
                 report_file: str = "jobs.report", env: Optional[dict] = None):
        self.wd = wd
        self.service_id = service_id
        self.report_file = report_file
        self._out = open(tmp_path / ("svc-%d.stdout" % id(self)), "w+")
        self._err = open(tmp_path / ("svc-%d.stderr" % id(self)), "w+")
        run_env = dict(os.environ)
        run_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([run_env["PYTHONPATH"]] if run_env.get("PYTHONPATH") else []))
        if env:
            run_env.update(env)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(list(argv), stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL, cwd=str(tmp_path), env=run_env,
                                      start_new_session=True)

    @property
    def aux_dir(self) -> Path:
        return self.wd / (".qcgpjm-service-%s" % self.service_id)

    def log_text(self) -> str:
        path = self.aux_dir / "service.log"
        return path.read_text() if path.exists() else ""

    def report_entries(self) -> List[dict]:
        path = self.aux_dir / self.report_file
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0,
                   what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.popen.poll() is not None and not predicate():
                raise AssertionError("service exited (%s) before %s" % (self.popen.returncode,
                                                                       what))
            time.sleep(0.02)
        raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

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
                self.popen.wait()
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


def wait_marker(job: str, state: str = "EXECUTING", timeout: float = 10.0) -> dict:
    """A driver pseudo-request: hold the next requests until ``job`` is in ``state``."""
    return {"__wait__": {"job": job, "state": state, "timeout": timeout}}


def wait_file(path: str, timeout: float = 10.0) -> dict:
    """A driver pseudo-request: hold the next requests until ``path`` (under --wd) exists."""
    return {"__wait__": {"file": path, "timeout": timeout}}


# --------------------------------------------------------------------------- job helpers

def job(name: str, exec_: Optional[str] = None, args: Sequence = (), *,
        script: Optional[str] = None, cores: Any = None, nodes: Any = None,
        wt: Any = None, after: Sequence[str] = (), iteration: Any = None,
        **execution) -> dict:
    """A job description; ``cores``/``nodes`` are an int (exact) or a dict."""
    ex: Dict[str, Any] = {}
    if script is not None:
        ex["script"] = script
    else:
        ex["exec"] = exec_ or "true"
        if args:
            ex["args"] = [str(a) for a in args]
    ex.update(execution)
    desc: Dict[str, Any] = {"name": name, "execution": ex}
    resources: Dict[str, Any] = {}
    if cores is not None:
        resources["numCores"] = {"exact": cores} if isinstance(cores, int) else cores
    if nodes is not None:
        resources["numNodes"] = {"exact": nodes} if isinstance(nodes, int) else nodes
    if wt is not None:
        resources["wt"] = wt
    if resources:
        desc["resources"] = resources
    if after:
        desc["dependencies"] = {"after": list(after)}
    if iteration is not None:
        desc["iteration"] = iteration
    return desc


def submit(*jobs: dict) -> dict:
    return {"request": "submit", "jobs": list(jobs)}


def history_states(entry: dict) -> List[str]:
    return [h["state"] for h in entry.get("history", [])]


def history_time(entry: dict, state: str) -> str:
    for h in entry.get("history", []):
        if h["state"] == state:
            return h["date"]
    raise AssertionError("%s never reached %s: %s" % (entry.get("name"), state,
                                                      entry.get("history")))


# --------------------------------------------------------------------------- leak check

def _under(path: Path, candidates) -> bool:
    root = str(path)
    return any(c == root or c.startswith(root + os.sep) or root in c for c in candidates if c)


def _leftovers(tmp_path: Path) -> List[psutil.Process]:
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        try:
            if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
            if str(tmp_path) in cmdline or _under(tmp_path, [cwd]):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


