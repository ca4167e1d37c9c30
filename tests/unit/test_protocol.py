"""Unit tests of qcgflow.runtime.protocol: requests, replies, job descriptions, wall time."""

import pytest

from factories import SUBMIT_VARS, job_desc, with_path
from qcgflow.runtime import protocol as p
from qcgflow.runtime.errors import InvalidRequest
from qcgflow.runtime.jobs import DependencyRef, IterationSpec
from qcgflow.runtime.resources import CountRange


def parse(desc, submit_vars=None):
    return p.parse_job(desc, dict(submit_vars or SUBMIT_VARS))


def error_of(desc) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse(desc)
    return str(info.value)


def request_error(data) -> str:
    with pytest.raises(InvalidRequest) as info:
        p.parse_request(data)
    return str(info.value)


# Fragments that betray Python internals instead of a user-facing message.
PYTHON_INTERNALS = ("__init__", "unexpected keyword", "Traceback", "NoneType", "object has no",
                    "not subscriptable", "not iterable", "<class")


# =============================================================================== requests

@pytest.mark.parametrize("data", [None, [], "submit", 5, {}, {"request": None}, {"request": 5},
                                  {"jobs": []}])
def test_parse_request_rejects_non_requests(data):
    assert request_error(data) == "Invalid request"


def test_parse_request_unknown_name():
    assert request_error({"request": "bogus"}) == "Unknown request name: bogus"


@pytest.mark.parametrize("data, message", [
    ({"request": "submit"}, "Wrong submit request - missing jobs data"),
    ({"request": "submit", "jobs": None}, "Wrong submit request - missing jobs data"),
    ({"request": "submit", "jobs": {"name": "a"}}, "Wrong submit request - missing jobs data "
     "(a non-empty list of job descriptions is needed, not a dictionary)"),
    ({"request": "submit", "jobs": []}, "Wrong submit request - missing jobs data "
     "(a non-empty list of job descriptions is needed, not a list)"),
    ({"request": "submit", "jobs": "a"}, "Wrong submit request - missing jobs data "
     "(a non-empty list of job descriptions is needed, not a string)"),
    ({"request": "submit", "jobs": ["a"]}, "Wrong submit request - wrong job data"),
    ({"request": "submit", "jobs": [{"name": "a"}, 5]}, "Wrong submit request - wrong job data"),
    ({"request": "control"}, "Wrong control request - missing command"),
    ({"request": "control", "command": "bogus"}, "Wrong control request - unknown command"),
])
def test_parse_request_error_messages(data, message):
    assert request_error(data) == message


# upstream's manager-to-governor requests: its validation messages first (its tests match
# them), then a refusal, since qcgflow managers use the governor's own endpoint
@pytest.mark.parametrize("data, start", [
    ({"request": "register"}, "Wrong register request - missing/unknown entity"),
    ({"request": "register", "entity": "job"}, "Wrong register request - missing/unknown entity"),
    ({"request": "register", "entity": "manager"},
     "Wrong register request - missing register parameters"),
    ({"request": "register", "entity": "manager", "params": {"id": "m1"}},
     "Wrong register request - missing key register parameters"),
    ({"request": "register", "entity": "manager",
      "params": {"id": "m1", "address": "tcp://h:1", "resources": {}}},
     "Wrong register request - not accepted on this interface"),
    ({"request": "notify"}, "Wrong notify request - missing/unknown entity"),
    ({"request": "notify", "entity": "task"}, "Wrong notify request - missing/unknown entity"),
    ({"request": "notify", "entity": "job"}, "Wrong notify request - missing register parameters"),
    ({"request": "notify", "entity": "job", "params": {"name": "j1", "state": "FINISHED"}},
     "Wrong notify request - missing key notify parameters"),
    ({"request": "notify", "entity": "job",
      "params": {"name": "j1", "state": "FINISHED", "attributes": {}}},
     "Wrong notify request - not accepted on this interface"),
])
def test_register_and_notify_are_validated_then_refused(data, start):
    assert request_error(data).startswith(start)


