"""The status publisher encodes only what someone subscribed to (real ZeroMQ on loopback).

Most tests drive a ``StatusPublisher`` on a real XPUB socket with real SUB sockets and
real registry ``Job`` objects; the last ones run ``qcgflow service --net`` and subscribe
with the client library. Waiting is bounded by deadlines on socket polls, never sleeps.
"""

import dataclasses
import json
import re
import time

import pytest
import zmq

from qcgflow.runtime import publisher as publisher_module
from qcgflow.runtime.client import ServiceClient
from qcgflow.runtime.eventloop import EventLoop
from qcgflow.runtime.jobs import FINAL_STATES, JobState
from qcgflow.runtime.protocol import parse_job
from qcgflow.runtime.publisher import StatusPublisher, could_match
from qcgflow.runtime.registry import Job
from support.services import NetService

SUBMIT_VARS = {"rcnt": "1", "uniq": "u", "sname": "local", "date": "d", "time": "t",
               "dateTime": "dt"}
DEADLINE = 5.0


# ----------------------------------------------------------------- helpers

def make_job(name="a", iteration=None) -> Job:
    desc = {"name": "placeholder", "execution": {"exec": "/bin/true"}}
    if iteration is not None:
        desc["iteration"] = iteration
    # The name is set afterwards: the encoder must handle any text, also names the
    # job-name rule refuses at submit (control characters).
    return Job(dataclasses.replace(parse_job(desc, dict(SUBMIT_VARS)), name=name), 0)


def reference_messages(manager, job, position, state):
    """What the original publisher sent: ``"<TOPIC> " + json.dumps(dict)`` per topic."""
    event = {"manager": manager, "job": job.name, "state": state.name}
    if position is None:
        topics = ("JST", "JFI") if state in FINAL_STATES else ("JST",)
    else:
        event["it"] = job.spec.iteration.start + position
        topics = ("IST", "IFI") if state in FINAL_STATES else ("IST",)
    return ["%s %s" % (topic, json.dumps(event)) for topic in topics]


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def publisher(context):
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    pub = StatusPublisher(socket, "mgr-1")
    pub.address = "tcp://127.0.0.1:%d" % port
    yield pub
    pub.close()


def subscriber(context, address, *prefixes):
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for prefix in prefixes:
        sub.setsockopt_string(zmq.SUBSCRIBE, prefix)
    sub.connect(address)
    return sub


def wait_wanted(pub, topic, expected=True):
    """Read subscriptions as they arrive until ``topic``'s wanted flag is ``expected``."""
    deadline = time.monotonic() + DEADLINE
    while pub.wanted(topic) != expected:
        left = deadline - time.monotonic()
        assert left > 0, "%s still %swanted after %.0f s" % (topic, "" if not expected else
                                                             "un", DEADLINE)
        pub.socket.poll(int(left * 1000) + 1, zmq.POLLIN)
        pub.read_subscriptions()


def receive(sub, count):
    """``count`` messages from ``sub`` (fails at the deadline)."""
    deadline = time.monotonic() + DEADLINE
    messages = []
    while len(messages) < count:
        left = deadline - time.monotonic()
        assert left > 0 and sub.poll(int(left * 1000) + 1), "got only %r" % messages
        messages.append(sub.recv_string())
    return messages


def emit_all(pub):
    """One event of each topic: an iteration and a job reach SUCCEED, then NOJ."""
    pub(make_job("it", {"start": 0, "stop": 2}), 1, JobState.SUCCEED)
    pub(make_job("j"), None, JobState.SUCCEED)
    pub.no_jobs()


# ----------------------------------------------------------------- message format

@pytest.mark.parametrize("name", ["a", 'quo"te', "back\\slash", "zażółć", "日本", "ctrl\x01"])
@pytest.mark.parametrize("position", [None, 0, 2])
@pytest.mark.parametrize("state", [JobState.EXECUTING, JobState.SUCCEED, JobState.FAILED])
def test_messages_are_the_bytes_of_the_original_encoding(context, publisher, name, position,
                                                         state):
    sub = subscriber(context, publisher.address, "")
    wait_wanted(publisher, "JST")
    job = make_job(name, {"start": 5, "stop": 9} if position is not None else None)
    publisher(job, position, state)
    expected = reference_messages("mgr-1", job, position, state)
    assert receive(sub, len(expected)) == expected


def test_no_jobs_message_is_the_original_encoding(context, publisher):
    sub = subscriber(context, publisher.address, "NOJ")
    wait_wanted(publisher, "NOJ")
    publisher.no_jobs()
    assert receive(sub, 1) == ["NOJ %s" % json.dumps({"manager": "mgr-1"})]


# ----------------------------------------------------------------- what is wanted

