"""Helpers of the graph-API tests (qcgflow.task / shell / mpi / compile / run).

* ``assert_golden(name, jobs)``: compare compiled job descriptions with
  ``tests/graph/golden/<name>.json`` (support.golden; ``QCGFLOW_UPDATE_GOLDEN=1`` rewrites
  the file: review the diff). Golden graphs compile with ``python=PYTHON`` so they do not
  depend on the host.
* ``run_wd(tmp_path)``: the working directory of a test's run.
* Tasks several test modules share: ``inc``, ``add``, ``fails`` (raises ``Custom``, an
  exception class of a user module: it travels back and is caught as itself), and
  ``wait_for``: returns ``value`` once the file ``path`` exists (the test releases it; it
  fails after ``GATE_DEADLINE`` s).
* ``Flaky`` and ``attempt(directory)``: a task that fails its first attempts (retry tests).

Every test of the directory must leave no process under its tmp_path (conftest.py).
"""

import os
from pathlib import Path

import qcgflow
from support import golden
from support.eventually import eventually

GOLDEN = Path(__file__).resolve().parent / "golden"
PYTHON = "python3"
GATE_DEADLINE = 60


def assert_golden(name: str, jobs) -> None:
    golden.assert_golden(GOLDEN, name, jobs)


def run_wd(tmp_path: Path) -> str:
    return str(tmp_path / "run")


class Flaky(Exception):
    pass


def attempt(directory):
    """Record one attempt in ``directory``; the number of earlier attempts."""
    os.makedirs(directory, exist_ok=True)
    number = len(os.listdir(directory))
    open(os.path.join(directory, str(number)), "w").close()
    return number


class Custom(Exception):
    """An exception class of the caller's module: travels back and is caught as itself."""


@qcgflow.task
def inc(x):
    return x + 1


@qcgflow.task
def add(*values):
    return sum(values)


@qcgflow.task
def fails(x):
    raise Custom("bad input %r" % (x,))


@qcgflow.task
def wait_for(path, value):
    """Return ``value`` once ``path`` exists (a task the test releases)."""
    eventually(lambda: os.path.exists(path), GATE_DEADLINE, 0.01, "the gate file %s" % path)
    return value
