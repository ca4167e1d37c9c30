"""``qcgflow run | compile | status`` end to end: real services, real task processes."""

import json
import os
import shutil
import pty
import subprocess
import sys
import time

import pytest

from support.processes import child_env
from support.services import cli
from workflows_harness import DEADLINE, EXAMPLES, write

FAILING = """
tasks:
  fine:
    exec: /bin/true
  broken:
    script: echo broken on purpose >&2; exit 3
    after: [fine]
  never:
    exec: /bin/true
    after: [broken]
"""


def run(tmp_path, workflow, *more):
    return cli("run", workflow, "--nodes", "2", "--wd", tmp_path / "run", *more, cwd=tmp_path)


# --------------------------------------------------------------------------- help

@pytest.mark.parametrize("command", ["run", "compile", "status", "service", "report",
                                     "processes"])
def test_qcgflow_help_lists_every_subcommand(command):
    assert "\n  %s " % command in cli("--help").stdout


@pytest.mark.parametrize("command", ["run", "compile", "status", "service", "report",
                                     "processes"])
def test_every_subcommand_has_help(command):
    result = cli(command, "--help")
    assert (result.returncode, result.stdout.startswith("usage: qcgflow %s" % command)) == \
        (0, True)


# --------------------------------------------------------------------------- examples

def test_the_hello_example_prints_its_greeting(tmp_path):
    assert run(tmp_path, EXAMPLES / "hello.yaml").returncode == 0
    assert (tmp_path / "run" / "hello.out").read_text().startswith("Hello from qcgflow on ")


def test_the_diamond_example_passes_data_through_files(tmp_path):
    assert run(tmp_path, EXAMPLES / "diamond.yaml").returncode == 0
    outputs = {name: (tmp_path / "run" / name).read_text() for name in ("b.txt", "c.txt", "d.txt")}
    assert outputs == {"b.txt": "sum 55\n", "c.txt": "max 10\n", "d.txt": "sum 55 max 10\n"}


def test_the_yaml_sweep_example_writes_its_summary(tmp_path):
    assert run(tmp_path, EXAMPLES / "sweep.yaml").returncode == 0
    assert len((tmp_path / "run" / "sweep" / "summary.txt").read_text().splitlines()) == 8


def test_the_yaml_sweep_gives_the_results_of_the_requests_file(tmp_path):
    run(tmp_path, EXAMPLES / "sweep.yaml")
    cli("run", EXAMPLES / "sweep.json", "--nodes", "2", "--wd", tmp_path / "json", cwd=tmp_path)
    assert (tmp_path / "run" / "sweep" / "summary.txt").read_text() == \
        (tmp_path / "json" / "sweep" / "summary.txt").read_text()


def test_a_requests_file_runs_with_qcgflow_run(tmp_path):
    assert run(tmp_path, EXAMPLES / "sweep.json").returncode == 0


def test_the_pipeline_example_runs_every_combination(tmp_path):
    assert run(tmp_path, EXAMPLES / "pipeline.yaml").returncode == 0
    assert (tmp_path / "run" / "report.txt").read_text().splitlines()[-1] == \
        "model quadratic seed 3 value 90 ok"


def test_the_python_tasks_example_computes_the_total(tmp_path):
    assert run(tmp_path, EXAMPLES / "python_tasks.yaml").returncode == 0
    assert (tmp_path / "run" / "total.txt").read_text() == "385\n"


def test_the_mpi_ensemble_example_runs_its_members(tmp_path):
    missing = [tool for tool in ("mpicc", "mpirun") if shutil.which(tool) is None]
    if missing:
        pytest.skip("Open MPI is not installed (%s missing): apt-get install openmpi-bin "
                    "libopenmpi-dev, or bash ci/dev-cluster/dev-cluster.sh up"
                    % ", ".join(missing))
    result = cli("run", EXAMPLES / "mpi_ensemble.yaml", "--nodes", "4", "--wd",
                 tmp_path / "run", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "ensemble.txt").read_text().splitlines() == [
        "member %d: 2 ranks, sum %d" % (seed, 3 * seed) for seed in range(1, 5)]