@pytest.mark.parametrize("name, label", [
    ("jobStatus", "job status"),
    ("jobInfo", "job info"),
    ("cancelJob", "cancel job"),
    ("removeJob", "remove job"),
])
@pytest.mark.parametrize("names", [None, [], "a", {"a": 1}], ids=["absent", "empty", "str", "dict"])
def test_names_requests_missing_job_names(name, label, names):
    data = {"request": name}
    if names is not None:
        data["jobNames"] = names
    assert request_error(data) == "Wrong %s request - missing job names" % label


@pytest.mark.parametrize("name", ["jobStatus", "jobInfo", "cancelJob", "removeJob"])
def test_names_requests_reject_non_string_names(name):
    message = request_error({"request": name, "jobNames": ["a", 5]})
    assert message == "Wrong %s request - job names must be strings" % name


@pytest.mark.parametrize("name, cls", [
    ("jobStatus", p.JobStatusRequest),
    ("cancelJob", p.CancelJobRequest),
    ("removeJob", p.RemoveJobRequest),
])
def test_names_requests_parse_names(name, cls):
    assert p.parse_request({"request": name, "jobNames": ["a", "b:1"]}) == cls(("a", "b:1"))


@pytest.mark.parametrize("extra, with_childs", [
    ({}, False),
    ({"withChilds": True}, True),
    ({"params": {"withChilds": True}}, True),
    ({"params": {"withChilds": False}}, False),
    ({"params": None}, False),
])
def test_job_info_with_childs(extra, with_childs):
    request = p.parse_request(dict({"request": "jobInfo", "jobNames": ["a"]}, **extra))
    assert request == p.JobInfoRequest(("a",), with_childs)


@pytest.mark.parametrize("data, expected", [
    ({"request": "listJobs"}, p.ListJobsRequest()),
    ({"request": "resourcesInfo"}, p.ResourcesInfoRequest()),
    ({"request": "finish"}, p.FinishRequest()),
    ({"request": "status"}, p.StatusRequest()),
    ({"request": "control", "command": "finishAfterAllTasksDone"},
     p.ControlRequest("finishAfterAllTasksDone")),
])
def test_parse_simple_requests(data, expected):
    assert p.parse_request(data) == expected


def test_parse_submit_keeps_raw_jobs_in_order():
    jobs = [job_desc("a"), job_desc("b")]
    assert p.parse_request({"request": "submit", "jobs": jobs}) == p.SubmitRequest(tuple(jobs))


# =============================================================================== replies

@pytest.mark.parametrize("args, expected", [
    ((), {"code": 0}),
    (("2 jobs submitted",), {"code": 0, "message": "2 jobs submitted"}),
    (("2 jobs submitted", {"submitted": 2, "jobs": ["a", "b"]}),
     {"code": 0, "message": "2 jobs submitted", "data": {"submitted": 2, "jobs": ["a", "b"]}}),
    ((None, {"length": 0}), {"code": 0, "data": {"length": 0}}),
])
def test_reply_ok(args, expected):
    assert p.reply_ok(*args) == expected


def test_reply_error_has_non_zero_code_and_message():
    assert p.reply_error("Invalid request") == {"code": -1, "message": "Invalid request"}


# =============================================================================== wall time

