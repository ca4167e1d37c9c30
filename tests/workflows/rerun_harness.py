"""Helpers of the re-run tests: what a run directory holds, runs in the background.

* ``outputs(wd)``: the user-visible files of a run directory (not qcgflow's own:
  ``.qcgflow/``, ``.qcgpjm-service-*/``, ``qcgflow-*``), each as its sorted lines with the
  directory's path replaced by ``WD``. Lines are sorted because iterations that append to
  one file (``>>``) do so in the order they finish, which differs between two clean runs.
* ``start(...)``: ``qcgflow run`` as a child in a new session (so that a signal can go to
  its whole process group, as Ctrl-C in a terminal does).
"""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from workflows_harness import ROOT

OWN = (".qcgflow", "qcgflow-")


def outputs(wd: Path) -> Dict[str, List[str]]:
    found = {}
    for path in sorted(wd.rglob("*")):
        rel = path.relative_to(wd)
        if not path.is_file() or rel.parts[0].startswith(OWN) or \
                rel.parts[0].startswith(".qcgpjm-service-"):
            continue
        text = path.read_text(errors="replace").replace(str(wd), "WD")
        found[str(rel)] = sorted(text.splitlines())
    return found


def start(*args, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "qcgflow.cli"] + [str(a) for a in args],
                            cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def lines(path: Path) -> List[str]:
    return path.read_text().split() if path.exists() else []
