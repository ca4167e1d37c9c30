"""Fixtures of the compatibility tests against the real QCG-PilotJob 0.14.2."""

import json
import os
import subprocess
import sys

import pytest

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
    """``qcgflow service --net`` on loopback; yields its ready line (dict)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcgflow.cli", "service", "--net", "--nodes", "2",
         "--wd", str(tmp_path / "wd"), "--ready-fd", str(write_fd)],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        line = ready.readline()
    assert line, proc.communicate(timeout=10)[1]
    info = json.loads(line)
    info["proc"] = proc
    yield info
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
