"""Bad input in requests files (``qcgflow service --file-path``) (issue 8, item 5).

Two kinds of badness:

* a bad request inside a good file: one service run handles ``before`` (a good submit),
  every bad request of ``IN_FILE``, then ``after`` (a good submit) and ``listJobs``. Each
  bad request gets its one-line error (service.log reply and ``qcgflow service: request N:
  ...`` on stderr); the run goes on, both good jobs succeed and nothing of a refused
  request is registered (a submit is all or nothing).
* a file that cannot be used at all (``WHOLE_FILE``): exit status 2 and one line on
  stderr naming the file and the problem, before anything runs.

Deliberate choices (docs/file-interface.md): a file that is not UTF-8, or JSON nested
deeper than Python's decoder goes, is refused like malformed JSON; integers of more than
4300 digits are not JSON we read.
"""


import pytest

from qcgflow.runtime.protocol import MAX_ITERATIONS

from support.jobs import job, submit
from support.services import run_service


def bad_job(name="x", **fields):
    desc = {"name": name, "execution": {"exec": "true"}}
    desc.update(fields)
    return desc


# (id, request, substring of its one-line error)
IN_FILE = [
    ("not_an_object", "listJobs", "Invalid request"),
    ("unknown_request", {"request": "frobnicate"}, "Unknown request name: frobnicate"),
    ("missing_jobs", {"request": "submit"}, "Wrong submit request - missing jobs data"),
    ("job_not_an_object", {"request": "submit", "jobs": ["x"]},
     "Wrong submit request - wrong job data"),
    ("name_not_text", submit(bad_job(5)), "Invalid job name 5: must be a string"),
    ("name_with_colon", submit(bad_job("a:1")), "Invalid job name a:1"),
    ("unknown_job_key", submit(bad_job(bogus=1)), "Unknown job attribute 'bogus' in job 'x'"),
    ("unknown_resources_key", submit(bad_job(resources={"cores": 2})),
     "Job 'x': unknown key 'cores' in resources"),
    ("cores_wrong_type", submit(bad_job(resources={"numCores": {"exact": 1.5}})),
     "Job 'x': resources.numCores.exact must be a positive integer, got 1.5"),
    ("cores_min_above_max", submit(bad_job(resources={"numCores": {"min": 3, "max": 2}})),
     "Job 'x': resources.numCores: min (3) is larger than max (2)"),
    ("bad_wall_time", submit(bad_job(resources={"numCores": 1, "wt": "soon"})),
     "Job 'x': resources.wt: invalid wall time 'soon'"),
    ("unknown_model", submit(bad_job(execution={"exec": "true", "model": "mpich"})),
     "Job 'x': execution.model: unknown model 'mpich'"),
    ("env_not_a_dict", submit(bad_job(execution={"exec": "true", "env": ["A=1"]})),
     "Job 'x': execution.env must be a dictionary of strings"),
    ("after_not_a_list", submit(bad_job(dependencies={"after": "before"})),
     "Job 'x': dependencies.after must be a list of job names"),
    ("unknown_scheduler", submit(bad_job(resources={"numCores": {
        "min": 1, "scheduler": {"name": "round-robin"}}})),
     "Job 'x': resources.numCores.scheduler"),
    ("unknown_variable", submit(bad_job("x_${foo}")),
     "Job identifier '(x_${foo})' contains invalid characters or unknown variables"),
    ("self_dependency", submit(bad_job(dependencies={"after": ["x"]})),
     "Job 'x' depends on itself"),
    ("cycle_of_three", submit(bad_job("p", dependencies={"after": ["r"]}),
                              bad_job("q", dependencies={"after": ["p"]}),
                              bad_job("r", dependencies={"after": ["q"]})), "->"),
    ("too_many_cores", submit(bad_job(resources={"numCores": {"exact": 8}})),
     "Not enough resources for job x"),
    ("too_many_nodes", submit(bad_job(resources={"numNodes": {"exact": 2}})),
     "Not enough resources for job x"),
    ("duplicate_in_request", submit(bad_job("d"), bad_job("d")), "Job d already exist"),
    ("duplicate_of_accepted", submit(bad_job("before")), "Job before already exist"),
    ("atomic_good_then_bad", submit(bad_job("good"), bad_job("bad", bogus=1)),
     "Unknown job attribute 'bogus' in job 'bad'"),
    ("iterations_over_limit", submit(bad_job(iteration={"start": 0, "stop": 10 ** 12})),
     "iterations exceed the limit of %d per job" % MAX_ITERATIONS),
    ("iteration_start_after_stop", submit(bad_job(iteration={"start": 5, "stop": 2})),
     "the stop index must be greater than the start index (start 5, stop 2)"),
    ("iteration_values_empty", submit(bad_job(iteration={"values": []})),
     "Job 'x': iteration.values must be a non-empty list"),
    ("control_unknown", {"request": "control", "command": "reboot"},
     "Wrong control request - unknown command"),
    ("status_unknown_job", {"request": "jobStatus", "jobNames": ["ghost"]},
     "Job 'ghost' doesn't exist"),
    ("cancel_unknown_job", {"request": "cancelJob", "jobNames": ["ghost"]}, "ghost"),
]
FIRST = 2  # request 1 is the good submit of ``before``


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reqfile")
    requests = ([submit(job("before", script="echo before > before.out"))]
                + [request for _, request, _ in IN_FILE]
                + [submit(job("after", script="echo after > after.out")),
                   {"request": "listJobs"}])
    return run_service(tmp_path, requests, timeout=60)


