"""Helpers and fixtures of the client tests (qcgflow.runtime.client, .api, .executor_api).

Everything runs for real: services are ``python -m qcgflow.cli service --net`` processes on
loopback (or on this host's non-loopback address for the CURVE tests), jobs are real
processes. Waiting uses deadlines (support.eventually), never fixed sleeps.

* ``service`` fixture: a ``support.services.NetService`` with 4 cores (for tests that need
  a service the API did not start: plain ``Manager``, killing it, CURVE), stopped at
  teardown; other services: ``NetService(tmp_path, ...)`` directly.
* ``local_manager`` fixture: a ``LocalManager(['--nodes', '4'], cfg={'wd': tmp_path/run})``
  finished (or killed) at teardown.
* ``upstream_python()``: the side venv with QCG-PilotJob 0.14.2, or None.
* ``exposed_address()``: what the CURVE tests bind to leave loopback.

Every test of the directory must leave no process under its tmp_path (conftest.py).
"""

import subprocess
from pathlib import Path
from typing import Optional

import pytest

import upstream_venv
from support.services import NetService


@pytest.fixture
def service(tmp_path):
    with NetService(tmp_path, nodes="4", wd=tmp_path / "svc") as svc:
        yield svc


@pytest.fixture
def local_manager(tmp_path):
    from qcgflow.runtime.api import LocalManager
    manager = LocalManager(["--nodes", "4"], cfg={"wd": str(tmp_path / "run")})
    yield manager
    if manager._process is not None and not manager._process.exited():
        try:
            manager.finish()
        except Exception:  # a test that broke the service: make sure it is gone
            manager.kill_manager_process()
            manager.cleanup()


def exposed_address() -> str:
    """What the tests bind to leave loopback: all interfaces. They still connect only
    through loopback (tcp://0.0.0.0:P reaches this host), so no packet leaves the machine."""
    return "0.0.0.0"


def upstream_python() -> Optional[Path]:
    """The side venv with QCG-PilotJob 0.14.2 (created on first use), or None if it cannot
    be installed here (then the test skips with the reason)."""
    try:
        return upstream_venv.upstream_python()
    except (RuntimeError, subprocess.SubprocessError, OSError):
        return None
