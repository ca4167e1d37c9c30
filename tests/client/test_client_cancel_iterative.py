"""Canceling a whole iterative job through the client API, with real processes (issue 20).

Upstream (``manager.DirectManager.cancel_job`` and ``joblist.Job.set_state``) cancels each
iteration and sets the job CANCELED when the last one has ended: ``wait4`` on the job
therefore returns with every iteration final and counts that add up.
"""

import time

import pytest

from qcgflow.runtime.api import Jobs, LocalManager
from support.eventually import eventually


@pytest.fixture
def manager10(tmp_path):
    manager = LocalManager(["--nodes", "10"], cfg={"wd": str(tmp_path / "run")})
    yield manager
    if manager._process is not None and not manager._process.exited():
        manager.finish()


def wait_executing(manager, unit, count, timeout=15.0):
    def states():
        return [child.status for child in
                manager.info_parsed([unit], withChilds=True)[unit].childs]

    eventually(lambda: states().count("EXECUTING") >= count, timeout,
               message=lambda: "%d iterations of %s EXECUTING: %s" % (count, unit, states()))


def test_wait4_on_a_canceled_iterative_job_returns_after_its_iterations(manager10):
    # each iteration takes 0.8 s to obey SIGTERM, then exits 0 (still CANCELED)
    script = "trap 'sleep 0.8; exit 0' TERM; sleep 30 & wait"
    manager10.submit(Jobs().add(name="s", script=script, iteration=10))
    wait_executing(manager10, "s", 10)
    started = time.monotonic()
    manager10.cancel(["s"])
    assert manager10.wait4(["s"], timeout=20) == {"s": "CANCELED"}
    waited = time.monotonic() - started
    info = manager10.info_parsed(["s"], withChilds=True)["s"]
    assert [child.status for child in info.childs] == ["CANCELED"] * 10
    assert info.iterations == {"start": 0, "stop": 10, "total": 10, "finished": 10,
                               "failed": 10}
    assert waited >= 0.7, waited  # it waited for the iterations to obey


def test_canceling_sleep_iterations_on_every_core_counts_them_all(manager10):
    """The issue's figure: 10 iterations of ``sleep 5s`` on 10 cores, cancel, wait4."""
    manager10.submit(Jobs().add(name="s", exec="/bin/sleep", args=["5s"], iteration=10))
    wait_executing(manager10, "s", 5)
    manager10.cancel(["s"])
    assert manager10.wait4(["s"], timeout=20) == {"s": "CANCELED"}
    info = manager10.info_parsed(["s"], withChilds=True)["s"]
    assert [child.status for child in info.childs] == ["CANCELED"] * 10
    assert (info.iterations["finished"], info.iterations["failed"]) == (10, 10)
