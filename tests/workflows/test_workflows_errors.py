"""Every bad workflow file gives ONE line: ``file:line: path: problem`` (never a traceback)."""

import json

import pytest

from qcgflow.errors import GraphError
from qcgflow.workflows.file import WorkflowFileError, load_workflow

from support.services import cli
from workflows_harness import write

# (name, YAML text, expected message after "wf.yaml:")
CASES = [
    ("unknown_top_key", "tasks: {a: {exec: x}}\nvars: 1\n",
     "2: vars: unknown key; the keys are: name, defaults, tasks"),
    ("not_a_mapping", "- a\n- b\n", "1: a workflow file is a mapping"),
    ("no_tasks", "name: x\n", "1: expected 'tasks'"),
    ("empty_tasks", "tasks: {}\n", "1: tasks: expected 'tasks'"),
    ("bad_name", "name: 3\ntasks: {a: {exec: x}}\n", "1: name: expected a non-empty string"),
    ("unknown_task_key", "tasks:\n  a:\n    exec: x\n    core: 2\n",
     "4: tasks.a.core: unknown key; did you mean 'cores'?"),
    ("cores_not_a_count", "tasks:\n  simulate:\n    exec: x\n    cores: many\n",
     "4: tasks.simulate.cores: invalid value \"many\": use a positive integer or a range"),
    ("cores_min_above_max", "tasks:\n  a:\n    exec: x\n    cores: {min: 4, max: 2}\n",
     "4: tasks.a.cores: invalid value"),
    ("bad_wall_time", "tasks:\n  a:\n    exec: x\n    wt: soon\n", "4: tasks.a.wt: invalid value"),
    ("bad_model", "tasks:\n  a:\n    exec: x\n    model: mpich\n",
     "4: tasks.a.model: invalid value \"mpich\": use one of"),
    ("bad_env", "tasks:\n  a:\n    exec: x\n    env: [A]\n", "4: tasks.a.env: invalid value"),
    ("bad_retries", "tasks:\n  a:\n    exec: x\n    retries: -1\n",
     "4: tasks.a.retries: invalid value -1"),
    ("bad_default", "defaults:\n  nodes: 0\ntasks: {a: {exec: x}}\n",
     "2: defaults.nodes: invalid value 0"),
    ("unknown_default", "defaults:\n  name: x\ntasks: {a: {exec: x}}\n",
     "2: defaults.name: unknown key"),
    ("scheduler_without_range", "tasks:\n  a:\n    exec: x\n    scheduler: maximum-iters\n",
     "4: tasks.a.scheduler: invalid value"),
    ("bad_task_name", "tasks:\n  'a b':\n    exec: x\n", "2: tasks.a b: invalid task name"),
    ("no_kind", "tasks:\n  a:\n    cores: 1\n",
     "2: tasks.a: a task needs exactly one of exec, script or python, got none"),
    ("two_kinds", "tasks:\n  a:\n    exec: x\n    script: y\n",
     "2: tasks.a: a task needs exactly one of exec, script or python, got exec, script"),
    ("empty_script", "tasks:\n  a:\n    script: ''\n", "3: tasks.a.script: expected a non-empty"),
    ("args_not_a_list", "tasks:\n  a:\n    exec: x\n    args: -v\n", "4: tasks.a.args: expected a list"),
    ("bad_arg", "tasks:\n  a:\n    exec: x\n    args:\n      - ok\n      - [no]\n",
     "6: tasks.a.args[1]: expected a string or a number"),
    ("script_with_args", "tasks:\n  a:\n    script: x\n    args: [1]\n",
     "4: tasks.a.args: a script takes no args"),
    ("kwargs_of_exec", "tasks:\n  a:\n    exec: x\n    kwargs: {a: 1}\n",
     "4: tasks.a.kwargs: kwargs are for python tasks only"),
    ("bad_stdout", "tasks:\n  a:\n    exec: x\n    stdout: 3\n", "4: tasks.a.stdout: expected a file"),
    ("unknown_after", "tasks:\n  a:\n    exec: x\n  b:\n    exec: y\n    after: [c]\n",
     "6: tasks.b.after[0]: unknown task 'c'"),
    ("after_itself", "tasks:\n  a:\n    exec: x\n    after: [a]\n",
     "4: tasks.a.after[0]: a task cannot run after itself"),
    ("cycle", "tasks:\n  a:\n    exec: x\n    after: [b]\n  b:\n    exec: y\n    after: [a]\n",
     "4: tasks.a.after: dependency cycle: a -> b -> a"),
    ("bad_after_entry", "tasks:\n  a: {exec: x}\n  b:\n    exec: y\n    after:\n      - 3\n",
     "6: tasks.b.after[0]: expected a task name"),
    ("bad_after_key", "tasks:\n  a: {exec: x}\n  b:\n    exec: y\n    after:\n"
                      "      - {task: a, each: true}\n",
     "6: tasks.b.after[0].each: unknown key"),
    ("per_iteration_without_sweep", "tasks:\n  a: {exec: x}\n  b:\n    exec: y\n    after:\n"
                                    "      - {task: a, per_iteration: true}\n",
     "6: tasks.b.after[0]: a per-iteration dependency needs a sweep"),
    ("per_iteration_sizes", "tasks:\n  a: {exec: x, foreach: [1, 2]}\n  b:\n    exec: y\n"
                            "    foreach: [1, 2, 3]\n    after:\n"
                            "      - {task: a, per_iteration: true}\n",
     "7: tasks.b.after[0]: a per-iteration dependency needs sweeps of equal size"),
    ("empty_foreach", "tasks:\n  a:\n    exec: x\n    foreach: []\n",
     "4: tasks.a.foreach: an empty list of values"),
    ("foreach_scalar", "tasks:\n  a:\n    exec: x\n    foreach: 3\n",
     "4: tasks.a.foreach: expected a list of values or {range"),
    ("foreach_bad_value", "tasks:\n  a:\n    exec: x\n    foreach:\n      - 1\n      - {b: 2}\n",
     "6: tasks.a.foreach[1]: sweep values must be strings or numbers"),
    ("bad_range", "tasks:\n  a:\n    exec: x\n    foreach: {range: [0, a]}\n",
     "4: tasks.a.foreach.range: expected [stop], [start, stop] or [start, stop, step]"),
    ("empty_range", "tasks:\n  a:\n    exec: x\n    foreach: {range: [5, 1]}\n",
     "4: tasks.a.foreach.range: the range [5, 1] is empty"),
    ("zero_step", "tasks:\n  a:\n    exec: x\n    foreach: {range: [0, 5, 0]}\n",
     "4: tasks.a.foreach.range: the step of a range cannot be 0"),
    ("bad_parameter_name", "tasks:\n  a:\n    exec: x\n    foreach:\n      it: [1]\n",
     "5: tasks.a.foreach.it: a parameter name must be an identifier"),
    ("bad_parameter_values", "tasks:\n  a:\n    exec: x\n    foreach:\n      p: 3\n",
     "5: tasks.a.foreach.p: expected a list of values"),
    ("product_in_stdout", "tasks:\n  a:\n    exec: x\n    foreach: {p: [1], q: [2]}\n"
                          "    stdout: out_${p}\n",
     "5: tasks.a.stdout: the parameters of a product sweep cannot name a file"),
    ("bad_python", "tasks:\n  a:\n    python: nocolon\n",
     "3: tasks.a.python: expected 'module:function'"),
    ("python_missing_module", "tasks:\n  a:\n    python: no_such_module_xyz:f\n",
     "3: tasks.a.python: cannot import 'no_such_module_xyz'"),
    ("python_missing_function", "tasks:\n  a:\n    python: json:no_such_function\n",
     "3: tasks.a.python: 'json' has no function 'no_such_function'"),
    ("python_stdout", "tasks:\n  a:\n    python: json:dumps\n    stdout: x\n",
     "4: tasks.a.stdout: a python task's output goes to"),
    ("duplicate_key", "tasks:\n  a:\n    exec: x\n    exec: y\n", "4: tasks.a.exec: duplicate key"),
    ("yaml_syntax", "tasks:\n  a:\n    exec: [x\n    cores: 1\n", "4: YAML syntax error"),
    ("empty_file", "", "1: the file is empty"),
]


