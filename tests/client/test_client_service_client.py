"""qcgflow.runtime.client: bounded requests, errors, event streams, CURVE keys."""

import json
import os
import threading
import time

import pytest
import zmq

from client_harness import exposed_address
from qcgflow.runtime.client import client as c
from support.eventually import eventually
from support.services import NetService


def submit_request(*jobs):
    return {"request": "submit", "jobs": list(jobs)}


def job(name, exe="/bin/true", args=(), **extra):
    description = {"name": name, "execution": {"exec": exe, "args": list(args)}}
    description.update(extra)
    return description


# --------------------------------------------------------------------------- requests

def test_request_returns_the_reply_data(service):
    with c.ServiceClient(service.address, timeout=5) as client:
        resources = client.request({"request": "resourcesInfo"})
        assert resources == {"total_nodes": 1, "total_cores": 4, "used_cores": 0,
                             "free_cores": 4}
        system = client.request({"request": "status"})["System"]
        assert system["Zmqaddress"] == service.address
        assert system["StatusPublisher"] == service.pub_address
        reply = client.request_reply(submit_request(job("a")))
        assert reply["code"] == 0 and reply["data"]["jobs"] == ["a"]
    assert client.closed
    with pytest.raises(c.ServiceUnavailable, match="closed"):
        client.request({"request": "status"})


def test_service_error_carries_the_service_message_and_the_client_goes_on(service):
    with c.ServiceClient(service.address) as client:
        with pytest.raises(c.ServiceError) as info:
            client.request({"request": "bogus"})
        assert "Unknown request name: bogus" in str(info.value)
        assert info.value.code != 0 and info.value.request == {"request": "bogus"}
        with pytest.raises(c.ServiceError, match="Job 'nope' doesn't exist"):
            client.request({"request": "jobStatus", "jobNames": ["nope"]})
        assert client.request({"request": "resourcesInfo"})["total_cores"] == 4
        raw = client.exchange({"request": "bogus"})  # exchange does not check the code
        assert raw["code"] != 0


def test_nothing_listening_gives_a_timeout_within_the_timeout():
    with zmq.Context() as ctx:  # find a free port, then leave it unbound
        probe = ctx.socket(zmq.REP)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(linger=0)
    with c.ServiceClient("tcp://127.0.0.1:%d" % port, timeout=0.3) as client:
        for _ in range(2):  # the stuck REQ socket is replaced: the second call times out too
            started = time.monotonic()
            with pytest.raises(c.ServiceTimeout, match="not running or not reachable"):
                client.request({"request": "status"})
            assert time.monotonic() - started < 1.0


def test_a_killed_service_gives_an_error_within_the_timeout(service):
    with c.ServiceClient(service.address, timeout=0.5) as client:
        assert client.request({"request": "status"})
        service.kill()
        started = time.monotonic()
        with pytest.raises(c.ServiceTimeout):
            client.request({"request": "status"})
        assert time.monotonic() - started < 1.5


def test_liveness_callback_ends_the_wait_at_once(service):
    dead = []
    with c.ServiceClient(service.address, timeout=30,
                         liveness=lambda: dead[0] if dead else None) as client:
        assert client.request({"request": "status"})
        service.kill()
        dead.append("service process gone")
        started = time.monotonic()
        with pytest.raises(c.ServiceUnavailable, match="service process gone"):
            client.request({"request": "status"})
        assert time.monotonic() - started < 1.0


def test_after_a_timeout_a_fresh_socket_gets_the_next_reply():
    """A REQ socket whose request went unanswered is stuck; the client replaces it."""
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    late = threading.Event()

    def slow_then_fast():
        rep.recv()
        late.wait(5)  # answer the first request only after the client gave up
        rep.send(json.dumps({"code": 0, "data": {"n": 1}}).encode())
        rep.recv()
        rep.send(json.dumps({"code": 0, "data": {"n": 2}}).encode())

    thread = threading.Thread(target=slow_then_fast)
    thread.start()
    try:
        with c.ServiceClient("tcp://127.0.0.1:%d" % port, timeout=0.2) as client:
            with pytest.raises(c.ServiceTimeout):
                client.request({"request": "status"})
            late.set()
            assert client.request({"request": "status"}, timeout=5) == {"n": 2}
    finally:
        late.set()
        thread.join(5)
        rep.close(linger=0)
        ctx.term()


def test_malformed_reply_is_a_protocol_error():
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        rep.recv()
        rep.send(b"not json")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with c.ServiceClient("tcp://127.0.0.1:%d" % port, timeout=5) as client:
            with pytest.raises(c.ProtocolError, match="not JSON"):
                client.request({"request": "status"})
    finally:
        thread.join(5)
        rep.close(linger=0)
        ctx.term()


def test_timeout_must_be_positive():
    with pytest.raises(ValueError):
        c.ServiceClient("tcp://127.0.0.1:5555", timeout=0)


# --------------------------------------------------------------------------- events

def test_subscribe_delivers_job_and_iteration_events(service):
    with c.ServiceClient(service.address) as client:
        stream = client.subscribe(("JFI", "IFI", "NOJ"))  # publisher asked via status
        assert stream.connected
        client.request(submit_request(job("a"), job("b", "/bin/echo", ["${it}"],
                                                     iteration={"start": 0, "stop": 2})))
        seen = {}

        def all_seen():
            event = stream.next(1.0)
            if event is not None:
                assert event.topic in ("JFI", "IFI", "NOJ")
                seen[event.name if event.topic != "NOJ" else "NOJ"] = event
            return "NOJ" in seen and len(seen) >= 4

        eventually(all_seen, 10, 0, lambda: "a, b, b:0, b:1 and NOJ (seen: %s)" % sorted(seen))
        assert {"a", "b", "b:0", "b:1"} <= set(seen)
        assert seen["b:1"].iteration == 1 and seen["b:1"].job == "b"
        assert seen["b:1"].finished and seen["a"].state == "SUCCEED"
        assert not seen["NOJ"].finished and seen["NOJ"].name is None
        assert stream.next(0.05) is None  # nothing more: a bounded wait returns None


