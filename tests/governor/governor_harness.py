"""Start a real governor and real managers (``qcgflow service`` processes on loopback).

* ``Cluster(tmp_path)``: ``start_governor(*opts)`` (a support.services.NetService with
  ``--governor``: returns its ready line), ``start_manager(id, *opts)``,
  ``wait_managers(n)``, ``client`` (a ServiceClient on the governor), ``wait_final(names)``,
  ``wait_state(name, state)``, ``stop()`` (finish, then kill anything left).
"""

import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from qcgflow.runtime.client import ServiceClient
from support.eventually import eventually
from support.processes import child_env
from support.services import FINAL, SERVICE_CMD as SERVICE, NetService


class Cluster:
    """A governor with its managers, all children of the test."""

    def __init__(self, wd: Path):
        self.wd = Path(wd)
        self.governor: Optional[subprocess.Popen] = None
        self.service: Optional[NetService] = None
        self.managers: Dict[str, subprocess.Popen] = {}
        self.ready: dict = {}
        self.client: Optional[ServiceClient] = None
        self.finish_sent = False  # a finish already went out: stop() only waits then
        # the per-user governor entries (governor/directory.py) of this test alone
        self.env = child_env({"QCGFLOW_GOVERNORS_DIR": str(self.wd / "governors")})

    def start_governor(self, *options: str, timeout: float = 30) -> dict:
        self.service = NetService(self.wd, "--governor", *options, nodes=None,
                                  service_id=None, wd=self.wd, env=self.env,
                                  ready_timeout=timeout)
        self.governor = self.service.proc
        self.ready = self.service.ready
        self.client = ServiceClient(self.ready["address"], timeout=timeout,
                                    keys_dir=self.ready.get("keys_dir"))
        return self.ready

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
        if message.get("request") == "finish":
            self.finish_sent = True
        return self.client.exchange(message)

    def status(self) -> dict:
        return self.request({"request": "status", "options": {}})["data"]

    def up(self) -> List[dict]:
        return [m for m in self.status()["Managers"] if m["State"] == "UP"]

    def wait_managers(self, count: int, timeout: float = 30) -> List[dict]:
        return eventually(lambda: (lambda up: up if len(up) >= count else None)(self.up()),
                          timeout, 0.05, lambda: "%d managers UP (UP: %d)"
                          % (count, len(self.up())))

    def list_jobs(self) -> dict:
        return self.request({"request": "listJobs"})["data"]["jobs"]

    def wait_final(self, names, timeout: float = 60) -> dict:
        """Wait until every job in ``names`` is final; returns name -> listJobs entry."""
        def final():
            jobs = self.list_jobs()
            return jobs if all(jobs.get(n, {}).get("status") in FINAL for n in names) else None

        return eventually(final, timeout, 0.05, lambda: "jobs final: %s" % {
            n: self.list_jobs().get(n) for n in names})

    def wait_state(self, name: str, state: str, timeout: float = 30) -> None:
        eventually(lambda: self.list_jobs().get(name, {}).get("status") == state, timeout,
                   0.05, "%s to reach %s" % (name, state))

    def stop(self) -> None:
        """Finish the governor (it finishes its managers), then reap everything."""
        # A second finish to a governor already stopping would get no reply: the client
        # would wait out its whole timeout.
        if self.governor is not None and self.governor.poll() is None and self.client \
                and not self.finish_sent:
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
        if self.service is not None:
            self.service.close()


def job(name: str, command: str, after=(), **extra) -> dict:
    """A standard job description running ``sh -c command``."""
    desc = {"name": name, "execution": {"exec": "/bin/sh", "args": ["-c", command]}}
    if after:
        desc["dependencies"] = {"after": list(after)}
    desc.update(extra)
    return desc
