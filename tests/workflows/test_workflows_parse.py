"""Workflow files -> job descriptions: YAML and JSON alike, every field, golden output."""

import json

import pytest

from qcgflow.workflows.file import load_workflow

from workflows_harness import PYTHON, assert_golden, write

EVERY_FIELD = """
name: every_field
defaults:
  wt: 10m
  env: {OMP_NUM_THREADS: "1"}
tasks:
  prepare:
    exec: /bin/echo
    args: [hello, 3]
    stdin: in.txt
    stdout: prepare.txt
    stderr: prepare.log
    wd: work
    modules: [gcc/12]
    venv: /opt/venv
    retries: 2
  simulate:
    script: ./sim --x ${x} --seed ${seed} > out_${it}.txt
    foreach:
      x: [0.5, 1.5]
      seed: {range: [0, 6, 2]}
    cores: {min: 1, max: 2}
    scheduler: {name: split-into, params: {parts: 2}}
    after: [prepare]
  solver:
    exec: ./solver
    args: ["-n", "${itval}"]
    foreach: {range: [2]}
    nodes: 2
    cores: 4
    model: openmpi
    model_opts: {mpirun_args: ["--oversubscribe"]}
  analyse:
    after: [{task: simulate, per_iteration: true}, solver]
    exec: ./analyse
    args: ["${x}", "s${seed}"]
  summarize:
    python: wf_functions:summarize
    args: [1, two]
    kwargs: {scale: 3}
    after: [analyse]
  each:
    python: wf_functions:summarize
    foreach: [a, b]
"""

FUNCTIONS = "def summarize(*args, **kwargs):\n    return args, kwargs\n"


def every_field(tmp_path, extension):
    (tmp_path / "wf_functions.py").write_text(FUNCTIONS)
    text = EVERY_FIELD
    if extension == "json":
        import yaml
        return write(tmp_path, "wf.json", json.dumps(yaml.safe_load(text), indent=2))
    return write(tmp_path, "wf.yaml", text)


@pytest.mark.parametrize("extension", ["yaml", "json"])
def test_every_field_compiles_to_the_golden_jobs(tmp_path, extension):
    assert_golden("every_field", load_workflow(str(every_field(tmp_path, extension)),
                                               python=PYTHON).jobs)


def test_yaml_and_json_give_the_same_jobs(tmp_path):
    yaml_jobs = load_workflow(str(every_field(tmp_path, "yaml")), python=PYTHON).jobs
    assert load_workflow(str(every_field(tmp_path, "json")), python=PYTHON).jobs == yaml_jobs


def jobs_of(tmp_path, text):
    return {job["name"]: job for job in load_workflow(str(write(tmp_path, "wf.yaml", text)),
                                                      python=PYTHON).jobs}


def test_the_workflow_name_defaults_to_the_file_name(tmp_path):
    path = write(tmp_path, "my_flow.yaml", "tasks: {a: {exec: /bin/true}}")
    assert load_workflow(str(path)).name == "my_flow"


def test_a_value_sweep_is_one_iterative_job_over_the_values(tmp_path):
    jobs = jobs_of(tmp_path, "tasks: {a: {script: 'echo ${itval}', foreach: [x, 2, 3.5]}}")
    assert jobs["a"]["iteration"] == {"values": ["x", "2", "3.5"]}


def test_a_range_sweep_is_one_iterative_job_over_the_range(tmp_path):
    jobs = jobs_of(tmp_path, "tasks: {a: {script: 'echo ${itval}', foreach: {range: [1, 7, 2]}}}")
    assert jobs["a"]["iteration"] == {"values": ["1", "3", "5"]}


def test_one_named_parameter_is_itval(tmp_path):
    jobs = jobs_of(tmp_path, "tasks: {a: {exec: /bin/echo, args: ['p=${p}'], foreach: {p: [1, 2]}}}")
    assert jobs["a"]["execution"]["args"] == ["p=${itval}"]


def test_a_product_has_one_iteration_per_combination(tmp_path):
    jobs = jobs_of(tmp_path, "tasks: {a: {script: 'echo ${p} ${q}', foreach: {p: [1, 2], "
                             "q: [a, b, c]}}}")
    assert jobs["a"]["iteration"]["values"] == ["1,a", "1,b", "1,c", "2,a", "2,b", "2,c"]


def test_a_per_iteration_dependency_waits_for_the_same_iteration(tmp_path):
    jobs = jobs_of(tmp_path, """
        tasks:
          a: {script: 'echo ${itval}', foreach: [1, 2]}
          b: {script: 'echo ${itval}', after: [{task: a, per_iteration: true}]}
        """)
    assert jobs["b"]["dependencies"] == {"after": ["a:${it}"]}


def test_a_per_iteration_dependant_inherits_the_sweep(tmp_path):
    jobs = jobs_of(tmp_path, """
        tasks:
          a: {script: 'echo ${itval}', foreach: [1, 2]}
          b: {script: 'echo ${itval}', after: [{task: a, per_iteration: true}]}
        """)
    assert jobs["b"]["iteration"] == {"values": ["1", "2"]}


def test_task_options_override_the_defaults(tmp_path):
    jobs = jobs_of(tmp_path, "defaults: {cores: 2, wt: 1m}\ntasks: {a: {exec: /bin/true, "
                             "cores: 3}}")
    assert jobs["a"]["resources"] == {"numCores": {"exact": 3}, "wt": "1m"}


def test_gpus_in_defaults_and_tasks_become_node_crs(tmp_path):
    jobs = jobs_of(tmp_path, "defaults: {gpus: 1}\ntasks: {a: {exec: /bin/true},\n"
                             "  b: {exec: /bin/true, gpus: 2, nodes: 2}}")
    assert jobs["a"]["resources"] == {"numCores": {"exact": 1}, "nodeCrs": {"gpu": 1}}
    assert jobs["b"]["resources"] == {"numNodes": {"exact": 2}, "nodeCrs": {"gpu": 2}}


def test_jobs_come_in_dependency_order(tmp_path):
    jobs = load_workflow(str(write(tmp_path, "wf.yaml", """
        tasks:
          last: {exec: /bin/true, after: [first]}
          first: {exec: /bin/true}
        """))).jobs
    assert [job["name"] for job in jobs] == ["first", "last"]


def test_a_product_in_exec_args_runs_in_bash(tmp_path):
    jobs = jobs_of(tmp_path, "tasks: {a: {exec: /bin/echo, args: [\"${p}-${q}\"], foreach: "
                             "{p: [1, 2], q: [x]}}}")
    assert jobs["a"]["execution"]["script"].endswith(
        'exec /bin/echo "${__qcgflow_p[$(( ${it} / 1 % 2 ))]}"-'
        '"${__qcgflow_q[$(( ${it} / 1 % 1 ))]}"')
