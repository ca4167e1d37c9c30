"""Helpers of the graph-API tests (qcgflow.task / shell / mpi / compile / run).

* ``assert_golden(name, jobs)``: compare compiled job descriptions with
  ``tests/graph/golden/<name>.json`` (``QCGFLOW_UPDATE_GOLDEN=1`` rewrites the file; review
  the diff). Golden graphs compile with ``python=PYTHON`` so they do not depend on the host.
* ``no_leftovers`` fixture (autouse where imported): fails a test that leaves a process
  whose command line or working directory is under its tmp_path (and kills it).
* ``run_wd(tmp_path)``: the working directory of a test's run.
"""

import json
import os
from pathlib import Path

import pytest

from process_harness import left_after, processes_under

GOLDEN = Path(__file__).resolve().parent / "golden"
PYTHON = "python3"
UPDATE = os.environ.get("QCGFLOW_UPDATE_GOLDEN") == "1"


def assert_golden(name: str, jobs) -> None:
    path = GOLDEN / ("%s.json" % name)
    if UPDATE or not path.exists():
        path.write_text(json.dumps(jobs, indent=2, sort_keys=True) + "\n")
    assert jobs == json.loads(path.read_text())


def run_wd(tmp_path: Path) -> str:
    return str(tmp_path / "run")


leftovers = processes_under


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path):
    """Fail a test that leaves a process started under its tmp_path (and kill it)."""
    yield
    left = left_after(tmp_path)
    assert left == [], "processes left behind: %s" % [p.pid for p in left]
