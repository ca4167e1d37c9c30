"""compile: graphs -> standard job descriptions, checked against golden JSON files."""

import json
import subprocess
import sys

import pytest

import qcgflow
from qcgflow.build import payload
from qcgflow.build.compile import compile_graph
from qcgflow.graph.graph import Graph
from qcgflow.runtime.protocol import parse_job

from graph_harness import PYTHON, assert_golden


@qcgflow.task
def source(x):
    return x


@qcgflow.task
def add(*values):
    return sum(values)


def single():
    return source.bind(1)


def diamond():
    top = source.bind(1)
    return add.bind(add.bind(top, 1), add.bind(top, 2))


def fan_in():
    return add.bind(*[source.bind(i) for i in range(3)])


def mapped():
    return add.bind(source.map(range(4)))


def element_wise():
    return add.map(source.map([1, 2, 3]), 10)


def shell_template():
    sweep = qcgflow.shell("./sim --seed ${seed} --case ${itval} > case_${it}.txt")
    cases = sweep.map(["a", "b"], seed=7)
    return qcgflow.shell("cat case_*.txt > all.txt", name="gather").bind(after=[cases])


def mpi_template():
    solver = qcgflow.mpi("./solver", args=["-n", "${n}", "--threads", "${ncores}"], cores=8,
                         model="openmpi", model_opts={"mpirun_args": ["--map-by", "core"]})
    return solver.bind(n=100)


def with_options():
    heavy = source.options(cores={"min": 2}, nodes=1, wt="10m",
                           env={"OMP_PLACES": "cores"}, wd="work", modules=["gcc/12"],
                           venv="/opt/venv", retries=2, name="heavy", model="threads",
                           scheduler="maximum-iters")
    return heavy.map(range(2))


def command_into_python():
    return add.bind(qcgflow.shell("echo 1", wd="w").bind())


GRAPHS = {f.__name__: f for f in (single, diamond, fan_in, mapped, element_wise,
                                   shell_template, mpi_template, with_options,
                                   command_into_python)}


@pytest.mark.parametrize("name", GRAPHS)
def test_compiles_to_the_golden_jobs(name):
    assert_golden(name, qcgflow.compile(GRAPHS[name](), python=PYTHON))


@pytest.mark.parametrize("name", GRAPHS)
def test_every_job_is_a_valid_description(name):
    for job in qcgflow.compile(GRAPHS[name](), python=PYTHON):
        parse_job(job, {})


def test_compile_is_pure():
    graph = Graph.build(diamond())
    assert compile_graph(graph, PYTHON) == compile_graph(graph, PYTHON)


def test_python_tasks_run_with_this_interpreter_by_default():
    assert qcgflow.compile(single())[0]["execution"]["exec"] == sys.executable


def test_whole_and_element_dependencies_on_one_job_keep_the_whole():
    m = source.map([1, 2])
    job = qcgflow.compile(add.map(m, m), python=PYTHON)[-1]
    assert job["dependencies"] == {"after": ["source-0"]}


def test_compile_with_path_writes_a_requests_file(tmp_path):
    path = tmp_path / "reqs.json"
    jobs = qcgflow.compile(diamond(), path=str(path), python=PYTHON)
    assert json.loads(path.read_text()) == [
        {"request": "submit", "jobs": jobs},
        {"request": "control", "command": "finishAfterAllTasksDone"}]


def test_compile_with_path_writes_the_call_files(tmp_path):
    qcgflow.compile(diamond(), path=str(tmp_path / "reqs.json"))
    calls = sorted(p.parent.name for p in tmp_path.glob(".qcgflow/*/call.pkl"))
    assert calls == ["add-0", "add-1", "add-2", "source-0"]


def test_a_compiled_requests_file_runs_on_the_service(tmp_path):
    path = tmp_path / "reqs.json"
    qcgflow.compile(diamond(), path=str(path))
    subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--file-path", str(path),
                    "--wd", str(tmp_path), "--nodes", "2"], check=True, timeout=60,
                   capture_output=True)
    result = payload.read_result(str(tmp_path / ".qcgflow" / "add-2" / "result.pkl"))
    assert result == ("ok", 5)
