"""Shared test configuration: markers and the no-leftover-process guard."""

import os

import psutil
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "modules: needs environment modules (apt-get install "
                                       "environment-modules)")
    config.addinivalue_line("markers", "slurm: needs the dev Slurm cluster (bash "
                                       "ci/dev-cluster/dev-cluster.sh up)")


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Every test must reap what it started: no child of the test process may survive it."""
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    yield
    deadline_children = [p for p in psutil.Process(os.getpid()).children(recursive=True)
                         if p.pid not in before]
    gone, alive = psutil.wait_procs(deadline_children, timeout=5)
    for proc in alive:
        proc.kill()
    assert not alive, "processes left behind: %s" % [p.pid for p in alive]
