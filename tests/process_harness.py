"""Processes a test left behind: the one finder and the one wait-then-kill the harnesses use.

* ``processes_under(root)``: live processes (not this one) whose command line mentions
  ``root`` or whose working directory is inside it.
* ``left_after(root, grace)``: waits up to ``grace`` seconds for them to end, kills what is
  still there and returns it (empty when the test cleaned up after itself).
"""

import os
import time

import psutil


def processes_under(root) -> list:
    root = str(root)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if any(root in arg for arg in proc.cmdline()) or proc.cwd().startswith(root):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def left_after(root, grace: float = 3.0) -> list:
    deadline = time.monotonic() + grace
    left = processes_under(root)
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=0.1)
        left = processes_under(root)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return left
