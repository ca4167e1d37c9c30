"""A client whose service was SIGKILLed gets an error within its timeout (issue 8, item 3).

tests/client covers ``ServiceClient`` and the upstream-compatible ``Manager`` /
``LocalManager`` against a killed service; here the same crash meets the graph API
(``qcgflow.init`` + ``.remote``, ``qcgflow.get``, ``qcgflow.wait``) and a raw
``ServiceClient`` in the middle of a long wait for events. Every call must end with an
error (never hang) within its timeout, and say that the service is gone.
"""

import os
import signal
import time

import pytest

import qcgflow
from qcgflow.errors import RunError
from qcgflow.runtime.client import ClientError, ServiceClient

from support.processes import kill, processes_under
from support.services import NetService


@qcgflow.task
def nap(seconds):
    import time as _time
    _time.sleep(seconds)
    return seconds


def test_remote_futures_fail_soon_after_the_service_is_killed(tmp_path):
    context = qcgflow.init(nodes=2, wd=str(tmp_path / "run"))
    try:
        done = nap.remote(0)
        assert done.result(timeout=30) == 0
        running = nap.remote(60)
        queued = [nap.remote(60) for _ in range(3)]
        os.kill(context.session.service.popen.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(RunError, match="exit code -9"):
            running.result(timeout=20)
        assert time.monotonic() - started < 5, "the crash was noticed late"
        with pytest.raises(RunError):
            qcgflow.get(queued, timeout=5)
        ready, not_ready = qcgflow.wait(queued, num_returns=3, timeout=5)
        assert len(ready) == 3 and not not_ready
        assert done.result(timeout=1) == 0, "a result already in must stay"
    finally:
        qcgflow.shutdown()
        kill(processes_under(tmp_path))  # the killed service could not stop its tasks


def test_a_new_remote_after_the_crash_fails_at_once(tmp_path):
    context = qcgflow.init(nodes=2, wd=str(tmp_path / "run"))
    try:
        os.kill(context.session.service.popen.pid, signal.SIGKILL)
        context.session.service.popen.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(RunError):
            nap.remote(0).result(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        qcgflow.shutdown()
        kill(processes_under(tmp_path))


def test_event_wait_of_a_raw_client_ends_within_its_timeout(tmp_path):
    service = NetService(tmp_path)
    try:
        with ServiceClient(service.address, timeout=1.0) as client:
            stream = client.subscribe(address=service.ready["pub_address"])
            service.kill()
            started = time.monotonic()
            assert stream.next(timeout=1.0) is None
            with pytest.raises(ClientError, match="not running or not reachable"):
                client.request({"request": "status"})
            assert time.monotonic() - started < 3
    finally:
        service.stop()