@pytest.mark.parametrize("prefix, topic, expected", [
    (b"", "JFI", True), (b"J", "JFI", True), (b"JF", "JFI", True), (b"JFI", "JFI", True),
    (b"JFI ", "JFI", True), (b'JFI {"manager"', "JFI", True), (b"JFI", "JST", False),
    (b"I", "JFI", False), (b"JFIX", "JFI", False), (b"NOJ", "IST", False),
    (b"IS", "IST", True), (b"\xff", "IST", False),
])
def test_a_prefix_wants_the_topics_it_could_match(prefix, topic, expected):
    assert could_match(prefix, topic) is expected


def test_nothing_is_wanted_without_subscribers(publisher):
    assert [publisher.wanted(topic) for topic in publisher_module.TOPICS] == [False] * 5


def test_a_subscriber_to_everything_gets_every_topic(context, publisher):
    sub = subscriber(context, publisher.address, "")
    wait_wanted(publisher, "NOJ")
    emit_all(publisher)
    topics = [message.split(" ", 1)[0] for message in receive(sub, 5)]
    assert sorted(topics) == ["IFI", "IST", "JFI", "JST", "NOJ"]


def test_a_jfi_subscriber_gets_jfi_only(context, publisher):
    sub = subscriber(context, publisher.address, "JFI")
    wait_wanted(publisher, "JFI")
    emit_all(publisher)
    publisher(make_job("last"), None, JobState.CANCELED)  # the sentinel: a second JFI
    assert [m.split(" ", 1)[0] for m in receive(sub, 2)] == ["JFI", "JFI"]


def test_unwanted_topics_are_not_encoded(context, publisher):
    sub = subscriber(context, publisher.address, "JFI")
    wait_wanted(publisher, "JFI")
    emit_all(publisher)
    assert {topic: publisher.sent[topic] for topic in ("IST", "IFI", "JST", "JFI", "NOJ")} \
        == {"IST": 0, "IFI": 0, "JST": 0, "JFI": 1, "NOJ": 0}
    sub.close()


def test_unwanted_events_never_reach_the_encoder(context, publisher, monkeypatch):
    def refuse(_):
        raise AssertionError("a name was encoded for an event nobody subscribed to")

    monkeypatch.setattr(publisher_module, "encode_basestring_ascii", refuse)
    emit_all(publisher)
    assert publisher.skipped == {"IST": 1, "IFI": 1, "JST": 1, "JFI": 1, "NOJ": 1}


def test_unsubscribing_makes_the_topic_unwanted(context, publisher):
    sub = subscriber(context, publisher.address, "JFI")
    wait_wanted(publisher, "JFI")
    sub.setsockopt_string(zmq.UNSUBSCRIBE, "JFI")
    wait_wanted(publisher, "JFI", expected=False)
    sub.close()


def test_a_disconnect_makes_the_topics_unwanted(context, publisher):
    sub = subscriber(context, publisher.address, "J")
    wait_wanted(publisher, "JST")
    sub.close()
    wait_wanted(publisher, "JST", expected=False)


def test_a_topic_stays_wanted_while_one_of_its_subscribers_remains(context, publisher):
    first = subscriber(context, publisher.address, "JFI", "NOJ")  # NOJ: only the first's
    second = subscriber(context, publisher.address, "JFI", "JST")  # JST: only the second's
    # XPUB passes on only the first subscription of a prefix, so the second's JFI is not
    # seen: its own JST says that its connection (and so its JFI filter) is in place
    wait_wanted(publisher, "NOJ")
    wait_wanted(publisher, "JST")
    publisher(make_job("probe"), None, JobState.SUCCEED)
    assert any(m.startswith("JFI ") for m in receive(second, 2))  # JST and JFI
    first.close()
    wait_wanted(publisher, "NOJ", expected=False)  # the first's disconnect has been read
    assert publisher.wanted("JFI")
    second.close()


def test_a_subscription_waiting_on_the_socket_is_read_before_skipping(context, publisher):
    sub = subscriber(context, publisher.address, "JFI")
    # the subscription is queued on the XPUB socket, not yet read by the publisher
    assert publisher.socket.poll(int(DEADLINE * 1000), zmq.POLLIN)
    assert not publisher.wanted("JFI")
    publisher(make_job("early"), None, JobState.SUCCEED)
    assert receive(sub, 1)[0].startswith("JFI ")


def test_the_event_loop_reads_subscriptions_as_they_arrive(context):
    socket = context.socket(zmq.XPUB)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    loop = EventLoop()
    pub = StatusPublisher(socket, "m", loop)
    sub = subscriber(context, "tcp://127.0.0.1:%d" % port, "IFI")
    deadline = time.monotonic() + DEADLINE

    def check():
        if pub.wanted("IFI") or time.monotonic() > deadline:
            loop.stop()
        else:
            loop.call_later(0.01, check)

    loop.call_soon(check)
    loop.run()
    pub.close()
    sub.close()
    assert pub.wanted("IFI")