@pytest.mark.parametrize("value, seconds", [
    ("2s", 2.0),
    ("10m", 600.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("1h30m15s", 5415.0),
    ("2m30s", 150.0),
    ("1h15s", 3615.0),
    ("1.5h", 5400.0),
    ("0.5s", 0.5),
    (" 1h 30m ", 5400.0),
    ("01:30:00", 5400.0),
    ("1:30", 90.0),
    ("00:00:05", 5.0),
    (5, 5.0),
    (2.5, 2.5),
])
def test_parse_wall_time_valid(value, seconds):
    assert p.parse_wall_time(value) == seconds


@pytest.mark.parametrize("value", [
    "", "   ", "abc", "10", "s", "h", "10x", "1d", "m10", "30s10m", "-5s", "1:2:3:4", "::",
    "0s", "0h0m0s", "00:00:00", 0, -1, -0.5, True, False, None, [], {}, ["10s"],
])
def test_parse_wall_time_invalid(value):
    assert p.parse_wall_time(value) is None


# =============================================================================== job descriptions: valid

def test_minimal_job_defaults():
    spec = parse(job_desc("a"))
    assert (spec.name, spec.execution.exec, spec.execution.args, spec.execution.model,
            spec.resources.cores, spec.resources.nodes, spec.resources.wt, spec.iteration,
            spec.after, dict(spec.attributes)) == (
        "a", "/bin/true", (), "default", CountRange(1, 1), None, None, None, (), {})


def test_full_job_description_is_parsed_into_records():
    desc = job_desc(
        "full",
        execution={"exec": "/bin/echo", "args": ["x", 1, 2.5], "env": {"A": "1", "B": 2},
                   "wd": "w", "stdin": "in", "stdout": "out", "stderr": "err",
                   "modules": ["m1", "m2"], "venv": "venv", "model": "threads",
                   "model_opts": {"mpirun": "/usr/bin/mpirun", "mpirun_args": ["-v"]}},
        resources={"numCores": {"min": 2, "max": 4}, "numNodes": {"exact": 1}, "wt": "1m"},
        iteration={"start": 2, "stop": 12},
        after=["x", "y:3", "z:${it}"],
        attributes={"k": "v"})
    spec = parse(desc)
    ex = spec.execution
    assert (ex.exec, ex.args, dict(ex.env), ex.wd, ex.stdin, ex.stdout, ex.stderr, ex.modules,
            ex.venv, ex.model, dict(ex.model_opts)) == (
        "/bin/echo", ("x", "1", "2.5"), {"A": "1", "B": "2"}, "w", "in", "out", "err",
        ("m1", "m2"), "venv", "threads", {"mpirun": "/usr/bin/mpirun", "mpirun_args": ["-v"]})
    assert (spec.resources.cores, spec.resources.nodes, spec.resources.wt) == (
        CountRange(2, 4), CountRange(1, 1), 60.0)
    assert spec.iteration == IterationSpec(2, 12)
    assert spec.after == (DependencyRef("x"), DependencyRef("y", iteration=3),
                          DependencyRef("z", per_iteration=True))
    assert dict(spec.attributes) == {"k": "v"}


def test_script_job():
    spec = parse(job_desc("a", execution={"script": "echo hi"}))
    assert (spec.execution.script, spec.execution.exec) == ("echo hi", None)


@pytest.mark.parametrize("resources, cores, nodes", [
    ({"numCores": {"exact": 3}}, CountRange(3, 3), None),
    ({"numCores": 3}, CountRange(3, 3), None),
    ({"numCores": {"min": 2}}, CountRange(2, None), None),
    ({"numCores": {"max": 4}}, CountRange(1, 4), None),
    ({"numCores": {"min": 2, "max": 2}}, CountRange(2, 2), None),
    ({"numNodes": {"exact": 2}}, None, CountRange(2, 2)),
    ({"numNodes": {"min": 1, "max": 3}, "numCores": {"exact": 2}}, CountRange(2, 2),
     CountRange(1, 3)),
])
def test_resources_ranges(resources, cores, nodes):
    spec = parse(job_desc("a", resources=resources))
    assert (spec.resources.cores, spec.resources.nodes) == (cores, nodes)


def test_wall_time_is_stored_in_seconds():
    spec = parse(job_desc("a", resources={"numCores": {"exact": 1}, "wt": "1h30m"}))
    assert spec.resources.wt == 5400.0


@pytest.mark.parametrize("model", ["default", "threads", "openmpi", "intelmpi", "srunmpi",
                                   "OpenMPI", "THREADS"])
def test_known_models_accepted_case_insensitively(model):
    spec = parse(job_desc("a", execution={"exec": "x", "model": model}))
    assert spec.execution.model == model.lower()


def test_single_module_string_is_a_list_of_one():
    spec = parse(job_desc("a", execution={"exec": "x", "modules": "gcc"}))
    assert spec.execution.modules == ("gcc",)


@pytest.mark.parametrize("iteration, expected", [
    ({"start": 2, "stop": 12}, IterationSpec(2, 12)),
    ({"stop": 3}, IterationSpec(0, 3)),
    ({"start": -2, "stop": 1}, IterationSpec(-2, 1)),
    (10, IterationSpec(0, 10)),
    ({"values": ["x", "y"]}, IterationSpec(0, 2, ("x", "y"))),
    ({"values": [1, 2.5, True, "z"]}, IterationSpec(0, 4, ("1", "2.5", "true", "z"))),
])
def test_iteration_forms(iteration, expected):
    assert parse(job_desc("a", iteration=iteration)).iteration == expected


def test_iteration_count():
    assert IterationSpec(2, 12).count == 10


@pytest.mark.parametrize("after, refs", [
    (["a"], (DependencyRef("a"),)),
    (["a:3"], (DependencyRef("a", iteration=3),)),
    (["a:${it}"], (DependencyRef("a", per_iteration=True),)),
    (["a:$it"], (DependencyRef("a", per_iteration=True),)),
    ([" a "], (DependencyRef("a"),)),
    (["a", "a", "b"], (DependencyRef("a"), DependencyRef("b"))),
    ([], ()),
])
def test_dependency_entries(after, refs):
    assert parse(job_desc("x", after=after)).after == refs


@pytest.mark.parametrize("ref, text", [
    (DependencyRef("a"), "a"),
    (DependencyRef("a", iteration=3), "a:3"),
    (DependencyRef("a", per_iteration=True), "a:${it}"),
])
def test_dependency_ref_str(ref, text):
    assert str(ref) == text


def test_description_keeps_substituted_json():
    spec = parse(job_desc("a_${rcnt}", execution={"exec": "x", "args": ["${jname}"]}))
    assert spec.description["execution"]["args"] == ["a_7"]


def test_description_name_is_the_final_name():
    assert parse(job_desc("a_${rcnt}")).description["name"] == "a_7"


# =============================================================================== job descriptions: errors

@pytest.mark.parametrize("desc, message", [
    ("a", "Wrong submit request - wrong job data"),
    ({"execution": {"exec": "x"}}, "Missing name in job description"),
    (job_desc(""), "Missing name in job description"),
    (job_desc(None), "Missing name in job description"),
    (job_desc("a", execution=None), "Missing execution element in job description"),
    (job_desc("a", iteration="3"), "Wrong format of iteration directive: not a dictionary"),
    (job_desc("a", iteration=[0, 3]), "Wrong format of iteration directive: not a dictionary"),
    (job_desc("a", iteration=True), "Wrong format of iteration directive: not a dictionary"),
    (job_desc("a", iteration=2.5), "Wrong format of iteration directive: not a dictionary"),
    (job_desc("a:1"), "Invalid job name a:1"),
    (job_desc("a b"), "Invalid job name a b"),
    (job_desc("a/b"), "Invalid job name a/b"),
    (job_desc("a_${foo}"),
     "Job identifier '(a_${foo})' contains invalid characters or unknown variables"),
    (job_desc("a_$foo"),
     "Job identifier '(a_$foo)' contains invalid characters or unknown variables"),
    (job_desc("a_$$"),
     "Job identifier '(a_$$)' contains invalid characters or unknown variables"),
    (job_desc("a_${it}"),
     "Job identifier '(a_${it})' contains invalid characters or unknown variables"),
    (job_desc("a", resources={"wt": "10s"}),
     "No resources defined: job 'a' has resources {wt} without numCores or numNodes (leave "
     "resources out for one core, or add resources.numCores)"),
    (job_desc("a", resources={}),
     "No resources defined: job 'a' has resources {} without numCores or numNodes (leave "
     "resources out for one core, or add resources.numCores)"),
    (job_desc("a", bogus=1), "Unknown job attribute 'bogus' in job 'a'"),
    (job_desc("a", numCores=1), "Unknown job attribute 'numCores' in job 'a'"),
])
def test_exact_error_messages(desc, message):
    assert error_of(desc) == message


def test_non_string_name_is_an_error():
    assert error_of(job_desc(5)).startswith("Invalid job name 5")


def test_unknown_top_level_key_reported_even_with_variable_name():
    assert error_of(job_desc("a_${rcnt}", bogus=1)) == \
        "Unknown job attribute 'bogus' in job 'a_${rcnt}'"


# Wrong types for every field: (path in the description, bad value, words of the message).
WRONG_TYPES = [
    (("execution",), "x", "execution must be a dictionary"),
    (("execution",), ["x"], "execution must be a dictionary"),
    (("execution", "exec"), 5, "execution.exec must be a string, got a number"),
    (("execution", "exec"), ["x"], "execution.exec must be a string, got a list"),
    (("execution", "args"), {"a": 1}, "execution.args must be a list, got a dictionary"),
    (("execution", "args"), [{"a": 1}], "execution.args[0] must be a string or a number, got a dictionary"),
    (("execution", "args"), ["x", None], "execution.args[1] must be a string or a number, got null"),
    (("execution", "args"), [True], "execution.args[0] must be a string or a number, got a boolean"),
    (("execution", "env"), ["A=1"], "execution.env must be a dictionary of strings"),
    (("execution", "env"), "A=1", "execution.env must be a dictionary of strings"),
    (("execution", "env"), {"A": None}, "execution.env.A must be a string, got null"),
    (("execution", "env"), {"A": [1]}, "execution.env.A must be a string, got a list"),
    (("execution", "env"), {"A": True}, "execution.env.A must be a string, got a boolean"),
    (("execution", "wd"), 5, "execution.wd must be a string, got a number"),
    (("execution", "stdin"), [], "execution.stdin must be a string, got a list"),
    (("execution", "stdout"), {}, "execution.stdout must be a string, got a dictionary"),
    (("execution", "stderr"), True, "execution.stderr must be a string, got a boolean"),
    (("execution", "modules"), 5, "execution.modules must be a list, got a number"),
    (("execution", "modules"), {"m": 1}, "execution.modules must be a list, got a dictionary"),
    (("execution", "modules"), [["m"]], "execution.modules[0] must be a string or a number, got a list"),
    (("execution", "venv"), 5, "execution.venv must be a string, got a number"),
    (("execution", "model"), 5, "execution.model must be a string, got a number"),
    (("execution", "model"), "mpi", "execution.model: unknown model 'mpi'"),
    (("execution", "model_opts"), "x", "execution.model_opts must be a dictionary"),
    (("execution", "model_opts"), ["x"], "execution.model_opts must be a dictionary"),
    (("resources",), "1", "resources must be a dictionary"),
    (("resources",), [1], "resources must be a dictionary"),
    (("resources", "numCores"), "2", "resources.numCores must be a dictionary with exact or min/max"),
    (("resources", "numCores"), [2], "resources.numCores must be a dictionary with exact or min/max"),
    (("resources", "numCores"), 2.0, "resources.numCores must be a dictionary with exact or min/max"),
    (("resources", "numCores"), True, "resources.numCores must be a dictionary with exact or min/max"),
    (("resources", "numCores"), 0, "resources.numCores.exact must be a positive integer, got 0"),
    (("resources", "numCores"), {}, "resources.numCores needs exact, min or max"),
    (("resources", "numNodes"), "1", "resources.numNodes must be a dictionary with exact or min/max"),
    (("resources", "numNodes"), {}, "resources.numNodes needs exact, min or max"),
    (("resources", "wt"), "abc", "resources.wt: invalid wall time 'abc'"),
    (("resources", "wt"), [10], "resources.wt: invalid wall time [10]"),
    (("resources", "wt"), 0, "resources.wt: invalid wall time 0"),
    (("dependencies",), ["a"], "dependencies must be a dictionary with 'after'"),
    (("dependencies",), "a", "dependencies must be a dictionary with 'after'"),
    (("dependencies", "after"), "b", "dependencies.after must be a list of job names"),
    (("dependencies", "after"), [1], "dependencies.after must be a list of job names"),
    (("dependencies", "after"), {"b": 1}, "dependencies.after must be a list of job names"),
    (("attributes",), [1], "attributes must be a dictionary"),
    (("attributes",), "x", "attributes must be a dictionary"),
    (("iteration", "start"), "1", "iteration.start must be an integer, got a string"),
    (("iteration", "stop"), 5.0, "iteration.stop must be an integer, got a number"),
    (("iteration", "stop"), True, "iteration.stop must be an integer, got a boolean"),
    (("iteration", "values"), "xy", "iteration.values must be a non-empty list"),
    (("iteration", "values"), [], "iteration.values must be a non-empty list"),
]


@pytest.mark.parametrize("path, value, words", WRONG_TYPES,
                         ids=["%s=%r" % (".".join(t[0]), t[1]) for t in WRONG_TYPES])
def test_wrong_types_name_the_job_and_the_field(path, value, words):
    iteration = {} if path[-1] == "values" else {"stop": 2}
    base = job_desc("a", iteration=iteration, resources={"numCores": {"exact": 1}})
    message = error_of(with_path(base, path, value))
    assert message.startswith("Job 'a': ") and words in message, message


@pytest.mark.parametrize("field", ["exact", "min", "max"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, [2], {"n": 2}])
@pytest.mark.parametrize("where", ["numCores", "numNodes"])
def test_count_bounds_must_be_positive_integers(where, field, value):
    message = error_of(job_desc("a", resources={where: {field: value}}))
    assert message == "Job 'a': resources.%s.%s must be a positive integer, got %r" % (
        where, field, value)


@pytest.mark.parametrize("where", ["numCores", "numNodes"])
@pytest.mark.parametrize("count", [{"exact": 2, "min": 1}, {"exact": 2, "max": 3},
                                   {"exact": 2, "min": 1, "max": 3}])
def test_exact_is_exclusive_with_min_and_max(where, count):
    assert error_of(job_desc("a", resources={where: count})) == \
        "Job 'a': resources.%s: exact is mutually exclusive with min and max" % where


@pytest.mark.parametrize("where", ["numCores", "numNodes"])
def test_min_larger_than_max(where):
    assert error_of(job_desc("a", resources={where: {"min": 3, "max": 2}})) == \
        "Job 'a': resources.%s: min (3) is larger than max (2)" % where


# Unknown keys at every level: (path to the dictionary, words of the message).
UNKNOWN_KEYS = [
    (("execution",), "unknown key 'bogus' in execution"),
    (("execution", "model_opts"), "unknown key 'bogus' in execution.model_opts"),
    (("resources",), "unknown key 'bogus' in resources"),
    (("resources", "numCores"), "unknown key 'bogus' in resources.numCores"),
    (("resources", "numNodes"), "unknown key 'bogus' in resources.numNodes"),
    (("resources", "numCores", "scheduler"), "bogus"),
    (("iteration",), "unknown key 'bogus' in iteration"),
    (("dependencies",), "unknown key 'bogus' in dependencies"),
]


@pytest.mark.parametrize("path, words", UNKNOWN_KEYS, ids=[".".join(t[0]) for t in UNKNOWN_KEYS])
def test_unknown_keys_at_every_level(path, words):
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 1, "scheduler": {"name": "split-into"}},
                               "numNodes": {"exact": 1}},
                    after=[])
    desc["execution"]["model_opts"] = {}
    message = error_of(with_path(desc, path + ("bogus",), 1))
    assert message.startswith("Job 'a': ") and words in message, message


