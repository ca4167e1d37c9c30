"""Issue 17, class 2: one peer must not stall everyone.

A real service; bad peers misbehave on its request socket (raw bytes on the socket file,
half-sent ZeroMQ messages held open, multipart requests, peers that never read their
replies, requests nested far too deep, seeded random mutations of valid requests). After
or during each, a good client must be answered promptly, every bad request that can be
answered gets exactly one one-line reply, and service.log holds no traceback.

Before the fix (a REP socket): some raw blobs froze the socket while their connection
stayed open, a submit nested ~1000 levels deep silenced it for good, a multipart
message was run as several requests with one reply.
"""

import json
import random
import socket
import struct

import pytest
import zmq

from adversarial_harness import good_client_served
from support.eventually import eventually
from support.services import NetService

SEED = 17


def _raw_peer(address: str) -> socket.socket:
    if address.startswith("ipc://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address[len("ipc://"):])
    else:
        host, port = address[len("tcp://"):].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
    return sock


def _zmtp3_greeting(mechanism=b"NULL") -> bytes:
    return (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00")
            + b"\x00" + b"\x00" * 31)


def _ready_command(socket_type=b"REQ") -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return b"\x04" + bytes([len(body)]) + body


def crafted_blobs():
    """Hand-made prefixes: valid handshakes followed by unfinished messages."""
    hello = _zmtp3_greeting() + _ready_command()
    return [
        ("zmtp3_more_flag_then_silence", hello + b"\x01\x00"),  # empty frame, MORE, no end
        ("zmtp3_half_body", hello + b"\x00\x40" + b"{" * 10),  # 64-byte frame, 10 sent
        ("zmtp3_long_frame_declared", hello + b"\x02" + struct.pack(">Q", 30 << 20) + b"x"),
        ("zmtp3_many_more_frames", hello + b"\x01\x00" + b"\x01\x05hello" * 500),
        ("zmtp3_greeting_only", _zmtp3_greeting()),
        ("zmtp3_half_greeting", _zmtp3_greeting()[:20]),
        ("zmtp3_curve_mechanism", _zmtp3_greeting(b"CURVE") + b"\x04\x20" + b"\x00" * 10),
        ("zmtp3_router_type", _zmtp3_greeting() + _ready_command(b"DEALER") + b"\x01\x00"),
        ("zmtp1_more_frames", b"\x01\x00" + b"\x06\x01hello" * 50),
        ("zmtp1_big_length", b"\xff" + struct.pack(">Q", 1 << 40)),
        ("nothing_at_all", b""),
    ]


def random_blobs(count: int, size: int = 4096):
    rng = random.Random(SEED)
    return [("random_%d" % i, bytes(rng.getrandbits(8) for _ in range(size)))
            for i in range(count)]


BLOBS = crafted_blobs() + random_blobs(40)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One service for the raw-peer cases (each case leaves it as it found it)."""
    with NetService(tmp_path_factory.mktemp("stall"), service_id="stall") as svc:
        yield svc


@pytest.mark.parametrize("name,blob", BLOBS, ids=[n for n, _ in BLOBS])
def test_raw_peer_holding_the_connection_stalls_nobody(shared, name, blob):
    peers = [_raw_peer(shared.address) for _ in range(3)]
    try:
        for peer in peers:
            if blob:
                peer.sendall(blob)
        assert good_client_served(shared, timeout=3.0), "stalled by %s" % name
        assert good_client_served(shared, timeout=3.0), "stalled by %s" % name
    finally:
        for peer in peers:
            peer.close()
    assert shared.alive()


def test_raw_and_oversized_peers_on_the_publisher_stall_nobody(net_service):
    """Garbage, half-sent messages and a 1 MiB "subscription" on the status socket: a good
    subscriber still gets its events, the request socket still answers."""
    service = net_service()
    pub = service.ready["pub_address"]
    peers = [_raw_peer(pub) for _ in range(len(BLOBS))]
    context = zmq.Context()
    try:
        for peer, (_, blob) in zip(peers, BLOBS):
            if blob:
                peer.sendall(blob)
        # Raw ZMTP: libzmq's own XSUB/SUB would crash (a recursive trie) on such a prefix.
        fat = _raw_peer(pub)
        peers.append(fat)
        subscription = b"\x01" + b"J" * (1 << 20)
        try:
            fat.sendall(_zmtp3_greeting() + _ready_command(b"SUB") + b"\x02"
                        + struct.pack(">Q", len(subscription)) + subscription)
        except OSError:
            pass  # dropped by the service (ZMQ_MAXMSGSIZE) while sending: that is the point
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"JFI")
        sub.connect(pub)
        received = []

        def got_event():
            if not sub.poll(50):
                service.request({"request": "submit", "jobs": [
                    {"name": "p%d" % len(received), "execution": {"exec": "/bin/true"}}]})
                received.append(None)
                return False
            return sub.recv().startswith(b"JFI")

        eventually(got_event, 20, 0.05, "a JFI event on a publisher with bad peers")
        assert good_client_served(service)
    finally:
        context.destroy(linger=0)
        for peer in peers:
            peer.close()


def test_half_sent_zmq_message_held_open(net_service):
    """A genuine ZeroMQ peer sends the first frames of a message and never the last."""
    service = net_service()
    context = zmq.Context()
    try:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(service.address)
        dealer.send(b"", zmq.SNDMORE)
        dealer.send(b'{"request": "listJobs"}', zmq.SNDMORE)  # and nothing more
        for _ in range(5):
            assert good_client_served(service, timeout=3.0)
    finally:
        context.destroy(linger=0)


def test_multipart_request_gets_one_reply_and_the_socket_goes_on(net_service):
    service = net_service()
    sock = service.socket()
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.send_multipart([b'{"request": "listJobs"}', b'{"request": "finish"}'])
    reply = json.loads(sock.recv())
    assert reply == {"code": -1, "message": "Invalid request: one message part expected, got 2"}
    assert not sock.poll(300)  # one reply, not two
    sock.send(b'{"request": "resourcesInfo"}')  # the REQ socket's state is intact
    assert json.loads(sock.recv())["code"] == 0
    sock.close(linger=0)
    assert service.alive()  # the "finish" part was not run
    log = service.log()
    assert "Traceback" not in log and "Operation cannot be accomplished" not in log


def test_dealer_without_delimiter_is_served(net_service):
    service = net_service()
    context = zmq.Context()
    try:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(service.address)
        dealer.send(b'{"request": "resourcesInfo"}')
        assert dealer.poll(5000)
        frames = dealer.recv_multipart()
        assert len(frames) == 1 and json.loads(frames[0])["code"] == 0
    finally:
        context.destroy(linger=0)


def test_peer_that_never_reads_replies_stalls_nobody(net_service):
    service = net_service()
    context = zmq.Context()
    try:
        flood = context.socket(zmq.DEALER)
        flood.setsockopt(zmq.LINGER, 0)
        flood.setsockopt(zmq.SNDHWM, 0)
        flood.setsockopt(zmq.RCVHWM, 1)
        flood.connect(service.address)
        big = json.dumps({"request": "status"}).encode()
        for _ in range(20000):
            flood.send_multipart([b"", big])
        for _ in range(5):
            assert good_client_served(service, timeout=10.0)
    finally:
        context.destroy(linger=0)


def _nested(kind: str, depth: int) -> str:
    """JSON text of a value nested ``depth`` containers deep (json.dumps cannot write
    what is deeper than the recursion limit; the service must cope with it anyway)."""
    if kind == "list":
        return "[" * depth + '"x"' + "]" * depth
    return '{"k": ' * depth + '"x"' + "}" * depth


def _submit(job_tail: str) -> str:
    return ('{"request": "submit", "jobs": [{"name": "d", "execution": {"exec": "/bin/true"}'
            + job_tail + "}]}")


def _deep_cases():
    cases = []
    for depth in (101, 950, 1000, 5000, 50_000):
        for kind in ("list", "dict"):
            cases.append(("attributes_%s_%d" % (kind, depth),
                          _submit(', "attributes": {"a": %s}' % _nested(kind, depth))))
        cases.append(("iteration_values_%d" % depth,
                      _submit(', "iteration": {"values": [%s]}' % _nested("list", depth))))
    cases += [
        ("env_value_deep", '{"request": "submit", "jobs": [{"name": "d", "execution": '
                           '{"exec": "/bin/true", "env": {"A": %s}}}]}' % _nested("dict", 2000)),
        ("job_names_deep", '{"request": "jobStatus", "jobNames": [%s]}' % _nested("list", 3000)),
        ("options_deep", '{"request": "status", "options": %s}' % _nested("dict", 3000)),
        ("top_level_extra_key_deep", '{"request": "listJobs", "x": %s}' % _nested("list", 3000)),
    ]
    return cases


DEEP = _deep_cases()


@pytest.mark.parametrize("name,text", DEEP, ids=[n for n, _ in DEEP])
def test_deep_requests_get_one_line_errors(shared, name, text):
    reply = shared.raw(text.encode(), timeout=10)
    assert reply is not None, "no reply to %s" % name
    assert reply["code"] == -1
    assert reply["message"].startswith("Invalid request"), reply
    assert "\n" not in reply["message"]
    assert "deeper than 100 levels" in reply["message"] or reply["message"] == "Invalid request"
    assert good_client_served(shared)


def test_depth_limit_leaves_real_descriptions_alone(shared):
    """100 levels is the limit: a description nested 60 deep in attributes is accepted."""
    text = _submit(', "attributes": {"a": %s}' % _nested("dict", 60)).replace('"d"', '"deep_ok"')
    assert shared.raw(text.encode())["code"] == 0
    assert shared.wait_state("deep_ok") == "SUCCEED"


def test_deep_request_in_a_requests_file(tmp_path):
    """The file interface shares the handler: the same one-line error, the rest runs.
    (A file nested deeper than the JSON reader goes is refused whole, in one line.)"""
    from support.services import run_service
    deep = _submit(', "attributes": {"a": %s}' % _nested("list", 150))
    good = '{"request": "submit", "jobs": [{"name": "ok", "execution": {"exec": "/bin/true"}}]}'
    result = run_service(tmp_path, "[%s, %s]" % (deep, good))
    assert result.returncode == 4, result.describe()  # 4: a request was refused
    assert result.reply(1)["message"].startswith("Invalid request: nested deeper than 100")
    assert result.state("ok") == "SUCCEED"
    assert "Traceback" not in result.service_log + result.stderr


# ----------------------------------------------------------------- seeded JSON fuzzing

_SCALARS = [None, True, False, 0, -1, 1, 2 ** 64, 1.5e308, float("nan"), "", "x", "$", "${it}",
            "\u202e", "\ud800", "a" * 5000, "\x00", "../..", "-rf"]


def _mutate(rng: random.Random, value, depth=0):
    """A random variation of ``value``: replaced, dropped keys, added keys, re-typed."""
    roll = rng.random()
    if roll < 0.15 or depth > 6:
        return rng.choice(_SCALARS + [[], {}, [1, "a"], {"k": "v"}])
    if isinstance(value, dict):
        out = {k: (_mutate(rng, v, depth + 1) if rng.random() < 0.4 else v)
               for k, v in value.items() if rng.random() > 0.1}
        if rng.random() < 0.2:
            out[rng.choice(["name", "exec", "numCores", "after", "values", "stop", "x"])] = \
                rng.choice(_SCALARS)
        return out
    if isinstance(value, list):
        out = [(_mutate(rng, v, depth + 1) if rng.random() < 0.4 else v) for v in value]
        if rng.random() < 0.2:
            out.append(rng.choice(_SCALARS))
        return out
    return value if roll < 0.6 else rng.choice(_SCALARS)


def _templates(i: int):
    job = {"name": "fz%d" % i, "execution": {"exec": "/bin/true", "args": ["a"],
                                              "env": {"A": "1"}, "stdout": "fz.out"},
           "resources": {"numCores": {"min": 1, "max": 2}}, "iteration": {"stop": 2},
           "dependencies": {"after": ["fz0"]}, "attributes": {"a": [1, {"b": 2}]}}
    return [
        {"request": "submit", "jobs": [job]},
        {"request": "jobStatus", "jobNames": ["fz0", "fz1"]},
        {"request": "jobInfo", "jobNames": ["fz0"], "params": {"withChilds": True}},
        {"request": "cancelJob", "jobNames": ["nope"]},
        {"request": "removeJob", "jobNames": ["nope"]},
        {"request": "listJobs"}, {"request": "resourcesInfo"},
        {"request": "status", "options": {"allJobsFinished": True}},
        {"request": "control", "command": "nope"},
    ]


FUZZ_CASES = 300


def test_seeded_json_fuzz_always_gets_one_reply(shared):
    rng = random.Random(SEED)
    internal, silent = [], []
    for i in range(FUZZ_CASES):
        data = _mutate(rng, rng.choice(_templates(i)))
        if isinstance(data, dict) and data.get("request") in ("finish", "control"):
            data["request"] = "listJobs"  # never stop the shared service on purpose
        if isinstance(data, dict) and isinstance(data.get("jobs"), list):
            for job in data["jobs"]:  # keep the jobs short and few
                if isinstance(job, dict) and isinstance(job.get("iteration"), dict):
                    job["iteration"] = {"stop": 2}
        payload = json.dumps(data, allow_nan=True).encode("utf-8", "surrogatepass")
        reply = shared.raw(payload, timeout=10)
        if reply is None:
            silent.append(i)
            continue
        assert isinstance(reply, dict) and reply.get("code") in (0, -1), (i, reply)
        if reply["code"] == -1:
            assert "\n" not in reply["message"], (i, reply)
            if reply["message"].startswith("Internal error"):
                internal.append((i, payload[:300]))
    assert not silent, "no reply to cases %s" % silent
    assert not internal, "internal errors (bugs) for: %s" % internal
    assert good_client_served(shared)
    assert "Traceback" not in shared.log()


def test_job_info_with_childs_of_a_huge_sweep_is_refused_at_once(net_service):
    """Listing 1,000,000 children took 5 s (42 MB) with everybody else waiting.

    150,000 iterations (over the 100,000 limit): at ``finish`` the canceled blocker omits
    ``big``, and omitting a whole iterative job ends each iteration (as a wait on ``big:3``
    must end): ~50 us each, a known O(N) stall shared with ``cancelJob`` (docs/security.md).
    """
    service = net_service()
    reply = service.request({"request": "submit", "jobs": [
        {"name": "blocker", "execution": {"exec": "/bin/sleep", "args": ["60"]},
         "resources": {"numCores": 2}},
        {"name": "big", "execution": {"exec": "/bin/true"}, "iteration": {"stop": 150_000},
         "dependencies": {"after": ["blocker"]}},
        {"name": "small", "execution": {"exec": "/bin/true"}, "iteration": {"stop": 3},
         "dependencies": {"after": ["blocker"]}}]})
    assert reply["code"] == 0, reply
    reply = service.request({"request": "jobInfo", "jobNames": ["big", "small"],
                             "params": {"withChilds": True}}, timeout=2.0)
    assert reply["code"] == -1 and "\n" not in reply["message"]
    assert "withChilds would list 150003 iterations" in reply["message"], reply
    small = service.request({"request": "jobInfo", "jobNames": ["small"],
                             "params": {"withChilds": True}}, timeout=2.0)
    assert [c["iteration"] for c in small["data"]["jobs"]["small"]["data"]["childs"]] == [0, 1, 2]
    counts = service.request({"request": "jobInfo", "jobNames": ["big"]}, timeout=2.0)
    assert counts["data"]["jobs"]["big"]["data"]["iterations"]["total"] == 150_000
    assert service.finish() == 0  # kills the blocker; leaves nothing behind


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"op": "register", "node": ' + b"[" * 500 + b"]" * 500 + b"}",
                                 b'{"op": 5}', b"\xff\xfe", b"[]"])
def test_governor_endpoint_decoder_refuses_what_any_peer_may_send(raw):
    """The governor's manager endpoint (token checked after decoding) is reachable by every
    local user on loopback: a deep or odd message is dropped, never raised."""
    from qcgflow.runtime.governor.messages import decode
    assert decode(raw) is None