def test_the_recheck_throttle_lasts_one_event_loop_callback(context):
    """A job ending in the callback after its submit reaches a client subscribed before it.

    (Upstream's ``wait4`` waits only for events once it saw the job unfinished: a skipped
    final event made it hang; issue 20.)
    """
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    loop = EventLoop()
    pub = StatusPublisher(socket, "m", loop)
    pub.recheck_interval = 3600.0  # the time throttle alone would never check again
    pub(make_job("before"), None, JobState.QUEUED)  # nobody subscribed yet: checked, skipped
    sub = subscriber(context, "tcp://127.0.0.1:%d" % port, "JFI")
    assert socket.poll(int(DEADLINE * 1000), zmq.POLLIN)  # the subscription waits, unread
    pub(make_job("same"), None, JobState.SUCCEED)  # same callback: throttled, skipped
    assert pub.skipped["JFI"] == 1

    def next_callback():
        pub(make_job("next"), None, JobState.SUCCEED)
        loop.stop()

    loop.call_soon(next_callback)
    loop.run()
    messages = receive(sub, 2)  # "same" replayed once the subscription was read, "next"
    pub.close()
    sub.close()
    assert [m.split('"job": ')[1].split(",")[0] for m in messages] == ['"same"', '"next"']


def _late_subscriber(context, publisher, *prefixes):
    sub = subscriber(context, publisher.address, *prefixes)
    for topic in {p[:3] for p in prefixes}:
        wait_wanted(publisher, topic)
    return sub


def test_a_late_subscriber_gets_the_final_events_it_missed(context, publisher):
    """A job that ended before the subscription was read still reaches it (once)."""
    publisher(make_job("early"), None, JobState.SUCCEED)
    publisher(make_job("it", {"start": 3, "stop": 5}), 1, JobState.FAILED)
    publisher.no_jobs()
    sub = _late_subscriber(context, publisher, "JFI", "IFI", "NOJ")
    messages = receive(sub, 2)
    assert sorted(m[:3] for m in messages) == ["IFI", "JFI"]
    assert any('"job": "it", "state": "FAILED", "it": 4}' in m for m in messages), messages


def test_no_jobs_is_not_replayed(context, publisher):
    publisher.no_jobs()
    sub = _late_subscriber(context, publisher, "NOJ", "JFI")
    publisher(make_job("probe"), None, JobState.SUCCEED)
    assert receive(sub, 1)[0].startswith("JFI ")
    assert not sub.poll(50)


def test_events_older_than_the_window_are_not_replayed(context, publisher, monkeypatch):
    import qcgflow.runtime.publisher as module
    publisher(make_job("old"), None, JobState.SUCCEED)
    monkeypatch.setattr(module, "REPLAY_WINDOW", 0.0)
    sub = _late_subscriber(context, publisher, "JFI")
    publisher(make_job("probe"), None, JobState.SUCCEED)
    assert '"job": "probe"' in receive(sub, 1)[0]


def test_close_unregisters_the_reader(context):
    socket = context.socket(zmq.XPUB)
    socket.bind_to_random_port("tcp://127.0.0.1")
    loop = EventLoop()
    pub = StatusPublisher(socket, "m", loop)
    pub.close()
    assert socket not in loop._readers


def test_a_plain_pub_socket_publishes_everything(context):
    socket = context.socket(zmq.PUB)
    socket.bind_to_random_port("tcp://127.0.0.1")
    pub = StatusPublisher(socket, "m")
    emit_all(pub)
    pub.close()
    assert pub.sent == {"IST": 1, "IFI": 1, "JST": 1, "JFI": 1, "NOJ": 1}


# ----------------------------------------------------------------- a real service

def test_a_service_sends_jfi_to_a_jfi_subscriber_and_encodes_no_ist(tmp_path):
    with NetService(tmp_path) as service, ServiceClient(service.ready["address"]) as client:
        stream = client.subscribe(("JFI",), wait=DEADLINE)
        client.request({"request": "submit", "jobs": [
            {"name": "loop", "iteration": {"stop": 3},
             "execution": {"exec": "/bin/true"}}]})
        event = stream.next(DEADLINE)
        stream.close()
    assert (event.topic, event.data["job"], event.data["state"]) \
        == ("JFI", "loop", "SUCCEED")
    # the publisher's closing summary: nothing but the one JFI encoded, the IST skipped
    assert re.search(r"sent IST=0 IFI=0 JST=0 JFI=1 NOJ=0; skipped IST=[1-9]", service.log())


def test_a_service_event_right_after_subscribing_is_delivered(tmp_path):
    with NetService(tmp_path) as service, ServiceClient(service.ready["address"]) as client:
        stream = client.subscribe(("IFI", "NOJ"), wait=DEADLINE)
        client.request({"request": "submit", "jobs": [
            {"name": "quick", "execution": {"exec": "/bin/true"}}]})
        first = stream.next(DEADLINE)
        stream.close()
    assert first is not None and first.topic == "NOJ"
