"""qcgflow.runtime.api Manager / LocalManager: every method against our service."""

import os
import signal
import threading
import time
from datetime import timedelta

import pytest

from qcgflow.runtime.api import (ConnectionError, InternalError, JobInfo, Jobs, LocalManager,
                                 Manager, RequestFailedError, ServiceError, ServiceTimeoutError,
                                 TimeoutElapsed)
from support.eventually import eventually
from support.processes import processes_under
from support.services import NetService


def test_resources_and_system_status(local_manager):
    assert local_manager.resources() == {"total_nodes": 1, "total_cores": 4, "used_cores": 0,
                                         "free_cores": 4}
    status = local_manager.system_status()
    assert set(status) >= {"System", "Resources", "JobStats", "IterationStats"}
    system = status["System"]
    assert system["Zmqaddress"] == local_manager.address
    assert system["StatusPublisher"] == local_manager.publisher_address
    assert system["Wd"] == local_manager.wd
    assert local_manager.aux_dir.startswith(local_manager.wd)


def test_submit_list_status_info_wait4(local_manager):
    jobs = (Jobs().add(name="a", exec="/bin/echo", args=["hi"], stdout="a.out")
            .add(name="b", script="exit 3", after="a")
            .add(name="c", exec="/bin/echo", args=["${it}"], iteration=3, stdout="c.${it}",
                 numCores=1))
    assert local_manager.submit(jobs) == ["a", "b", "c"]
    assert local_manager.wait4(["a", "b", "c", "c:2"], timeout=10) == {
        "a": "SUCCEED", "b": "FAILED", "c": "SUCCEED", "c:2": "SUCCEED"}
    listed = local_manager.list()
    assert {name: entry["status"] for name, entry in listed.items()} == {
        "a": "SUCCEED", "b": "FAILED", "c": "SUCCEED"}
    status = local_manager.status("a")
    assert status == {"jobs": {"a": {"status": 0, "data": {"jobName": "a",
                                                           "status": "SUCCEED"}}}}
    info = local_manager.info(["c"], withChilds=True)["jobs"]["c"]["data"]
    assert info["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 3,
                                  "failed": 0}
    assert [child["iteration"] for child in info["childs"]] == [0, 1, 2]
    assert open("%s/a.out" % local_manager.wd).read() == "hi\n"
    assert open("%s/c.2" % local_manager.wd).read() == "2\n"


def test_info_parsed_gives_jobinfo(local_manager):
    local_manager.submit(Jobs().add(name="it", exec="/bin/true", iteration=2, numCores=2)
                         .add(name="f", exec="/bin/false"))
    local_manager.wait4(["it", "f"], timeout=10)
    parsed = local_manager.info_parsed(["it", "f"], withChilds=True)
    it, f = parsed["it"], parsed["f"]
    assert isinstance(it, JobInfo) and it.name == "it" and it.status == "SUCCEED"
    assert it.iterations["total"] == 2 and [c.name for c in it.childs] == ["it:0", "it:1"]
    child = it.childs[1]
    assert child.iteration == 1 and child.status == "SUCCEED" and child.total_cores == 2
    assert list(child.nodes) == ["n0"] and child.wdir == local_manager.wd
    assert isinstance(child.time, timedelta) and child.exit_code == 0
    assert f.status == "FAILED" and f.exit_code == 1 and f.total_cores == 1
    assert any(line.endswith("FAILED") for line in f.history)
    assert "exit code 1" in f.messages
    assert '"status": "FAILED"' in str(f)


def test_wait4_timeout_raises_timeout_elapsed(local_manager):
    local_manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]))
    started = time.monotonic()
    with pytest.raises(TimeoutElapsed):
        local_manager.wait4("s", timeout=0.3)
    assert time.monotonic() - started < 1.5
    local_manager.cancel("s")
    assert local_manager.wait4("s", timeout=10) == {"s": "CANCELED"}


def test_cancel_running_job_and_dependants_are_omitted(local_manager):
    local_manager.submit(Jobs().add(name="s", exec="sleep", args=["30"])
                         .add(name="d", exec="/bin/true", after=["s"]))
    eventually(lambda: local_manager.status("s")["jobs"]["s"]["data"]["status"]
               == "EXECUTING", 10, message="s to be EXECUTING")
    started = time.monotonic()
    local_manager.cancel(["s"])
    assert local_manager.wait4(["s", "d"], timeout=15) == {"s": "CANCELED", "d": "OMITTED"}
    assert time.monotonic() - started < 12


