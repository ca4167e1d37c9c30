"""Helpers of the workflow-file and command-line tests.

* ``write(tmp_path, name, text)``: a workflow file (dedented) in tmp_path.
* ``cli(*args, cwd=...)``: ``python -m qcgflow.cli ARGS`` as a child process with a deadline;
  returns the CompletedProcess (text).
* ``assert_golden(name, jobs)``: compare with ``tests/workflows/golden/<name>.json``
  (``QCGFLOW_UPDATE_GOLDEN=1`` rewrites it; review the diff).
* ``no_stray_processes`` fixture (autouse where imported): fails a test that leaves a process
  whose command line or working directory is under its tmp_path, and kills it.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"
GOLDEN = Path(__file__).resolve().parent / "golden"
PYTHON = "python3"
DEADLINE = 90


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def cli(*args, cwd=None, timeout: float = DEADLINE, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "qcgflow.cli"] + [str(a) for a in args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_golden(name: str, jobs) -> None:
    path = GOLDEN / ("%s.json" % name)
    if os.environ.get("QCGFLOW_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(jobs, indent=2, sort_keys=True) + "\n")
    assert jobs == json.loads(path.read_text())


def _strays(root: str):
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and (any(root in a for a in proc.cmdline())
                                            or proc.cwd().startswith(root)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(autouse=True)
def no_stray_processes(tmp_path):
    """Fail a test that leaves a process started under its tmp_path (and kill it)."""
    yield
    deadline = time.monotonic() + 3.0
    left = _strays(str(tmp_path))
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=0.1)
        left = _strays(str(tmp_path))
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    assert left == [], "processes left behind: %s" % [p.pid for p in left]
