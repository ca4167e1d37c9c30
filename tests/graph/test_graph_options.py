"""Task options: one table, validated when decorating, messages that say the fix."""

import pytest

import qcgflow
from qcgflow.errors import TaskOptionError
from qcgflow.graph.options import OPTIONS, job_fields, validate


@pytest.mark.parametrize("given, expected", [
    ({"cores": 2}, {"cores": {"exact": 2}}),
    ({"cores": {"min": 2, "max": 4}}, {"cores": {"min": 2, "max": 4}}),
    ({"cores": (1, 3)}, {"cores": {"min": 1, "max": 3}}),
    ({"nodes": {"min": 1, "max": 2}}, {"nodes": {"min": 1, "max": 2}}),
    ({"model": "threads"}, {"model": "threads"}),
    ({"model_opts": {"mpirun": "/x/mpirun", "mpirun_args": ("-v",)}},
     {"model_opts": {"mpirun": "/x/mpirun", "mpirun_args": ["-v"]}}),
    ({"wt": "10m"}, {"wt": "10m"}),
    ({"wt": 30}, {"wt": 30}),
    ({"env": {"A": 1}}, {"env": {"A": "1"}}),
    ({"wd": "sub"}, {"wd": "sub"}),
    ({"modules": "gcc/12"}, {"modules": ["gcc/12"]}),
    ({"venv": "/v"}, {"venv": "/v"}),
    ({"retries": 2}, {"retries": 2}),
    ({"name": "prep"}, {"name": "prep"}),
    ({"gpus": 2}, {"gpus": 2}),
    ({"cores": {"min": 1}, "scheduler": "maximum-iters"},
     {"cores": {"min": 1}, "scheduler": {"name": "maximum-iters"}}),
])
def test_valid_options_are_normalised(given, expected):
    assert validate(given) == expected


@pytest.mark.parametrize("given, fix", [
    ({"cores": 0}, "cores=4"),
    ({"cores": {"min": 4, "max": 2}}, "larger than"),
    ({"cores": {"exact": 2, "min": 1}}, "'exact' excludes"),
    ({"cores": {"mn": 2}}, "unknown key 'mn'"),
    ({"nodes": "two"}, "nodes={'min': 2"),
    ({"model": "mpich"}, "'openmpi'"),
    ({"model_opts": {"mpi": "x"}}, "mpirun, mpirun_args"),
    ({"wt": "ten minutes"}, "'10m'"),
    ({"wt": -1}, "positive number of seconds"),
    ({"env": ["A=1"]}, "dict of variable names"),
    ({"env": {"A": None}}, "must be a string or a number"),
    ({"wd": ""}, "non-empty path"),
    ({"modules": [1]}, "list of non-empty strings"),
    ({"retries": -1}, "0 or more"),
    ({"retries": True}, "0 or more"),
    ({"gpus": -1}, "GPUs per node"),
    ({"gpus": 1.5}, "GPUs per node"),
    ({"name": "a:b"}, "without ':'"),
    ({"scheduler": "fastest"}, "'maximum-iters'"),
    ({"scheduler": "maximum-iters"}, "needs a range of cores"),
    ({"cores": {"min": 1}, "scheduler": {"name": "split-into"}}, "positive number of parts"),
    ({"cores": {"min": 1, "max": 2}, "scheduler": "maximum-iters"}, "drop 'max'"),
    ({"nodes": {"min": 1}}, "needs both 'min' and 'max'"),
    ({"cores": {"max": 4}}, "cores={'min': 2, 'max': 8}"),
])
def test_invalid_option_message_says_the_fix(given, fix):
    with pytest.raises(TaskOptionError) as info:
        validate(given, "task f")
    assert fix in str(info.value)


def test_invalid_option_names_the_task():
    with pytest.raises(TaskOptionError, match=r"^task f: invalid option cores=0"):
        validate({"cores": 0}, "task f")


def test_unknown_option_suggests_the_close_one():
    with pytest.raises(TaskOptionError, match="did you mean 'cores'"):
        validate({"core": 2})


def test_option_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate({"cores": -1})


def test_none_restores_the_default():
    assert validate({"wt": None}, base={"wt": "1m", "cores": {"exact": 2}}) == \
        {"cores": {"exact": 2}}


def test_every_option_has_a_doc():
    assert all(option.doc for option in OPTIONS.values())


def test_job_fields_place_every_option():
    options = validate({"cores": {"min": 1}, "nodes": 2, "wt": "1m", "env": {"A": "1"},
                        "model": "threads", "wd": "w", "modules": ["m"], "venv": "v",
                        "scheduler": "maximum-iters", "retries": 1, "name": "n"})
    execution, resources = job_fields(options)
    assert (execution, resources) == (
        {"env": {"A": "1"}, "model": "threads", "wd": "w", "modules": ["m"], "venv": "v"},
        {"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}},
         "numNodes": {"exact": 2}, "wt": "1m"})


def test_decorating_with_a_bad_option_fails_at_once():
    with pytest.raises(TaskOptionError, match="task .*square: invalid option wt='soon'"):
        @qcgflow.task(wt="soon")
        def square(x):
            return x * x


def test_options_returns_a_variant_and_leaves_the_task_alone():
    @qcgflow.task(cores=2)
    def f(x):
        return x
    variant = f.options(cores=4, wt="1m")
    assert (f.task_options, variant.task_options) == (
        {"cores": {"exact": 2}}, {"cores": {"exact": 4}, "wt": "1m"})


def test_options_validates_too():
    @qcgflow.task
    def f(x):
        return x
    with pytest.raises(TaskOptionError, match="did you mean 'retries'"):
        f.options(retry=2)


@pytest.mark.parametrize("make, fix", [
    (lambda: qcgflow.shell("echo", cores="all"), "cores=4"),
    (lambda: qcgflow.shell(""), "non-empty bash script"),
    (lambda: qcgflow.mpi("./a", model="mpich"), "'openmpi'"),
    (lambda: qcgflow.mpi("./a", args="-n 2"), "list of strings"),
    (lambda: qcgflow.mpi("./a", model_opts={"mpirun_args": [1]}), "list of non-empty"),
])
def test_command_templates_validate_options(make, fix):
    with pytest.raises(TaskOptionError) as info:
        make()
    assert fix in str(info.value)


def test_a_wall_time_alone_comes_with_one_core():
    assert job_fields(validate({"wt": "1m"}))[1] == {"wt": "1m", "numCores": {"exact": 1}}


def test_gpus_go_to_node_crs_and_zero_means_none():
    assert job_fields(validate({"gpus": 2, "cores": 4})) == (
        {}, {"numCores": {"exact": 4}, "nodeCrs": {"gpu": 2}})
    assert job_fields(validate({"gpus": 0})) == ({}, {})
