"""serving.Service assembled by a composition root of the test's own: the roles it is given
(TaskExecutor, Launcher, Hub) are what it calls, with no subclass (ARCHITECTURE.md rule 8).

Real components (Manager, event loop, working files, request handlers); the roles are
recording stand-ins, which is what composition makes possible. In-process, no sockets.
"""

import json

import pytest

from qcgflow.runtime.clock import SystemClock
from qcgflow.runtime.config import parse_service_args
from qcgflow.runtime.handlers import RequestHandler
from qcgflow.runtime.manager import Manager
from qcgflow.runtime.resources import ResourcePool
from qcgflow.runtime.serving import Service


class RecordingHub:
    """A Hub role that says what was asked of it, in order."""

    def __init__(self, calls):
        self.calls = calls

    def ready_fields(self):
        return {"hub": "here"}

    def wait_until_ready(self):
        self.calls.append("wait_until_ready")
        return None

    def describe(self, status):
        self.calls.append("describe")
        status["Hub"] = {"led": 3}
        return status

    def finish_all(self):
        self.calls.append("finish_all")

    def close(self):
        self.calls.append("close")

    def reap(self):
        self.calls.append("reap")


class IdleExecutor:
    """TaskExecutor and Launcher at once (as a governor's RemoteExecutor): runs nothing."""

    def __init__(self, calls):
        self.calls = calls

    def __len__(self):
        return 0

    def start(self, job, position, allocation):
        self.calls.append("start %s" % job.unit_name(position))

    def stop(self, job, position, reason, state, grace=0.0):
        pass

    def stop_all(self, reason, state):
        self.calls.append("stop_all")

    def running_step(self, step):
        return None

    def kill_all(self):
        pass

    def close(self):
        self.calls.append("launcher close")


@pytest.fixture
def composed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # open_workdir changes into the service's wd
    calls = []
    requests = tmp_path / "requests.json"
    requests.write_text("[]")
    config = parse_service_args(["--wd", str(tmp_path), "--id", "composed", "--nodes", "2",
                                 "--no-journal", "--file-path", str(requests)])

    def assemble(service):
        service.open_workdir()
        manager = Manager(ResourcePool([("n0", range(2))]), SystemClock(), service.loop)
        service.attach_manager(manager)
        service.serve(RequestHandler(manager, service))
        service.open_journal({})
        executor = IdleExecutor(calls)
        service.attach_execution(executor, executor)
        service.hub = RecordingHub(calls)

    service = Service(config, assemble)
    service.setup()
    closed = []
    real_close = service.close

    def close_once():
        if not closed:
            closed.append(True)
            real_close()

    service.close = close_once
    yield service, calls
    close_once()  # the log handler, report and files of every test are closed


def test_status_reply_carries_the_hubs_part(composed):
    service, _ = composed
    reply = service.handler.handle({"request": "status"})
    assert reply["data"]["Hub"] == {"led": 3}


def test_finish_request_tells_the_hub(composed):
    service, calls = composed
    service.handler.handle({"request": "finish"})
    assert calls[-1:] == ["finish_all"]


def test_close_closes_the_hub_first_and_reaps_it_last(composed, tmp_path):
    service, calls = composed
    service.close()
    assert [c for c in calls if c in ("close", "launcher close", "reap")] == [
        "close", "launcher close", "reap"]


def test_final_status_is_the_described_status(composed, tmp_path):
    service, _ = composed
    service.close()
    status = json.loads((tmp_path / ".qcgpjm-service-composed" / "final_status.json")
                        .read_text())
    assert status["Hub"] == {"led": 3}


def test_a_second_executor_is_refused(composed):
    service, calls = composed
    with pytest.raises(RuntimeError, match="has an executor already"):
        service.manager.attach_executor(IdleExecutor(calls))


def test_submitted_jobs_go_to_the_given_executor(composed):
    service, calls = composed
    service.handler.handle({"request": "submit", "jobs": [
        {"name": "a", "execution": {"exec": "/bin/true"}}]})
    service.loop.call_soon(service.loop.stop)
    service.loop.run()
    assert "start a" in calls