def message(tmp_path, text, name="wf.yaml"):
    path = write(tmp_path, name, text)
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(str(path), file=name)
    return str(info.value)


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_file_names_the_file_the_line_and_the_path(tmp_path, text, expected):
    assert message(tmp_path, text).startswith("wf.yaml:" + expected)


@pytest.mark.parametrize("text", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_the_message_is_one_line(tmp_path, text):
    assert "\n" not in message(tmp_path, text)


def test_a_workflow_file_error_is_a_graph_error(tmp_path):
    with pytest.raises(GraphError):
        load_workflow(str(write(tmp_path, "wf.yaml", "tasks: {}")))


JSON_CASES = [
    ("cores", '{\n  "tasks": {\n    "simulate": {\n      "exec": "x",\n      "cores": "many"\n'
              '    }\n  }\n}\n', 'wf.json:5: tasks.simulate.cores: invalid value "many"'),
    ("after", '{"tasks": {\n "a": {"exec": "x"},\n "b": {"exec": "y",\n  "after": [\n'
              '   "a",\n   "c"]}}}', "wf.json:6: tasks.b.after[1]: unknown task 'c'"),
    ("syntax", '{\n  "tasks": {\n    "a": {"exec": "x",}\n  }\n}\n', "wf.json:3: JSON syntax error"),
    ("duplicate", '{"tasks": {"a": {"exec": "x"}},\n "tasks": {}}', "wf.json:2: tasks: duplicate key"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in JSON_CASES],
                         ids=[c[0] for c in JSON_CASES])
def test_json_errors_name_the_line_too(tmp_path, text, expected):
    assert message(tmp_path, text, "wf.json").startswith(expected)


@pytest.mark.parametrize("text", [c[1] for c in CASES[:3]], ids=[c[0] for c in CASES[:3]])
def test_yaml_and_json_give_the_same_error(tmp_path, text):
    import yaml
    data = yaml.safe_load(text)
    assert message(tmp_path, json.dumps(data), "wf.json").split(":", 2)[2] == \
        message(tmp_path, text).split(":", 2)[2]


def test_qcgflow_run_prints_the_one_line_without_a_traceback(tmp_path):
    path = write(tmp_path, "wf.yaml", "tasks:\n  simulate:\n    exec: x\n    cores: many\n")
    result = cli("run", path.name, "--wd", tmp_path / "run", cwd=tmp_path)
    assert (result.returncode, result.stderr.startswith(
        "qcgflow run: wf.yaml:4: tasks.simulate.cores:"), "Traceback" in result.stderr) == \
        (2, True, False)
