"""The session's driver makes no request to the service while it holds its lock
(qcgflow/session/driver.py): the paths that used to (retry decisions with a
``retry_exceptions`` filter, a mapped task's failed iterations, a cancel, a lost
predecessor's end) run against a real service with the client watched."""

import os

import pytest

import qcgflow
from qcgflow.errors import DependencyFailed, TaskCancelled, TaskFailed
from qcgflow.runtime.client import ServiceError
from qcgflow.runtime.protocol import QUEUED
from qcgflow.session import dynamic

from graph_harness import Flaky, attempt, run_wd
from support.eventually import eventually

DEADLINE = 60


@qcgflow.task(retries=1, retry_exceptions=[Flaky])
def picky(directory):
    if attempt(directory) == 0:
        raise Flaky("first attempt")
    return "second"


@qcgflow.task(retries=1)
def element(x, directory):
    if x == 1 and attempt(directory) == 0:
        raise Flaky("element 1, first attempt")
    return x


@qcgflow.task
def broken(x):
    raise KeyError(x)


@qcgflow.task
def inc(x):
    return x + 1


@qcgflow.task
def wait_for(path):
    import time
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 1


@pytest.fixture
def watched(tmp_path):
    """A session whose client records every request made while the requesting thread
    holds the session's lock."""
    with qcgflow.init(nodes=2, wd=run_wd(tmp_path)) as context:
        session = context.session
        request, held = session.client.request, []

        def watching(message, *args, **kwargs):
            if session.lock._is_owned():
                held.append(message.get("request"))
            return request(message, *args, **kwargs)

        session.client.request = watching
        yield held


def test_a_filtered_retry_asks_nothing_under_the_lock(watched, tmp_path):
    assert qcgflow.get(picky.remote(str(tmp_path / "a")), timeout=DEADLINE) == "second"
    assert watched == []


def test_retried_iterations_ask_nothing_under_the_lock(watched, tmp_path):
    ref = dynamic.submit(element.map([0, 1, 2], str(tmp_path / "e")))
    assert qcgflow.get(ref, timeout=DEADLINE) == [0, 1, 2]
    assert watched == []


def test_a_failure_and_its_dependant_ask_nothing_under_the_lock(watched):
    with pytest.raises(DependencyFailed):
        qcgflow.get(inc.remote(broken.remote(1)), timeout=DEADLINE)
    assert watched == []


def queued_in_the_service(ref):
    """Wait until the service holds the job of ``ref`` QUEUED (sent, not started)."""
    session = dynamic._current.session
    name = session.tasks[ref.node].name

    def queued():
        try:
            reply = session.client.request({"request": "jobStatus", "jobNames": [name]})
        except ServiceError:  # not sent yet: the service does not know it
            return False
        entry = ((reply or {}).get("jobs") or {}).get(name) or {}
        return (entry.get("data") or {}).get("status") == QUEUED

    return eventually(queued, DEADLINE, 0.01, "%s QUEUED in the service" % name)


def test_a_cancel_asks_nothing_under_the_lock(watched, tmp_path):
    gate = str(tmp_path / "gate")
    running = [wait_for.remote(gate), wait_for.remote(gate)]
    queued = inc.remote(1)
    assert queued_in_the_service(queued)
    assert qcgflow.cancel(queued)
    open(gate, "w").close()
    with pytest.raises(TaskCancelled):
        qcgflow.get(queued, timeout=DEADLINE)
    assert (qcgflow.get(running, timeout=DEADLINE), watched) == ([1, 1], [])


def test_the_watch_sees_a_request_made_under_the_lock(watched):
    session = dynamic._current.session
    with session.lock:
        session.client.request({"request": "status"})
    assert watched == ["status"]


def test_a_task_error_is_its_own_after_the_driver_found_it_out(watched):
    with pytest.raises(TaskFailed) as caught:
        qcgflow.get(broken.remote(3), timeout=DEADLINE)
    assert caught.value.cause_type == "KeyError"
