"""Fixtures of the compatibility tests against the real QCG-PilotJob 0.14.2."""

import subprocess

import pytest

from support.services import NetService
from upstream_venv import UPSTREAM, upstream_python  # tests/upstream_venv.py


@pytest.fixture(scope="session")
def upstream():
    """The python of a side venv that has the upstream package (skip if it cannot be had)."""
    try:
        return upstream_python()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip("needs %s in a side venv, which could not be installed (%s); make PyPI "
                    "reachable or set QCGFLOW_TEST_VENVS to a venv that has it" % (UPSTREAM, exc))


@pytest.fixture
def our_service(tmp_path):
    """``qcgflow service --net`` on loopback (support.services.NetService); yields its
    ready line (dict) with the process as ``proc``."""
    with NetService(tmp_path, service_id=None) as service:
        yield dict(service.ready, proc=service.proc)