def test_wait4all_and_its_timeout(local_manager):
    local_manager.wait4all(timeout_secs=5)  # nothing submitted: returns at once
    local_manager.submit(Jobs().add(name="x", exec="sleep", args=["0.3"], iteration=3))
    started = time.monotonic()
    local_manager.wait4all()
    assert 0.25 < time.monotonic() - started < 5
    assert local_manager.list()["x"]["status"] == "SUCCEED"
    local_manager.submit(Jobs().add(name="y", exec="sleep", args=["30"]))
    with pytest.raises(TimeoutElapsed):
        local_manager.wait4all(timeout_secs=0.3)
    local_manager.cancel("y")
    local_manager.wait4all(timeout_secs=10)


def test_wait4_any_job_finish_reports_each_finish_once(local_manager):
    local_manager.submit(Jobs().add(name="a", exec="/bin/true")
                         .add(name="b", exec="sleep", args=["0.2"], after="a"))
    first = local_manager.wait4_any_job_finish(timeout_secs=10)
    second = local_manager.wait4_any_job_finish(timeout_secs=10)
    assert [first, second] == [("a", "SUCCEED"), ("b", "SUCCEED")]
    with pytest.raises(TimeoutElapsed):
        local_manager.wait4_any_job_finish(timeout_secs=0.2)
    local_manager.submit(Jobs().add(name="c", exec="/bin/true", iteration=2))
    assert local_manager.wait4("c", timeout=10) == {"c": "SUCCEED"}
    finished = {local_manager.wait4_any_job_finish(5) for _ in range(2)}
    assert finished == {("c:0", "SUCCEED"), ("c:1", "SUCCEED")}  # wait4 took only "c"


def test_remove_and_reuse_a_name_is_not_confused_by_the_old_event(local_manager):
    local_manager.submit(Jobs().add(name="r", exec="/bin/true"))
    assert local_manager.wait4("r", timeout=10) == {"r": "SUCCEED"}
    local_manager.remove("r")
    with pytest.raises(RequestFailedError, match="doesn't exist"):
        local_manager.status("r")
    local_manager.submit(Jobs().add(name="r", exec="/bin/false"))
    assert local_manager.wait4("r", timeout=10) == {"r": "FAILED"}


def test_service_errors_carry_the_service_message(local_manager):
    with pytest.raises(RequestFailedError) as info:
        local_manager.status(["nope"])
    assert str(info.value) == "Job 'nope' doesn't exist"
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, ServiceError)
    with pytest.raises(ConnectionError, match=r"Job \['nope'\] doesn't exist"):
        local_manager.info("nope")
    with pytest.raises(ConnectionError, match="Unknown job attribute 'bogus'"):
        local_manager.submit(Jobs().add_std({"name": "x", "execution": {"exec": "true"},
                                             "bogus": 1}))
    local_manager.submit(Jobs().add(name="a", exec="/bin/true"))
    with pytest.raises(RequestFailedError, match="Job a already exist"):
        local_manager.submit(Jobs().add(name="a", exec="/bin/true"))
    with pytest.raises(RequestFailedError, match="Not enough resources"):
        local_manager.submit(Jobs().add(name="big", exec="/bin/true", numCores=64))
    with pytest.raises(RequestFailedError, match="doesn't exist"):
        local_manager.wait4("ghost", timeout=5)
    with pytest.raises(RequestFailedError, match="doesn't exist"):
        local_manager.cancel("ghost")
    reply = local_manager.send_request({"request": "control",
                                        "command": "finishAfterAllTasksDone"})
    assert reply["code"] == 0 and "accepted" in reply["message"]


def test_submit_accepts_a_list_of_standard_descriptions(local_manager):
    names = local_manager.submit([{"name": "std", "execution": {"exec": "/bin/true"}}])
    assert names == ["std"]
    assert local_manager.wait4(names, timeout=10) == {"std": "SUCCEED"}


def test_manager_connects_by_address_and_environment(service, monkeypatch):
    manager = Manager(service.address, cfg={"timeout": 2})
    try:
        assert manager.publisher_address == service.pub_address
        manager.submit(Jobs().add(name="m", exec="/bin/true"))
        assert manager.wait4("m", timeout=10) == {"m": "SUCCEED"}
    finally:
        manager.cleanup()
    monkeypatch.setenv("QCG_PM_ZMQ_ADDRESS", service.address.replace("tcp://", ""))
    manager = Manager()
    try:
        assert manager.address == service.address
        assert manager.status("m")["jobs"]["m"]["data"]["status"] == "SUCCEED"
    finally:
        manager.cleanup()
    with pytest.raises(ConnectionError, match="Not connected"):
        manager.resources()


