"""Bad input on the network interface: raw bytes on a real REQ socket (issue 8, item 5).

One service for the module. ``before`` (a finished job) and ``runner`` (a job executing
the whole time) are accepted first; every case then sends its bad message on a fresh REQ
socket and checks (a) the one-line error reply, (b) that the service still answers and
both jobs are intact, (c) at the end, no traceback anywhere and a later job succeeds.

Deliberate choices: a message that is not JSON (or not UTF-8, or nested deeper than the
decoder goes) gets upstream's exact ``Invalid request``; a message over
``protocol.MAX_REQUEST_BYTES`` (32 MiB) is dropped by ZeroMQ before it is buffered, so
its sender gets no reply, and our client refuses to send one.
"""

import json
import time

import psutil
import pytest

from qcgflow.runtime.client import ClientError, ServiceClient
from qcgflow.runtime.protocol import MAX_ITERATIONS, MAX_REQUEST_BYTES

from badinput_harness import one_line
from support.services import NetService


def job(name, exec_="true", **extra):
    desc = {"name": name, "execution": {"exec": exec_}}
    desc.update(extra)
    return desc


def submit(*jobs):
    return json.dumps({"request": "submit", "jobs": list(jobs)}).encode()


# (id, raw message, substring of the one-line error reply)
CASES = [
    ("malformed_json", b'{"request": "listJobs"', "Invalid request"),
    ("invalid_utf8", b'{"request": "listJobs\xff\xfe"}', "Invalid request"),
    ("empty_message", b"", "Invalid request"),
    ("nested_too_deep", b"[" * 200_000 + b"]" * 200_000, "Invalid request"),
    ("integer_too_long", b'{"request": ' + b"9" * 5000 + b"}", "Invalid request"),
    ("top_level_list", b'[{"request": "listJobs"}]', "Invalid request"),
    ("request_name_not_text", b'{"request": 5}', "Invalid request"),
    ("unknown_request", b'{"request": "reboot"}', "Unknown request name: reboot"),
    ("job_names_not_text", b'{"request": "jobStatus", "jobNames": [1]}',
     "Wrong jobStatus request - job names must be strings"),
    ("job_names_missing", b'{"request": "cancelJob"}',
     "Wrong cancel job request - missing job names"),
    ("jobs_not_a_list", b'{"request": "submit", "jobs": {"name": "x"}}',
     "Wrong submit request - missing jobs data (a non-empty list of job descriptions is "
     "needed, not a dictionary)"),
    ("unknown_job_key", submit(job("x", bogus=1)), "Unknown job attribute 'bogus' in job 'x'"),
    ("unknown_execution_key", submit({"name": "x", "execution": {"exe": "true"}}),
     "Job 'x': unknown key 'exe' in execution"),
    ("cores_wrong_type", submit(job("x", resources={"numCores": {"exact": "two"}})),
     "Job 'x': resources.numCores.exact must be a positive integer, got 'two'"),
    ("args_wrong_type", submit({"name": "x", "execution": {"exec": "echo", "args": {"a": 1}}}),
     "Job 'x': execution.args must be a list, got a dictionary"),
    ("unknown_variable", submit(job("x_${nope}")),
     "Job identifier '(x_${nope})' contains invalid characters or unknown variables"),
    ("impossible_cores", submit(job("x", resources={"numCores": {"exact": 64}})),
     "Not enough resources for job x"),
    ("duplicate_of_accepted", submit(job("before")), "Job before already exist"),
    ("cycle", submit(job("x", dependencies={"after": ["y"]}),
                     job("y", dependencies={"after": ["x"]})), "x -> y -> x"),
    ("iterations_over_limit", submit(job("x", iteration={"stop": MAX_ITERATIONS * 10})),
     "iterations exceed the limit of %d per job" % MAX_ITERATIONS),
    ("nul_in_exec", submit(job("x", exec_="tr\x00ue")),
     "Job 'x': execution.exec must not contain a NUL character"),
    ("env_name_with_equals", submit({"name": "x", "execution": {"exec": "true",
                                                                 "env": {"A=B": "1"}}}),
     "Job 'x': execution.env: invalid variable 'A=B'"),
    ("cancel_unknown", b'{"request": "cancelJob", "jobNames": ["ghost"]}', "ghost"),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = NetService(tmp_path_factory.mktemp("zmq"))
    try:
        assert svc.request(json.loads(submit(job("before"))))["code"] == 0
        runner = {"name": "runner", "execution": {"exec": "sleep", "args": ["60"]}}
        assert svc.request(json.loads(submit(runner)))["code"] == 0
        svc.wait_state("before")
        svc.wait_state("runner", ("EXECUTING",))
        yield svc
    finally:
        svc.stop()  # finish kills runner; huge stays queued (no walk over its iterations)


@pytest.mark.parametrize("payload,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_message_gets_a_one_line_error_and_changes_nothing(service, payload, expected):
    reply = service.raw(payload)
    assert reply is not None, "no reply: the service must answer every message it reads"
    assert reply["code"] != 0, reply
    message = one_line(reply["message"])
    assert expected in message
    assert "Traceback" not in message
    assert service.state("before") == "SUCCEED"
    assert service.state("runner") == "EXECUTING"
    listed = service.request({"request": "listJobs"})["data"]["jobs"]
    assert set(listed) == {"before", "runner"}, "a refused request registered jobs: %s" % listed


def test_oversized_message_is_dropped_and_the_service_goes_on(service):
    proc = psutil.Process(service.proc.pid)
    rss_before = proc.memory_info().rss
    reply = service.raw(b"x" * (64 * 1000 * 1000), timeout=2.0)
    assert reply is None, "a 64 MB message must not be read (limit %d bytes)" % MAX_REQUEST_BYTES
    assert service.state("before") == "SUCCEED"
    assert proc.memory_info().rss - rss_before < MAX_REQUEST_BYTES


def test_client_refuses_a_request_over_the_limit(service):
    jobs = [{"name": "big", "execution": {"exec": "echo",
                                          "args": ["y" * (MAX_REQUEST_BYTES + 10)]}}]
    with ServiceClient(service.address, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(ClientError, match="over the service's limit of %d bytes"
                           % MAX_REQUEST_BYTES):
            client.request({"request": "submit", "jobs": jobs})
        assert time.monotonic() - started < 5
        assert "big" not in client.request({"request": "listJobs"})["jobs"]


def test_a_huge_iteration_count_is_accepted_cheaply(service):
    """Iterations are expanded lazily: 10 million (queued behind ``runner``) cost a reply in
    well under a second and a few MB, not 10 million objects. (It stays queued: ``finish``
    leaves queued jobs alone; canceling it would walk every iteration.)"""
    proc = psutil.Process(service.proc.pid)
    rss_before = proc.memory_info().rss
    started = time.monotonic()
    reply = service.request(json.loads(submit(job("huge", iteration={"stop": 10_000_000},
                                                  dependencies={"after": ["runner"]}))))
    elapsed = time.monotonic() - started
    assert reply["code"] == 0, reply
    assert elapsed < 1.0, "accepting 10M iterations took %.2f s" % elapsed
    assert proc.memory_info().rss - rss_before < 64 * 1024 * 1024
    assert service.state("huge") == "QUEUED"


def test_after_the_catalogue_no_traceback_and_new_jobs_succeed(service):
    assert service.request(json.loads(submit(job("after"))))["code"] == 0
    assert service.wait_state("after") == "SUCCEED"
    assert service.state("before") == "SUCCEED"
    assert service.state("runner") == "EXECUTING"
    assert "Traceback" not in service.log()
    assert "Traceback" not in service.stderr()
