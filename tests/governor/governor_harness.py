"""Start a real governor and real managers (``qcgflow service`` processes on loopback).

* ``Cluster(tmp_path)``: ``start_governor(*opts)`` (waits for its --ready-fd line),
  ``start_manager(id, *opts)``, ``wait_managers(n)``, ``client`` (a ServiceClient on the
  governor), ``wait_final(names)``, ``stop()`` (finish, then kill anything left).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from qcgflow.runtime.client import ServiceClient

SERVICE = [sys.executable, "-m", "qcgflow.cli", "service"]
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


class Cluster:
    """A governor with its managers, all children of the test."""

    def __init__(self, wd: Path):
        self.wd = Path(wd)
        self.governor: Optional[subprocess.Popen] = None
        self.managers: Dict[str, subprocess.Popen] = {}
        self.ready: dict = {}
        self.client: Optional[ServiceClient] = None
        # the per-user governor entries (governor/directory.py) of this test alone
        self.env = dict(os.environ, QCGFLOW_GOVERNORS_DIR=str(self.wd / "governors"))

    def start_governor(self, *options: str, timeout: float = 30) -> dict:
        read_fd, write_fd = os.pipe()
        self.governor = subprocess.Popen(
            SERVICE + ["--governor", "--wd", str(self.wd), "--ready-fd", str(write_fd),
                       *options], pass_fds=[write_fd], stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL, text=True, env=self.env)
        os.close(write_fd)
        with os.fdopen(read_fd) as handle:
            line = handle.readline()
        assert line, "the governor did not start: %s" % self._governor_stderr()
        self.ready = json.loads(line)
        self.client = ServiceClient(self.ready["address"], timeout=timeout,
                                    keys_dir=self.ready.get("keys_dir"))
        return self.ready

    def _governor_stderr(self) -> str:
        try:
            return self.governor.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            return "(no exit)"

    def start_manager(self, manager_id: str, *options: str,
                      upstream_flow: bool = False) -> subprocess.Popen:
        """A manager of this governor; ``upstream_flow``: given the governor's client
        address alone, as upstream's managers are (it finds the rest in its entries)."""
        parent = ([self.ready["address"]] if upstream_flow else
                  [self.ready["governor_address"], "--parent-secrets",
                   self.ready["governor_secrets"]])
        process = subprocess.Popen(
            SERVICE + ["--wd", str(self.wd), "--id", manager_id, "--parent", *parent,
                       *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env)
        self.managers[manager_id] = process
        return process

    def request(self, message: dict) -> dict:
        return self.client.exchange(message)

    def status(self) -> dict:
        return self.request({"request": "status", "options": {}})["data"]

    def wait_managers(self, count: int, timeout: float = 30) -> List[dict]:
        deadline = time.monotonic() + timeout
        while True:
            up = [m for m in self.status()["Managers"] if m["State"] == "UP"]
            if len(up) >= count:
                return up
            assert time.monotonic() < deadline, "only %d of %d managers registered" % (
                len(up), count)
            time.sleep(0.05)

    def list_jobs(self) -> dict:
        return self.request({"request": "listJobs"})["data"]["jobs"]

    def wait_final(self, names, timeout: float = 60) -> dict:
        """Wait until every job in ``names`` is final; returns name -> listJobs entry."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.list_jobs()
            if all(jobs.get(n, {}).get("status") in FINAL for n in names):
                return jobs
            assert time.monotonic() < deadline, "jobs not final in %.0f s: %s" % (
                timeout, {n: jobs.get(n) for n in names})
            time.sleep(0.05)

    def wait_state(self, name: str, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.list_jobs().get(name, {}).get("status") != state:
            assert time.monotonic() < deadline, "%s never reached %s" % (name, state)
            time.sleep(0.05)

    def stop(self) -> None:
        """Finish the governor (it finishes its managers), then reap everything."""
        if self.governor is not None and self.governor.poll() is None and self.client:
            try:
                self.request({"request": "finish"})
            except Exception:  # already gone: the kill below reaps it
                pass
        for process in [self.governor, *self.managers.values()]:
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
            for stream in (process.stderr,):
                if stream is not None:
                    stream.close()
        if self.client is not None:
            self.client.close()


def job(name: str, command: str, after=(), **extra) -> dict:
    """A standard job description running ``sh -c command``."""
    desc = {"name": name, "execution": {"exec": "/bin/sh", "args": ["-c", command]}}
    if after:
        desc["dependencies"] = {"after": list(after)}
    desc.update(extra)
    return desc
