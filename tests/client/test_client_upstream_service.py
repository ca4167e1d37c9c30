"""Our client API against the real QCG-PilotJob 0.14.2 service (side venv; skipped without).

The wire format is upstream's: our Manager must drive its service too (events included).
"""

import os
import signal
import subprocess
import time

import pytest
import zmq

from client_harness import upstream_python
from qcgflow.runtime.api import Jobs, Manager, RequestFailedError

PYTHON = upstream_python()
pytestmark = pytest.mark.skipif(PYTHON is None, reason="needs qcg-pilotjob==0.14.2 in a side venv, which could not be installed: make PyPI reachable")


def free_port() -> int:
    with zmq.Context() as ctx:
        probe = ctx.socket(zmq.REP)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(linger=0)
    return port


def test_manager_drives_the_upstream_service(tmp_path):
    port = free_port()
    service = subprocess.Popen(
        [str(PYTHON.parent / "qcg-pm-service"), "--net", "--net-port", str(port), "--wd",
         str(tmp_path), "--nodes", "2"], cwd=str(tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manager = None
    try:
        # a request queued before the service binds is delivered once it does
        manager = Manager("tcp://127.0.0.1:%d" % port, cfg={"timeout": 30})
        assert manager.publisher_address
        assert manager.resources()["total_cores"] == 2
        names = manager.submit(Jobs().add(name="a", exec="/bin/echo", args=["${it}"],
                                          iteration=2, stdout="a.${it}")
                               .add(name="b", exec="/bin/false", after="a"))
        assert manager.wait4(names, timeout=30) == {"a": "SUCCEED", "b": "FAILED"}
        manager.wait4all(timeout_secs=30)
        info = manager.info_parsed("a", withChilds=True)["a"]
        assert info.iterations["total"] == 2 and len(info.childs) == 2
        assert info.history and info.history[-1].endswith("SUCCEED")
        with pytest.raises(RequestFailedError, match="doesn't exist"):
            manager.status("nope")
        started = time.monotonic()
        manager.finish()
        assert time.monotonic() - started < 5
        service.wait(15)  # upstream exits some seconds after finish
    finally:
        if manager is not None:
            manager.cleanup()
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)