def test_topic_prefix_filters_and_drain(service):
    with c.ServiceClient(service.address) as client:
        stream = client.subscribe("JST", address=service.pub_address)
        client.request(submit_request(job("a")))
        eventually(lambda: client.request({"request": "status", "options": {
            "allJobsFinished": True}})["AllJobsFinished"], 10, message="job a")
        events = []

        def succeeded():
            event = stream.next(0.5)
            if event is not None:
                events.append(event)
            return any(e.state == "SUCCEED" for e in events)

        eventually(succeeded, 5, 0, "a JST event of a's SUCCEED")
        events += stream.drain()
        assert {e.topic for e in events} == {"JST"}
        assert [e.state for e in events][-1] == "SUCCEED"
        assert stream.drain() == []


def test_wakeup_interrupts_a_waiting_next(service):
    with c.ServiceClient(service.address) as client:
        stream = client.subscribe("JFI", address=service.pub_address)
        timer = threading.Timer(0.1, stream.wakeup)
        started = time.monotonic()
        timer.start()
        assert stream.next(10) is None
        assert time.monotonic() - started < 2
        timer.join()
        stream.close()
        assert stream.closed
        stream.wakeup()  # harmless after close
        with pytest.raises(c.ServiceUnavailable):
            stream.next(0)


def test_subscribe_without_a_publisher_is_refused(tmp_path):
    proc = NetService(tmp_path, "--disable-pub", nodes="1")
    try:
        assert proc.pub_address is None
        with c.ServiceClient(proc.address) as client:
            with pytest.raises(c.ServiceUnavailable, match="no status events"):
                client.subscribe()
    finally:
        proc.stop()


def test_event_decoding():
    event = c.Event.decode('IFI {"manager": "m", "job": "x", "state": "FAILED", "it": 3}')
    assert (event.topic, event.name, event.state, event.finished) == ("IFI", "x:3", "FAILED",
                                                                      True)
    for bad in ("XYZ {}", "JFI [1]", "JFI {not json"):
        with pytest.raises(c.ProtocolError):
            c.Event.decode(bad)


# --------------------------------------------------------------------------- security

@pytest.mark.parametrize("address,expected", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("tcp://192.0.2.7:5555", False),
    ("tcp://example.org:5555", False), ("nonsense", False)])
def test_is_loopback(address, expected):
    assert c.is_loopback(address) is expected


def test_non_loopback_address_without_keys_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(c.KEYS_DIR_ENV, raising=False)
    with pytest.raises(c.ServiceUnavailable) as info:
        c.ServiceClient("tcp://192.0.2.7:5555")
    text = str(info.value)
    assert "CURVE" in text and "keys" in text and "client.key_secret" in text
    assert c.KEYS_DIR_ENV in text


def test_missing_key_file_is_named(tmp_path):
    (tmp_path / "server.key").write_text(zmq.curve_keypair()[0].decode() + "\n")
    with pytest.raises(c.ServiceUnavailable, match="client.key"):
        c.ServiceClient("tcp://192.0.2.7:5555", keys_dir=str(tmp_path))


def test_certificate_format_keys_are_read(tmp_path):
    public, secret = zmq.curve_keypair()
    (tmp_path / "server.key").write_text(public.decode())
    (tmp_path / "client.key").write_text('metadata\ncurve\n    public-key = "%s"\n'
                                          % public.decode())
    (tmp_path / "client.key_secret").write_text(
        'curve\n    public-key = "%s"\n    secret-key = "%s"\n' % (public.decode(),
                                                                  secret.decode()))
    keys = c.load_curve_keys(str(tmp_path))
    assert keys.client_secret == secret and keys.client_public == public



def test_curve_service_needs_the_right_keys(tmp_path, monkeypatch):
    monkeypatch.delenv(c.KEYS_DIR_ENV, raising=False)
    proc = NetService(tmp_path, "--net-address", exposed_address(), nodes="1")
    try:
        keys_dir = proc.ready["keys_dir"]
        assert keys_dir and oct(os.stat(keys_dir).st_mode & 0o777) == "0o700"
        with c.ServiceClient(proc.address, keys_dir=keys_dir) as client:
            assert client.secure
            stream = client.subscribe("JFI")
            assert stream.connected
            client.request(submit_request(job("a")))
            event = stream.next(10)
            assert event is not None and event.name == "a"
        monkeypatch.setenv(c.KEYS_DIR_ENV, keys_dir)  # the environment variable works too
        with c.ServiceClient(proc.address) as client:
            assert client.request({"request": "resourcesInfo"})["total_cores"] == 1
        with pytest.raises(c.ServiceUnavailable, match="not a loopback address"):
            monkeypatch.delenv(c.KEYS_DIR_ENV)
            c.ServiceClient(proc.address)
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        other_public, other_secret = zmq.curve_keypair()
        (wrong / "server.key").write_text(open(os.path.join(keys_dir, "server.key")).read())
        (wrong / "client.key").write_text(other_public.decode())
        (wrong / "client.key_secret").write_text(other_secret.decode())
        started = time.monotonic()
        with c.ServiceClient(proc.address, keys_dir=str(wrong), timeout=0.5) as client:
            with pytest.raises(c.ServiceTimeout, match="CURVE keys"):
                client.request({"request": "status"})
        assert time.monotonic() - started < 2
    finally:
        proc.stop()