def test_unknown_key_message_lists_allowed_keys():
    message = error_of(with_path(job_desc("a"), ("resources", "cores"), 1))
    assert message == ("Job 'a': unknown key 'cores' in resources (allowed: numCores, numNodes, "
                       "wt, nodeCrs)")


@pytest.mark.parametrize("key, value, words", [
    ("mpirun", 5, "execution.model_opts.mpirun"),
    ("mpirun", ["mpirun"], "execution.model_opts.mpirun"),
    ("mpirun_args", "-v", "execution.model_opts.mpirun_args"),
    ("mpirun_args", [{"a": 1}], "execution.model_opts.mpirun_args"),
])
def test_model_opts_values_are_type_checked(key, value, words):
    message = error_of(job_desc("a", execution={"exec": "x", "model_opts": {key: value}}))
    assert message.startswith("Job 'a': ") and words in message, message


@pytest.mark.parametrize("execution, words", [
    ({"exec": "x", "script": "echo"}, "execution.script is mutually exclusive with exec and args"),
    ({"script": "echo", "args": ["1"]}, "execution.script is mutually exclusive with exec and args"),
    ({}, "execution needs exec or script"),
    ({"args": ["1"]}, "execution needs exec or script"),
    ({"exec": ""}, "execution needs exec or script"),
    ({"env": {"A": "1"}}, "execution needs exec or script"),
])
def test_exec_and_script(execution, words):
    assert error_of(job_desc("a", execution=execution)) == "Job 'a': " + words


