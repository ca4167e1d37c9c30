"""Task results filling command-template placeholders (qcgflow/fill.py), run for real.

Every run starts a local service (``qcgflow.run``, warm workers on) or ``qcgflow service
--file-path`` on a compiled requests file (with and without warm workers): the fill helper
runs as the job's process and execs the real command.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import qcgflow
from qcgflow import fill
from qcgflow.build import payload
from qcgflow.errors import GraphError, TaskFailed
from qcgflow.build.payload import CommandResult

from graph_harness import run_wd
from upstream_venv import UPSTREAM, upstream_python  # tests/upstream_venv.py

DEADLINE = 60
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@qcgflow.task
def echo(value):
    return value


@qcgflow.task
def square(x):
    return x * x


@qcgflow.task
def mapping():
    return {"a": 1}


@qcgflow.task
def nothing():
    return None


def run(target, tmp_path, **kwargs):
    return qcgflow.run(target, nodes=2, wd=run_wd(tmp_path), timeout=DEADLINE, **kwargs)


def brackets(value):
    """A shell task printing each word ``${v}`` expands to in brackets."""
    return qcgflow.shell("printf '[%s]' ${v}").bind(v=echo.bind(value))


# --------------------------------------------------------------------------- rendering

@pytest.mark.parametrize("value, text", [
    (7, "[7]"),
    (2.5, "[2.5]"),
    ("plain", "[plain]"),
    ("two words", "[two words]"),          # shell-quoted: one word
    ("$HOME `id` *", "[$HOME `id` *]"),    # literal: no expansion at all
    ([1, "x y", "z"], "[1][x y][z]"),      # a list: one word per item
])
def test_a_python_result_fills_a_shell_template(tmp_path, value, text):
    assert run(brackets(value), tmp_path).read_stdout() == text


def test_a_command_result_fills_with_its_stdout_text(tmp_path):
    first = qcgflow.shell("echo 21; echo").bind()
    second = qcgflow.shell("echo $(( ${n} * 2 ))").bind(n=first)
    assert run(second, tmp_path).read_stdout() == "42\n"


def test_a_mapped_ref_bound_whole_fills_with_all_its_results(tmp_path):
    total = qcgflow.shell("echo ${values}").bind(values=square.map([1, 2, 3]))
    assert run(total, tmp_path).read_stdout() == "1 4 9\n"


def test_element_wise_map_gives_iteration_i_element_i(tmp_path):
    squares = square.map([3, 4, 5])
    out = run(qcgflow.shell("echo ${it}:${itval}").map(squares), tmp_path)
    assert [r.read_stdout() for r in out] == ["0:9\n", "1:16\n", "2:25\n"]


def test_element_wise_map_over_a_mapped_command_gives_its_stdout(tmp_path):
    first = qcgflow.shell("echo ${itval}").map(["a", "b"])
    out = run(qcgflow.shell("echo ${itval}0").map(first), tmp_path)
    assert [r.read_stdout() for r in out] == ["a0\n", "b0\n"]


def test_runtime_variables_and_escapes_still_work(tmp_path):
    template = qcgflow.shell("echo ${x} ${it} ${itval} ${ncores} $$ ${jname}", cores=2)
    out = run(template.map(["a", "b"], x=echo.bind("r")), tmp_path)
    assert [r.read_stdout() for r in out] == ["r 0 a 2 $ shell-0\n", "r 1 b 2 $ shell-0\n"]


def test_shell_variables_are_left_to_the_shell(tmp_path):
    out = run(qcgflow.shell("X=5; echo ${x}$X").bind(x=echo.bind("v")), tmp_path)
    assert out.read_stdout() == "v5\n"


def test_an_mpi_template_inserts_text_unquoted_in_its_args(tmp_path):
    solver = qcgflow.mpi("/bin/echo", args=["-n", "${x}", "${ncores}"], cores=2,
                         model="threads")
    assert run(solver.bind(x=echo.bind("a b")), tmp_path).read_stdout() == "a b 2"


@pytest.mark.skipif(shutil.which("mpirun") is None,
                    reason="needs Open MPI's mpirun (apt-get install openmpi-bin)")
def test_every_mpi_rank_runs_the_filled_program(tmp_path, monkeypatch):
    for key, value in MPI_ENV.items():
        monkeypatch.setenv(key, value)
    solver = qcgflow.mpi("/bin/sh", args=["-c", "echo ${x} rank $OMPI_COMM_WORLD_RANK"],
                         cores=2, model="openmpi")
    out = run(solver.bind(x=echo.bind(42)), tmp_path).read_stdout()
    assert sorted(out.splitlines()) == ["42 rank 0", "42 rank 1"]


# --------------------------------------------------------------------------- the process

def test_a_failing_filled_command_fails_with_its_exit_code(tmp_path):
    with pytest.raises(TaskFailed, match="exit code 3"):
        run(qcgflow.shell("exit ${code}").bind(code=echo.bind(3)), tmp_path)


def test_the_real_commands_stderr_is_the_tasks(tmp_path):
    task = qcgflow.shell("echo oops ${x} >&2", name="errs").bind(x=echo.bind(1))
    run(task, tmp_path)
    assert (tmp_path / "run" / "errs.err").read_text() == "oops 1\n"


def test_the_real_command_starts_with_default_signals(tmp_path):
    # With SIGPIPE ignored (Python's setting, kept across exec), `yes` would complain
    # about a broken pipe on stderr.
    task = qcgflow.shell("yes | head -n 1 >/dev/null; echo ${x}", name="pipe").bind(
        x=echo.bind(1))
    run(task, tmp_path)
    assert not (tmp_path / "run" / "pipe.err").exists()  # created only when written


def test_the_filled_command_replaces_the_helper_process(tmp_path):
    # exec, not a child: the shell's parent is what the runtime started it from (the
    # service or its warm worker), never a fill helper waiting for it.
    task = qcgflow.shell("tr '\\0' ' ' < /proc/$PPID/cmdline; echo ${x}", name="pid").bind(
        x=echo.bind(1))
    assert "qcgflow.fill" not in run(task, tmp_path).read_stdout()


def test_wall_time_is_enforced_on_the_real_command(tmp_path):
    started = time.monotonic()
    with pytest.raises(TaskFailed, match="wall time"):
        run(qcgflow.shell("sleep ${s}", wt=1).bind(s=echo.bind(30)), tmp_path)
    assert time.monotonic() - started < 20


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("producer, said", [
    (mapping, "a dict has no text form"),
    (nothing, "None"),
])
def test_a_result_without_text_is_a_clear_error(tmp_path, producer, said):
    task = qcgflow.shell("echo ${x}", name="consumer").bind(x=producer.bind())
    with pytest.raises(TaskFailed) as caught:
        run(task, tmp_path)
    first = str(caught.value).splitlines()[0]
    assert "consumer: ${x} from the result of task %s-0" % producer.__name__ in first
    assert said in first


def test_a_render_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="nested list"):
        run(qcgflow.shell("echo ${x}").bind(x=echo.bind([[1]])), tmp_path)


def test_a_render_error_is_one_line_on_the_tasks_stderr(tmp_path):
    task = qcgflow.shell("echo ${x}", name="bad").bind(x=mapping.bind())
    with pytest.raises(TaskFailed):
        run(task, tmp_path)
    lines = (tmp_path / "run" / "bad.err").read_text().splitlines()
    assert lines == ["qcgflow: task bad: ${x} from the result of task mapping-0: a dict has "
                     "no text form to fill ${x}: return a str, a number, a path or a list "
                     "of them"]


def test_a_ref_nested_in_a_value_is_refused_when_binding():
    with pytest.raises(GraphError, match=r"\$\{x\} holds a ref inside a list"):
        qcgflow.shell("echo ${x}").bind(x=[echo.bind(1)])


def test_a_missing_spec_file_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "qcgflow.fill", str(tmp_path / "none.json"),
                           ""], capture_output=True, text=True, timeout=DEADLINE)
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)


def test_render_of_a_command_result_strips_trailing_newlines(tmp_path):
    out = tmp_path / "out"
    out.write_text("5\n\n")
    result = CommandResult(0, str(tmp_path), str(out), str(out))
    assert fill.render(result, "x", quote=True) == "5"


# --------------------------------------------------------------------------- compile

def filled_pipeline():
    squares = square.map([1, 2])
    first = qcgflow.shell("echo ${it}-${itval}", name="elements").map(squares)
    return qcgflow.shell("echo ${lines} ${total}", name="summary").bind(
        lines=first, total=echo.bind("t"))


def test_compile_runs_the_fill_helper_with_the_runtime_variables():
    job = qcgflow.compile(filled_pipeline(), python="python3")[-1]
    assert job["execution"]["args"] == ["-m", "qcgflow.fill",
                                        "${root_wd}/.qcgflow/summary/fill.json", "${it}"]


def test_compile_keeps_dependencies_from_the_refs():
    jobs = {job["name"]: job for job in qcgflow.compile(filled_pipeline(), python="python3")}
    assert jobs["summary"]["dependencies"] == {"after": ["elements", "echo-0"]}


def test_compile_writes_the_fill_spec_beside_the_call_files(tmp_path):
    qcgflow.compile(filled_pipeline(), path=str(tmp_path / "reqs.json"), python="python3")
    spec = json.loads((tmp_path / ".qcgflow" / "elements" / "fill.json").read_text())
    assert spec["refs"]["itval"] == {"producer": "square-0", "iterations": 2,
                                     "element": True, "python": "square-0"}


@pytest.mark.parametrize("service_args", [[], ["--disable-warm-workers"]],
                         ids=["warm", "cold"])
def test_a_compiled_requests_file_gives_the_same_outputs(tmp_path, service_args):
    expected = run(filled_pipeline(), tmp_path).read_stdout()
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    path = compiled / "reqs.json"
    qcgflow.compile(filled_pipeline(), path=str(path))
    subprocess.run([sys.executable, "-m", "qcgflow.cli", "service", "--file-path", str(path),
                    "--wd", str(compiled), "--nodes", "2"] + service_args, check=True,
                   timeout=DEADLINE, capture_output=True)
    assert (compiled / "summary.out").read_text() == expected


def test_upstream_runs_a_compiled_requests_file_with_filled_templates(tmp_path):
    try:
        service = str(upstream_python().parent / "qcg-pm-service")
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip("needs %s in a side venv, which could not be installed (%s)"
                    % (UPSTREAM, exc))
    path = tmp_path / "reqs.json"
    qcgflow.compile(filled_pipeline(), path=str(path))  # jobs run this python: qcgflow in it
    done = subprocess.run([service, "--file-path", str(path), "--nodes", "2", "--wd",
                           str(tmp_path)], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=DEADLINE, start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "summary.out").read_text() == "0-1 1-4 t\n"


def test_the_expected_pipeline_output(tmp_path):
    assert run(filled_pipeline(), tmp_path).read_stdout() == "0-1 1-4 t\n"


def test_the_fill_helper_module_is_lean():
    code = "import sys, qcgflow.fill; print(sorted(m for m in sys.modules if m in " \
           "('networkx', 'zmq', 'cloudpickle', 'qcgflow.build.payload', 'qcgflow.graph.graph')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=DEADLINE, env=dict(os.environ))
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("it", [None, 3])
def test_fill_reads_the_result_files_payload_writes(it):
    assert fill.result_path("/r/.qcgflow", "job", it) == \
        os.path.join("/r/.qcgflow", payload.result_file("job", it))


def test_fill_reads_the_stdout_files_a_command_writes():
    output = payload.CommandOutput("sub/${it}", "job.${it}.out", "job.${it}.err", 2, True)
    assert fill.stdout_path("/r", [output.wd, output.stdout, output.stderr], 1) == \
        output.result("/r", 1).stdout


def test_a_filled_command_is_retried(tmp_path):
    flaky = qcgflow.shell("test -e once || { touch once; exit 1; }; echo ${x}", retries=1)
    assert run(flaky.bind(x=echo.bind("second")), tmp_path).read_stdout() == "second\n"


def test_a_filled_iteration_is_retried(tmp_path):
    flaky = qcgflow.shell("test -e once.${it} || { touch once.${it}; exit 1; }; "
                          "echo ${itval}", retries=1)
    out = run(flaky.map(square.map([2, 3])), tmp_path)
    assert [r.read_stdout() for r in out] == ["4\n", "9\n"]


def test_resume_reruns_a_filled_command_when_its_producer_changes(tmp_path):
    def graph(x):
        return qcgflow.shell("echo ${v}").bind(v=echo.bind(x))
    run(graph(1), tmp_path)
    # the runtime appends to an existing <job>.out: the last line is this run's
    assert run(graph(2), tmp_path, resume=True).read_stdout().splitlines()[-1] == "2"
