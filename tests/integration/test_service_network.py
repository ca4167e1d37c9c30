"""The network interface of the service: real ZeroMQ sockets on loopback.

The service is started with ``--net --ready-fd``; the tests talk to it with plain pyzmq
sockets (the client library has its own tests), so what is checked here is the wire.
"""

import json
import os
import stat
import time

import pytest
import zmq

from support.eventually import eventually
from support.services import NetService


@pytest.fixture
def service(tmp_path):
    with NetService(tmp_path) as svc:
        yield svc


def test_ready_line_names_owner_only_ipc_addresses(service):
    # issue 17: by default no other local user can connect: ipc sockets in a 0700 directory
    for key in ("address", "pub_address"):
        assert service.ready[key].startswith("ipc://"), service.ready
        directory = os.path.dirname(service.ready[key][len("ipc://"):])
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert os.stat(directory).st_uid == os.getuid()
    assert service.ready["keys_dir"] is None


def test_tcp_on_loopback_requires_curve(tmp_path):
    svc = NetService(tmp_path, "--net-address", "127.0.0.1")
    try:
        assert svc.ready["address"].startswith("tcp://127.0.0.1:")
        assert svc.ready["keys_dir"]
        plain = svc.socket(timeout_ms=1500)
        plain.send_string(json.dumps({"request": "resourcesInfo"}))
        with pytest.raises(zmq.Again):
            plain.recv()
        authenticated = svc.socket(keys=client_keys(svc.ready))
        assert svc.request({"request": "resourcesInfo"}, sock=authenticated)["code"] == 0
    finally:
        svc.stop()


def test_address_file_holds_the_request_address(service):
    path = service.aux_dir / "address"
    assert path.read_text().strip() == service.ready["address"]


def test_submit_and_status_over_the_socket(service):
    reply = service.request({"request": "submit", "jobs": [
        {"name": "a", "execution": {"exec": "/bin/true"}}]})
    assert reply == {"code": 0, "message": "1 jobs submitted",
                     "data": {"submitted": 1, "jobs": ["a"]}}
    service.wait_state("a", ["SUCCEED"])


def test_errors_come_back_as_replies(service):
    reply = service.request({"request": "jobStatus", "jobNames": ["nope"]})
    assert reply == {"code": -1, "message": "Job 'nope' doesn't exist"}


def test_malformed_json_gets_invalid_request(service):
    sock = service.socket()
    sock.send(b"{not json")
    assert json.loads(sock.recv()) == {"code": -1, "message": "Invalid request"}


def test_status_advertises_the_publisher(service):
    system = service.request({"request": "status"})["data"]["System"]
    assert system["StatusPublisher"] == service.ready["pub_address"]


def test_all_jobs_finished_option(service):
    reply = service.request({"request": "status", "options": {"allJobsFinished": True}})
    assert reply == {"code": 0, "data": {"AllJobsFinished": True}}


def test_publisher_sends_job_events_and_no_jobs(service):
    sub = service.context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    sub.connect(service.ready["pub_address"])
    # the subscription must be in place before the events: probe with submits until seen
    events = []
    for attempt in range(50):
        service.request({"request": "submit", "jobs": [
            {"name": "p%d" % attempt, "execution": {"exec": "/bin/true"}}]})
        try:
            events.append(sub.recv_string(zmq.NOBLOCK if attempt < 49 else 0))
            break
        except zmq.Again:
            time.sleep(0.02)
    while not events[-1].startswith("NOJ"):
        events.append(sub.recv_string())
    topics = [e.split(" ", 1)[0] for e in events]
    assert "JFI" in topics
    finished = [json.loads(e.split(" ", 1)[1]) for e in events if e.startswith("JFI")]
    assert finished[-1]["state"] == "SUCCEED"


def test_tasks_get_the_service_address(service, tmp_path):
    out = tmp_path / "addr.txt"
    service.request({"request": "submit", "jobs": [{"name": "e", "execution": {
        "script": "echo $QCG_PM_ZMQ_ADDRESS > %s" % out}}]})
    eventually(lambda: out.exists() and out.read_text().strip(), message="the task's output")
    assert out.read_text().strip() == service.ready["address"]


def test_finish_stops_the_service_with_status_zero(service):
    assert service.finish() == 0