@pytest.mark.parametrize("index", range(len(IN_FILE)), ids=[c[0] for c in IN_FILE])
def test_bad_request_gets_one_line_and_the_run_goes_on(run, index):
    number = FIRST + index
    expected = IN_FILE[index][2]
    reply = run.reply(number)
    assert reply["code"] != 0, reply
    assert "\n" not in reply["message"]
    assert expected in reply["message"]
    printed = [line for line in run.stderr.splitlines()
               if line.startswith("qcgflow service: request %d: " % number)]
    assert printed == ["qcgflow service: request %d: %s" % (number, reply["message"])]


def test_jobs_accepted_around_the_bad_requests_succeed(run):
    assert run.returncode == 4, run.describe()  # it ran the rest, but refused requests
    assert run.states == {"before": "SUCCEED", "after": "SUCCEED"}
    assert run.read("before.out").strip() == "before"


def test_refused_requests_registered_nothing(run):
    listed = run.reply(FIRST + len(IN_FILE) + 1)["data"]["jobs"]
    assert set(listed) == {"before", "after"}


def test_no_traceback_anywhere(run):
    assert "Traceback" not in run.stderr + run.stdout + run.service_log


# (id, file content (bytes), substring of the one-line error after "<path>: ")
WHOLE_FILE = [
    ("malformed_json", b'[{"request": "listJobs"},\n {"request": }]', ":2:14: malformed JSON"),
    ("invalid_utf8", b'[{"request": "listJobs", "x": "\xff\xfe"}]',
     ": not UTF-8 text (invalid byte at offset 31)"),
    ("nested_too_deep", b"[" * 100_000 + b"]" * 100_000, ": malformed JSON: nested too deeply"),
    ("integer_too_long", b"[" + b"7" * 5000 + b"]", ": malformed JSON: Exceeds the limit"),
    ("not_a_list", b'{"request": "listJobs"}',
     ": the requests file must hold a JSON list of requests, found dict"),
    ("empty_file", b"", ":1:1: malformed JSON: Expecting value"),
    ("binary_garbage", bytes(range(256)), ": not UTF-8 text"),
]


@pytest.mark.parametrize("content,expected", [c[1:] for c in WHOLE_FILE],
                         ids=[c[0] for c in WHOLE_FILE])
def test_unusable_file_is_one_line_naming_it(tmp_path, content, expected):
    path = tmp_path / "requests.json"
    path.write_bytes(content)
    result = run_service(tmp_path, None, file_path=path, timeout=30)
    assert result.returncode == 2, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qcgflow service: %s" % path)
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
