"""``--enable-proc-stats``: who ran, where, with which affinity, CPU time and memory.

::

    ProcessSampler thread (every ``interval`` s, default 1 s)
        psutil: descendants of the service process (the launched tasks and whatever they
        start) -> one record per process (pid + create time), refreshed each time seen
    close() -> <aux_dir>/ptrace_<host>_<YYYYmmddHHMMSS>_<pid>.log (one JSON document)

Each record: pid, ppid, name and cmdline (as last seen: a fork that execs becomes its
program), parent name, create time, first and last sample, cpu affinity, cpu times
(user, system, children user, children system), memory info (rss, vms, ...) and memory
percent, as of the last sample that saw the process.

Upstream samples the descendants of ``slurmstepd`` from each node's agent; locally the
service is the root of everything it launched, so one sampler in the service covers it.
The sampler runs in a thread so that a slow /proc scan never delays the event loop.
Limits (as upstream): a process that lives shorter than the interval may not be seen, and
a process that was reparented away from the service (double fork) is not followed.
"""

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime
from typing import Dict, Optional, Tuple

import psutil

_log = logging.getLogger(__name__)

PTRACE_PREFIX = "ptrace_"


class ProcessSampler:
    """Samples the service's descendants in a background thread until ``close``."""

    def __init__(self, aux_dir: str, interval: float = 1.0, root_pid: Optional[int] = None):
        self._aux_dir = aux_dir
        self._interval = interval
        self._root = psutil.Process(root_pid if root_pid is not None else os.getpid())
        self._host = socket.gethostname()
        self._records: Dict[Tuple[int, float], dict] = {}
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qcgflow-procstats", daemon=True)
        self._started = time.time()
        self._boot_fix = _boot_correction()
        self.path: Optional[str] = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # thread boundary: log and keep sampling
                _log.exception("process statistics sample failed")
            if self._stop.wait(self._interval):
                return

    def sample(self) -> None:
        """Take one sample of every descendant process (also callable directly)."""
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            return
        now = time.time()
        for proc in children:
            try:
                self._observe(proc, now)
            except psutil.Error:
                continue  # exited while we looked at it
        self._samples += 1

    def _observe(self, proc: "psutil.Process", now: float) -> None:
        key = (proc.pid, proc.create_time())
        record = self._records.get(key)
        with proc.oneshot():
            if record is None:
                record = self._first_sight(proc, now, key[1] + self._boot_fix)
                self._records[key] = record
            else:
                # a fork seen before its exec (bash running `sleep &`) becomes the program
                # it execs: keep the latest name and command line, not the first
                record["name"] = proc.name()
                record["cmdline"] = proc.cmdline()
            record["cpu_times"] = list(proc.cpu_times())[:4]
            record["memory_info"] = proc.memory_info()._asdict()
            record["memory_percent"] = round(proc.memory_percent(), 6)
            record["last_seen"] = _iso(now)
            record["samples"] += 1

    @staticmethod
    def _first_sight(proc: "psutil.Process", now: float, created: float) -> dict:
        ppid = proc.ppid()
        try:
            parent_name = psutil.Process(ppid).name() if ppid else None
        except psutil.Error:
            parent_name = None
        try:
            affinity = proc.cpu_affinity()
        except (psutil.Error, AttributeError, OSError):
            affinity = None
        return {"pid": proc.pid, "ppid": ppid, "name": proc.name(), "cmdline": proc.cmdline(),
                "parent_name": parent_name, "created": _iso(created),
                "first_seen": _iso(now), "cpu_affinity": affinity, "samples": 0}

    def close(self) -> Optional[str]:
        """Stop sampling and write the collected records; returns the file's path."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        stamp = datetime.fromtimestamp(self._started).strftime("%Y%m%d%H%M%S")
        path = os.path.join(self._aux_dir, "%s%s_%s_%d.log" % (PTRACE_PREFIX, self._host, stamp,
                                                               os.getpid()))
        data = {"node": self._host, "service_pid": self._root.pid, "interval": self._interval,
                "samples": self._samples, "started": _iso(self._started),
                "finished": _iso(time.time()),
                "cpu_times_fields": ["user", "system", "children_user", "children_system"],
                "processes": list(self._records.values())}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        self.path = path
        _log.info("process statistics: %d processes in %d samples written to %s",
                  len(self._records), self._samples, path)
        return path


def _boot_correction() -> float:
    """Seconds to add to psutil's creation times to make them exact to a clock tick.

    psutil counts from the boot time in /proc/stat, which is whole seconds: every creation
    time is then off by the same fraction of a second. The uptime gives the fraction.
    """
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return (time.time() - uptime) - psutil.boot_time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).isoformat()