def test_unknown_model_lists_known_models():
    assert error_of(job_desc("a", execution={"exec": "x", "model": "mpi"})) == (
        "Job 'a': execution.model: unknown model 'mpi' (known: default, threads, openmpi, "
        "intelmpi, srunmpi)")


@pytest.mark.parametrize("wt", ["abc", "10", "1d", "-5s", "0s", "00:00:00", "", True])
def test_bad_wall_time_strings(wt):
    message = error_of(job_desc("a", resources={"numCores": {"exact": 1}, "wt": wt}))
    assert message == ("Job 'a': resources.wt: invalid wall time %r (use e.g. 30s, 10m, 1h30m "
                       "or a number of seconds)" % (wt,))


@pytest.mark.parametrize("start, stop", [(3, 3), (4, 3), (0, 0), (5, -5)])
def test_iteration_start_must_be_below_stop(start, stop):
    message = error_of(job_desc("a", iteration={"start": start, "stop": stop}))
    assert message.startswith("Wrong format of iteration directive: ")
    assert "stop index must be greater than the start index" in message


@pytest.mark.parametrize("shorthand", [0, -3])
def test_iteration_int_shorthand_must_be_positive(shorthand):
    message = error_of(job_desc("a", iteration=shorthand))
    assert message.startswith("Wrong format of iteration directive: ")


