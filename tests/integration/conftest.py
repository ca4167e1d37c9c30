"""Fixtures of the service integration tests (helpers live in service_harness.py)."""

import time

import psutil
import pytest

from service_harness import _leftovers


@pytest.fixture(autouse=True)
def no_leftover_tasks(tmp_path):
    """Fail a test that leaves any process started under its tmp_path running."""
    yield
    deadline = time.monotonic() + 2.0
    left = _leftovers(tmp_path)
    while left and time.monotonic() < deadline:  # processes in the middle of exiting
        time.sleep(0.05)
        left = _leftovers(tmp_path)
    if left:
        described = []
        for proc in left:
            try:
                described.append("%d %s (cwd %s)" % (proc.pid, " ".join(proc.cmdline()),
                                                     proc.cwd()))
                proc.kill()  # only processes this test started (they live under tmp_path)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        pytest.fail("processes left behind after the test:\n  " + "\n  ".join(described))