@pytest.mark.parametrize("how", ["nodes", "cuda"])
def test_the_gpu_ensemble_example_shares_no_gpu_between_overlapping_members(tmp_path, how):
    args = ["--nodes", "n0:4:gpus=0+1"] if how == "nodes" else []
    env = {"CUDA_VISIBLE_DEVICES": "0,1"} if how == "cuda" else {}
    result = cli("run", EXAMPLES / "gpu_ensemble.yaml", *args, "--wd", tmp_path / "run",
                 "--quiet", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    members = (tmp_path / "run" / "members.txt").read_text().split("\n")[:-1]
    assert sorted(line.split()[3] for line in members) == ["0"] * 3 + ["1"] * 3
    assert (tmp_path / "run" / "gpus.txt").read_text().endswith(
        "6 members, no GPU shared by overlapping members\n")


def test_the_gpu_ensemble_example_without_gpus_is_refused_at_submit(tmp_path):
    result = cli("run", EXAMPLES / "gpu_ensemble.yaml", "--nodes", "2", "--wd",
                 tmp_path / "run", "--quiet", cwd=tmp_path)
    assert result.returncode != 0
    assert "resources.nodeCrs.gpu" in result.stderr and "Traceback" not in result.stderr


def test_the_python_api_example_runs_as_a_script(tmp_path):
    result = cli("run", EXAMPLES / "api_sweep.py", cwd=tmp_path,
                 env={"QCGFLOW_EXAMPLE_WD": str(tmp_path / "api")})
    assert (result.returncode, result.stdout) == (0, "sum of squares: 204\n")


def test_every_example_is_tested():
    tested = {"hello.yaml", "diamond.yaml", "sweep.yaml", "sweep.json", "pipeline.yaml",
              "python_tasks.yaml", "api_sweep.py", "mpi_ensemble.yaml", "gpu_ensemble.yaml",
              "easyvvuq_pce.py",  # in tests/easyvvuq (needs easyvvuq: a side venv)
              "md_ensemble.yaml",  # in tests/slurm/test_md_ensemble.py (LAMMPS, Slurm)
              "md_ensemble_api.py"}  # in tests/slurm/test_md_ensemble_api.py (LAMMPS, Slurm)
    helpers = {"stats.py", "easyvvuq_model.py"}
    assert {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".json", ".py")} \
        == tested | helpers


def test_every_example_is_listed_in_the_examples_readme():
    readme = (EXAMPLES / "README.md").read_text()
    assert [p.name for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".yaml", ".json", ".py")
            and "`%s`" % p.name not in readme] == []