def test_iteration_missing_stop():
    assert error_of(job_desc("a", iteration={"start": 1})) == \
        "Wrong format of iteration directive: missing stop or values"


def test_iteration_empty_dictionary():
    assert error_of(job_desc("a", iteration={})) == \
        "Wrong format of iteration directive: missing stop or values"


@pytest.mark.parametrize("iteration", [{"values": ["x"], "start": 0},
                                       {"values": ["x"], "stop": 1},
                                       {"values": ["x"], "start": 0, "stop": 1}])
def test_iteration_values_exclusive_with_start_stop(iteration):
    assert error_of(job_desc("a", iteration=iteration)) == \
        "Job 'a': iteration: 'values' is mutually exclusive with start/stop"


@pytest.mark.parametrize("entry, words", [
    ("b:", "dependencies.after: invalid entry 'b:'"),
    (":1", "dependencies.after: invalid entry ':1'"),
    ("", "dependencies.after: invalid entry ''"),
    ("b:x", "dependencies.after: invalid iteration in 'b:x' (use a number or ${it})"),
    ("b:${foo}", "dependencies.after: invalid iteration in 'b:${foo}' (use a number or ${it})"),
    ("b:1.5", "dependencies.after: invalid iteration in 'b:1.5' (use a number or ${it})"),
    # spaces: text for THE placeholder grammar, as for upstream (which then waits for a
    # job named 'b:${ it }' that never comes)
    ("b:${ it }", "dependencies.after: invalid iteration in 'b:${ it }' (use a number or "
                  "${it})"),
])
def test_bad_dependency_entries(entry, words):
    assert error_of(job_desc("a", after=[entry])) == "Job 'a': " + words


