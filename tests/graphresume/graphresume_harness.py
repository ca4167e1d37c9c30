"""Helpers of the resume / caching tests.

* ``Project(tmp_path)``: a user's project in a directory: ``write(module_text, main_text)``
  writes ``flow.py`` (the task functions) and ``main.py`` (builds the graph and calls
  ``qcgflow.run``; it prints the result as JSON on its last line); ``run()`` runs
  ``python main.py`` as a child process with a deadline and returns the result and the
  ``reused N of M`` line; ``calls()`` reads the side-effect file the tasks append to (one
  line per execution), so a test sees what really ran.
* ``child_env(extra)``: support.processes.child_env without the caller's QCGFLOW_RESUME
  and QCGFLOW_CACHE_DIR (a test chooses those itself).

Every test of the directory must leave no process under its tmp_path (conftest.py).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from support import processes

DEADLINE = 90


def child_env(extra=None):
    env = processes.child_env(extra)
    env.pop("QCGFLOW_RESUME", None)
    env.pop("QCGFLOW_CACHE_DIR", None)
    return env


class Project:
    """A directory with ``flow.py`` (tasks), ``main.py`` (the run) and ``calls.txt``."""

    def __init__(self, tmp_path: Path, wd: str = "run"):
        self.dir = tmp_path
        self.wd = str(tmp_path / wd)
        self.calls_file = tmp_path / "calls.txt"

    def write(self, module: str, main: str) -> None:
        header = "CALLS = %r\n\n\ndef note(what):\n    with open(CALLS, 'a') as handle:\n" \
                 "        handle.write('%%s\\n' %% (what,))\n\n\n" % str(self.calls_file)
        (self.dir / "flow.py").write_text(header + textwrap.dedent(module).lstrip("\n"))
        (self.dir / "main.py").write_text(textwrap.dedent(main).lstrip("\n"))

    def run(self, *args, env=None):
        """(result, reused line) of ``python main.py ARGS``; the calls file is emptied first."""
        if self.calls_file.exists():
            self.calls_file.unlink()
        done = subprocess.run([sys.executable, "main.py"] + [str(a) for a in args],
                              cwd=str(self.dir), env=child_env(env), capture_output=True,
                              text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = [l for l in done.stderr.splitlines() if "reused " in l]
        return json.loads(done.stdout.strip().splitlines()[-1]), (lines[-1] if lines else "")

    def calls(self):
        """The executions of the last run, sorted (one line per task execution)."""
        if not self.calls_file.exists():
            return []
        return sorted(self.calls_file.read_text().split())


MAIN_HEADER = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
import qcgflow
import flow
"""