def test_finish_kills_running_tasks_promptly(service):
    service.request({"request": "submit", "jobs": [
        {"name": "s", "execution": {"exec": "/bin/sleep", "args": ["60"]}}]})
    service.wait_state("s", ["EXECUTING"])
    started = time.monotonic()
    assert service.finish() == 0
    assert time.monotonic() - started < 5


def test_cancel_of_a_running_job_over_the_socket(service):
    service.request({"request": "submit", "jobs": [
        {"name": "s", "execution": {"exec": "/bin/sleep", "args": ["60"]}},
        {"name": "d", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["s"]}}]})
    service.wait_state("s", ["EXECUTING"])
    assert service.request({"request": "cancelJob", "jobNames": ["s"]})["code"] == 0
    states = eventually(lambda: (lambda jobs: jobs if jobs["s"]["data"]["status"] == "CANCELED"
                                 and jobs["d"]["data"]["status"] == "OMITTED" else None)(
        service.request({"request": "jobStatus", "jobNames": ["s", "d"]})["data"]["jobs"]),
        message="s CANCELED and d OMITTED")
    assert states["d"]["data"]["messages"] == "dependency 's' CANCELED"


def test_removing_an_executing_job_is_refused(service):
    service.request({"request": "submit", "jobs": [
        {"name": "s", "execution": {"exec": "/bin/sleep", "args": ["60"]}}]})
    service.wait_state("s", ["EXECUTING"])
    reply = service.request({"request": "removeJob", "jobNames": ["s"]})
    assert reply["code"] == -1 and "EXECUTING" in reply["message"]


# ------------------------------------------------------------------ off loopback: CURVE

@pytest.fixture
def exposed(tmp_path):
    """A service bound to all interfaces (so authentication is required); the tests still
    only connect through 127.0.0.1."""
    with NetService(tmp_path, "--net-address", "0.0.0.0") as svc:
        yield svc


def local(address):
    return "tcp://127.0.0.1:" + address.rsplit(":", 1)[1]


def read_key(keys_dir, name):
    with open(os.path.join(keys_dir, name), "rb") as handle:
        return handle.read().strip()


def client_keys(ready):
    keys = ready["keys_dir"]
    return (read_key(keys, "server.key"), read_key(keys, "client.key"),
            read_key(keys, "client.key_secret"))


def test_exposed_service_writes_owner_only_keys(exposed):
    keys_dir = exposed.ready["keys_dir"]
    assert stat.S_IMODE(os.stat(keys_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(keys_dir, "client.key_secret")).st_mode) == 0o600


def test_authenticated_client_is_served(exposed):
    sock = exposed.socket(local(exposed.ready["address"]), keys=client_keys(exposed.ready))
    reply = exposed.request({"request": "resourcesInfo"}, sock=sock)
    assert reply["data"]["total_cores"] == 2


def test_unauthenticated_client_is_refused_and_logged(exposed):
    sock = exposed.socket(local(exposed.ready["address"]), timeout_ms=1500)
    sock.send_string(json.dumps({"request": "resourcesInfo"}))
    with pytest.raises(zmq.Again):
        sock.recv()
    assert "refused an unauthenticated connection" in eventually(
        lambda: "refused" in exposed.log() and exposed.log(), message="the refusal logged")


def test_client_with_wrong_keys_is_refused(exposed):
    server_key = read_key(exposed.ready["keys_dir"], "server.key")
    public, secret = zmq.curve_keypair()
    sock = exposed.socket(local(exposed.ready["address"]), keys=(server_key, public, secret),
                          timeout_ms=1500)
    sock.send_string(json.dumps({"request": "resourcesInfo"}))
    with pytest.raises(zmq.Again):
        sock.recv()


def test_service_never_writes_its_environment(tmp_path):
    env = dict(os.environ, QCGFLOW_TEST_SECRET="s3cr3t-value-7f1c")
    svc = NetService(tmp_path, env=env)
    svc.request({"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "/bin/true"}}]})
    eventually(lambda: svc.request({"request": "status", "options": {"allJobsFinished": True}})
               ["data"]["AllJobsFinished"], message="all jobs finished")
    assert svc.finish() == 0
    leaked = [p for p in svc.wd.rglob("*") if p.is_file()
              and b"s3cr3t-value-7f1c" in p.read_bytes()]
    assert leaked == []