@pytest.mark.parametrize("scheduler, words", [
    ({"name": "nope"}, "resources.numCores.scheduler: Unknown iteration resources scheduler "
                       "'nope' (known: maximum-iters, split-into)"),
    ({"params": {}}, "resources.numCores.scheduler must be a dictionary with a name"),
    ({"name": 5}, "resources.numCores.scheduler must be a dictionary with a name"),
    ({"name": "split-into", "params": [2]},
     "resources.numCores.scheduler.params must be a dictionary"),
    ({"name": "split-into", "params": {"parts": 0}},
     "resources.numCores.scheduler: The split-into iteration scheduler parameter 'parts' must "
     "be a positive integer, got 0"),
])
def test_iteration_scheduler_errors(scheduler, words):
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 1, "scheduler": scheduler}})
    assert error_of(desc) == "Job 'a': " + words


@pytest.mark.parametrize("name", ["maximum-iters", "split-into"])
def test_iteration_scheduler_refuses_max(name):
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 1, "max": 2, "scheduler": {"name": name}}})
    assert error_of(desc) == ("Job 'a': resources.numCores.scheduler: max is not allowed with "
                              "the %s iteration scheduler" % name)


def test_iteration_scheduler_is_recorded():
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 1, "scheduler": {
                        "name": "split-into", "params": {"parts": 2}}}})
    sched = parse(desc).resources.cores_scheduler
    assert (sched.name, dict(sched.params)) == ("split-into", {"parts": 2})