def test_the_md_ensemble_example_is_valid_without_lammps_or_slurm(tmp_path):
    # the Slurm test that runs it skips without LAMMPS: check here that the file still loads
    # (its LAMMPS input's \${T} is left to LAMMPS) and that T reaches lmp's arguments
    result = cli("compile", EXAMPLES / "md_ensemble.yaml", "-o", tmp_path / "reqs.json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "reqs.json").read_text()
    assert "velocity all create ${T} 87287" in text and '"${itval}"' in text, text


# --------------------------------------------------------------------------- failures

def test_a_failing_task_makes_the_exit_code_non_zero(tmp_path):
    assert run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet").returncode == 1


def test_the_summary_names_the_failed_task_and_its_reason(tmp_path):
    out = run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet").stdout
    assert "  broken           FAILED   exit code 3" in out


def test_the_summary_says_where_the_stderr_of_a_failed_task_is(tmp_path):
    out = run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet").stdout
    assert "stderr: %s" % (tmp_path / "run" / "broken.err") in out


def test_the_stderr_named_in_the_summary_holds_the_tasks_output(tmp_path):
    run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet")
    assert (tmp_path / "run" / "broken.err").read_text() == "broken on purpose\n"


def test_the_summary_counts_the_states(tmp_path):
    out = run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet").stdout
    assert [line.split() for line in out.splitlines()[3:6]] == \
        [["SUCCEED", "1", "0"], ["FAILED", "1", "0"], ["OMITTED", "1", "0"]]


def test_a_failing_python_task_is_reported_with_its_exception(tmp_path):
    (tmp_path / "wf_failing.py").write_text("def f(x):\n    raise KeyError(x)\n")
    path = write(tmp_path, "wf.yaml", "tasks:\n  f:\n    python: wf_failing:f\n    args: [k]\n")
    assert "raised KeyError: 'k'" in run(tmp_path, path, "--quiet").stdout


def test_a_failing_script_makes_the_exit_code_non_zero(tmp_path):
    path = write(tmp_path, "script.py", "raise SystemExit(4)\n")
    assert cli("run", path, cwd=tmp_path).returncode == 4


def test_a_script_refuses_nodes(tmp_path):
    path = write(tmp_path, "script.py", "print('never')\n")
    assert cli("run", path, "--nodes", "2", cwd=tmp_path).returncode == 2


def test_resume_without_wd_is_refused_with_a_message(tmp_path):
    result = cli("run", EXAMPLES / "sweep.yaml", "--resume", cwd=tmp_path)
    assert (result.returncode, "--resume needs --wd DIR" in result.stderr) == (2, True)


def test_a_missing_file_is_a_usage_error(tmp_path):
    assert cli("run", tmp_path / "none.yaml", cwd=tmp_path).returncode == 2


# --------------------------------------------------------------------------- progress

SLOW = """
tasks:
  wait:
    script: sleep 1.5
"""


def test_progress_lines_go_to_stderr_when_not_a_terminal(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", SLOW), "--interval", "0.2")
    assert "0/1 tasks done" in result.stderr


def test_quiet_prints_no_progress(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", SLOW), "--interval", "0.2", "--quiet")
    assert result.stderr == ""


def test_a_terminal_gets_a_live_progress_bar(tmp_path):
    master, slave = pty.openpty()
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "qcgflow.cli", "run",
                             str(write(tmp_path, "wf.yaml", SLOW)), "--wd",
                             str(tmp_path / "run")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, cwd=tmp_path, env=env)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal is closed: the run is over
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    proc.wait(DEADLINE)
    text = output.decode(errors="replace")
    # rich's bar redrawn in place: bar glyphs, "done/total", and cursor control codes
    assert ("━" in text, "0/1" in text, "1/1" in text, "\x1b[" in text) == \
        (True, True, True, True), text[-500:]


# --------------------------------------------------------------------------- compile

def test_compile_writes_a_requests_file_the_service_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cli("compile", EXAMPLES / "python_tasks.yaml", "-o", out / "reqs.json", cwd=tmp_path)
    result = cli("service", "--file-path", out / "reqs.json", "--nodes", "2", "--wd", out,
                 cwd=tmp_path)
    assert (result.returncode, (out / "total.txt").read_text()) == (0, "385\n")


def test_compile_without_output_prints_the_requests(tmp_path):
    result = cli("compile", EXAMPLES / "sweep.yaml", cwd=tmp_path)
    assert [job["name"] for job in json.loads(result.stdout)[0]["jobs"]] == \
        ["prepare", "simulate", "collect"]


def test_compile_refuses_a_requests_file(tmp_path):
    assert cli("compile", EXAMPLES / "sweep.json", cwd=tmp_path).returncode == 2


# --------------------------------------------------------------------------- status

def test_status_of_a_finished_run(tmp_path):
    run(tmp_path, EXAMPLES / "sweep.yaml", "--quiet")
    result = cli("status", tmp_path / "run")
    assert (result.returncode, "finished" in result.stdout.splitlines()[0]) == (0, True)


def test_status_of_a_failed_run_names_the_failure(tmp_path):
    run(tmp_path, write(tmp_path, "wf.yaml", FAILING), "--quiet")
    result = cli("status", tmp_path / "run")
    assert (result.returncode, "broken           FAILED   exit code 3" in result.stdout) == \
        (1, True)


def test_status_of_a_running_run(tmp_path):
    service = tmp_path / "run" / ".qcgpjm-service-host.1"
    service.mkdir(parents=True)
    (service / "jobs.report").write_text('{"name": "a", "state": "SUCCEED"}\n')
    (tmp_path / "run" / "qcgflow-run.json").write_text(json.dumps(
        {"title": "workflow w", "requests": str(tmp_path / "reqs.json")}))
    (tmp_path / "reqs.json").write_text(json.dumps(
        [{"request": "submit", "jobs": [{"name": "a"}, {"name": "b"}]}]))
    result = cli("status", tmp_path / "run")
    assert (result.returncode, "b                -        not finished" in result.stdout) == \
        (3, True)


def test_status_of_a_directory_without_a_run(tmp_path):
    assert cli("status", tmp_path).returncode == 2