def test_address_normalisation():
    assert Manager._parse_address("host") == "tcp://host:5555"
    assert Manager._parse_address("tcp://1.2.3.4") == "tcp://1.2.3.4:5555"
    assert Manager._parse_address("1.2.3.4:7000") == "tcp://1.2.3.4:7000"


def test_manager_with_nothing_listening_fails_within_its_timeout():
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="Failed to connect to tcp://127.0.0.1:1 "):
        Manager("tcp://127.0.0.1:1", cfg={"timeout": 0.3})
    assert time.monotonic() - started < 1.5


def test_a_killed_service_gives_an_error_within_the_timeout(tmp_path):
    proc = NetService(tmp_path, nodes="2")
    manager = Manager(proc.address, cfg={"timeout": 0.5, "poll_delay": 0.3})
    try:
        manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]))
        proc.kill()
        started = time.monotonic()
        with pytest.raises(ServiceTimeoutError, match="not running or not reachable"):
            manager.resources()
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(ConnectionError):  # a wait without timeout ends too
            manager.wait4("s")
        assert time.monotonic() - started < 3
    finally:
        manager.cleanup()
        proc.stop()
        for orphan in processes_under(tmp_path):  # tasks of the crashed service
            orphan.kill()


def test_local_service_killed_while_waiting_is_noticed_at_once(tmp_path):
    manager = LocalManager(["--nodes", "2"], cfg={"wd": str(tmp_path), "kill_grace": 1})
    try:
        manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]))
        # a crash (SIGKILL): no CANCELED event comes, the process is simply gone
        threading.Timer(0.3, os.kill, (manager.pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="has ended"):
            manager.wait4("s")
        assert time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="has ended"):
            manager.resources()
        assert time.monotonic() - started < 0.5
        with pytest.raises(ServiceError, match="exit code -9"):  # finish says what happened
            manager.finish()
    finally:
        manager.kill_manager_process()
        manager.cleanup()
        # a crashed service cannot stop its tasks (they run in their own sessions)
        for orphan in processes_under(tmp_path):
            orphan.kill()
    assert manager._process.returncode == -9


def test_kill_manager_process(tmp_path):
    manager = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path), "kill_grace": 2})
    manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]))
    manager.kill_manager_process()
    assert manager._process.returncode is not None
    with pytest.raises(ConnectionError, match="it was killed"):
        manager.status("s")
    manager.finish()


def test_finish_stops_the_service_and_closes(tmp_path):
    manager = LocalManager(["--nodes", "1"], cfg={"wd": str(tmp_path)})
    manager.submit(Jobs().add(name="s", exec="sleep", args=["30"]))
    started = time.monotonic()
    manager.finish()
    assert time.monotonic() - started < 2
    assert manager._process.returncode == 0
    with pytest.raises(ConnectionError, match="Not connected"):
        manager.list()
    manager.finish()  # twice is harmless


def test_polling_fallback_without_publisher(tmp_path):
    manager = LocalManager(["--nodes", "2", "--disable-pub"], cfg={"wd": str(tmp_path),
                                                                     "poll_delay": 0.2})
    try:
        assert manager.publisher_address is None
        manager.submit(Jobs().add(name="a", exec="/bin/true")
                       .add(name="b", exec="sleep", args=["0.2"]))
        assert manager.wait4(["a", "b"], timeout=10) == {"a": "SUCCEED", "b": "SUCCEED"}
        manager.wait4all(timeout_secs=10)
        found = {manager.wait4_any_job_finish(timeout_secs=5) for _ in range(2)}
        assert found == {("a", "SUCCEED"), ("b", "SUCCEED")}
        with pytest.raises(TimeoutElapsed):
            manager.wait4_any_job_finish(timeout_secs=0.2)
    finally:
        manager.finish()


def test_service_start_failure_is_a_clear_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(ServiceError, match="did not start") as info:
        LocalManager(["--nodes", "0:x"], cfg={"wd": str(tmp_path)})
    assert "nodes" in str(info.value).lower()
    assert time.monotonic() - started < 5


def test_manager_as_context_manager_finishes(service):
    with Manager(service.address) as manager:
        assert manager.resources()["total_cores"] == 4
    service.proc.wait(5)
    assert service.proc.returncode == 0


def test_invalid_reply_data_is_an_internal_error(local_manager, monkeypatch):
    monkeypatch.setattr(local_manager, "_send_and_validate_result", lambda *a, **k: {})
    with pytest.raises(InternalError):
        local_manager.submit(Jobs().add(name="z", exec="/bin/true"))
