"""Helpers of the process-lifetime, input-bound and name tests of tests/adversarial
(issue 17, classes 3-5). Everything is real: services, clients and daemons are processes.

* ``Marker``: a unique word put on the command line of every daemon a test starts, so the
  test finds exactly its own processes (``alive()``), waits for them to go (``gone()``),
  and kills what is left at the end whatever happened (context manager).
* ``daemon_command(kind, marker)``: a shell command line that leaves a daemon behind and
  returns at once: ``setsid`` (new session), ``double-fork`` (fork, setsid, fork: the
  grandchild is re-parented to init), ``nohup`` (plain background process), ``group``
  (a new process group only).
* ``client(script)``: a Python client process (own session) running ``script`` that prints
  one ready line; ``ready_line(proc)`` reads it with a deadline.

The child environment, ``pid_alive`` and deadline waits come from ``support``.
"""

import json
import os
import select
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from support.eventually import WaitTimeout, eventually
from support.processes import child_env, kill

PY = sys.executable


_SLEEPER = "import sys, time; time.sleep(600)"


def daemon_command(kind: str, marker: str) -> str:
    """A /bin/sh command that starts a daemon carrying ``marker`` and returns at once
    (it ends with ``&`` or ``;``: more commands may follow)."""
    sleeper = "%s -c '%s' %s" % (PY, _SLEEPER, marker)
    quiet = "</dev/null >/dev/null 2>&1"
    if kind == "setsid":
        return "setsid %s %s &" % (sleeper, quiet)
    if kind == "double-fork":
        code = ("import os, sys, time\n"
                "if os.fork(): os._exit(0)\n"
                "os.setsid()\n"
                "if os.fork(): os._exit(0)\n"
                "time.sleep(600)\n")
        return "%s -c \"%s\" %s %s;" % (PY, code, marker, quiet)
    if kind == "nohup":
        return "nohup %s %s &" % (sleeper, quiet)
    if kind == "group":
        return "%s -c 'import os, time; os.setpgid(0, 0); time.sleep(600)' %s %s &" % (
            PY, marker, quiet)
    raise ValueError(kind)


DAEMON_KINDS = ("setsid", "double-fork", "nohup", "group")


class Marker:
    """A unique command-line word; the processes that carry it are this test's daemons."""

    def __init__(self):
        self.word = "qcgflow-adv-%s" % uuid.uuid4().hex[:12]

    def __str__(self) -> str:
        return self.word

    def alive(self) -> list:
        found = []
        for proc in psutil.process_iter():
            try:
                if self.word in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def wait_started(self, count: int = 1, timeout: float = 20.0) -> list:
        return eventually(lambda: (lambda a: a if len(a) >= count else None)(self.alive()),
                          timeout, 0.05, "%d daemon(s) marked %s to start" % (count, self.word))

    def gone(self, timeout: float = 10.0) -> bool:
        """True once no daemon of this marker is left; False after ``timeout`` s."""
        try:
            return eventually(lambda: not self.alive(), timeout, 0.05, "daemons to end")
        except WaitTimeout:
            return False

    def kill(self) -> list:
        left = self.alive()
        kill(left)
        return left

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def client(script: str, cwd) -> subprocess.Popen:
    """A Python client in its own session: ``script`` must print one JSON ready line."""
    return subprocess.Popen([PY, "-c", script], cwd=str(cwd), env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def ready_line(proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    buffer = b""
    while b"\n" not in buffer:
        left = end - time.monotonic()
        if left <= 0 or proc.poll() is not None and not select.select([proc.stdout], [], [], 0)[0]:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail("the client gave no ready line: %s" % err.decode(errors="replace")[-3000:])
        if select.select([proc.stdout], [], [], min(left, 0.5))[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                continue
            buffer += chunk
    return json.loads(buffer.split(b"\n", 1)[0])


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL only the client process itself (not its group), then reap it."""
    proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()