def test_scheduler_given_as_a_name_like_the_upstream_client_sends_it():
    desc = job_desc("a", iteration={"stop": 2},
                    resources={"numCores": {"min": 1, "scheduler": "split-into"}})
    assert parse(desc).resources.cores_scheduler.name == "split-into"


def test_a_single_string_argument_is_one_argument():
    desc = job_desc("a", execution={"exec": "/bin/echo", "args": "x y"})
    assert parse(desc).execution.args == ("x y",)


# Every wrong type and unknown key above, checked for leaks of Python internals.
ALL_BAD = ([with_path(job_desc("a", iteration={"stop": 2}, resources={"numCores": 1}), path, value)
            for path, value, _ in WRONG_TYPES]
           + [with_path(job_desc("a", resources={"numCores": {"min": 1}}), path + ("bogus",), 1)
              for path, _ in UNKNOWN_KEYS[:5]]
           + [job_desc("a", bogus=1), job_desc({"x": 1}), job_desc(["a"]),
              job_desc("a", execution={"exec": "x", "env": {"A": {"B": 1}}})])


@pytest.mark.parametrize("desc", ALL_BAD)
def test_errors_never_leak_python_internals(desc):
    message = error_of(desc)
    assert not [frag for frag in PYTHON_INTERNALS if frag in message], message
