"""Processes of a test: their environment, finding what a test left behind, killing trees.

* ``REPO``: this checkout; ``child_env(extra)``: ``os.environ`` with the checkout first on
  ``PYTHONPATH`` (a child ``python -m qcgflow...`` imports the code under test), then
  ``extra``.
* ``processes_under(root)``: live processes (not this one, not zombies) whose command line
  mentions ``root`` or whose working directory lies inside it: what a test started under
  its ``tmp_path``, however it was detached (new session, double fork).
* ``left_after(root, grace)``: waits up to ``grace`` s for those to end, kills (SIGKILL)
  what is still there and returns it: empty when the test cleaned up after itself.
* ``no_leftovers``: a fixture failing a test that leaves any process under its ``tmp_path``
  (and killing it). Autouse where imported: a directory takes it with
  ``from support.processes import no_leftovers  # noqa: F401`` in its conftest.py.
* ``pid_alive(pid)``, ``kill(processes)``: exists and is not a zombie; SIGKILL + reap.
* ``tree(pid)`` / ``stop_tree(pid, grace)``: a process and all its descendants, whatever
  process group or session they moved to; SIGTERM to all, SIGKILL after ``grace``.
* ``kill_group(popen)``: SIGKILL the process group a ``start_new_session`` child leads.
"""

import os
import signal
import subprocess
from pathlib import Path
from typing import Iterable, List, Optional

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def child_env(extra: Optional[dict] = None) -> dict:
    """This environment with the checkout first on PYTHONPATH, then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def processes_under(root) -> List[psutil.Process]:
    """Live processes whose command line names ``root`` or whose cwd is inside it."""
    root = str(root)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = proc.cwd()
            if any(root in arg for arg in proc.cmdline()) or cwd == root or \
                    cwd.startswith(root + os.sep):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _signal_each(processes: List[psutil.Process], signum: int) -> None:
    for proc in processes:
        try:
            proc.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def kill(processes: Iterable[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL each of ``processes`` (those already gone are skipped) and reap them."""
    processes = list(processes)
    _signal_each(processes, signal.SIGKILL)
    psutil.wait_procs(processes, timeout=timeout)


def left_after(root, grace: float = 5.0) -> List[psutil.Process]:
    """What is still running under ``root`` after ``grace`` s (killed; empty if none).

    The grace lets processes in the middle of exiting (a service's last task) finish.
    """
    left = processes_under(root)
    if left:
        psutil.wait_procs(left, timeout=grace)
        left = processes_under(root)
    described = []
    for proc in left:
        try:
            described.append(_describe(proc))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            described.append(proc)
    kill(left)
    return described


def _describe(proc: psutil.Process) -> str:
    return "%d %s (cwd %s)" % (proc.pid, " ".join(proc.cmdline()), proc.cwd())


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path):
    """Fail a test that leaves a process started under its tmp_path (and kill it)."""
    yield
    left = left_after(tmp_path)
    assert not left, "processes left behind:\n  %s" % "\n  ".join(map(str, left))


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> List[psutil.Process]:
    """``pid`` and all its descendants (empty when ``pid`` is gone)."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_tree(pid: int, grace: float = 3.0) -> None:
    """SIGTERM ``pid`` and every descendant, whatever group they moved to; SIGKILL what is
    left after ``grace`` s (salloc and srun give up their jobs on SIGTERM)."""
    family = tree(pid)
    _signal_each(family, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=grace)
    kill(alive)


def kill_group(popen: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL the process group ``popen`` leads (``start_new_session``; else ``popen``
    alone) and reap it."""
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if popen.poll() is None:
            popen.kill()
    popen.wait(timeout=timeout)
