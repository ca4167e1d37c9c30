"""``qcgflow run FILE --resume`` / ``--cache DIR``: workflow files and Python scripts, as
child processes on a real local service."""

import json
import subprocess
import sys
import textwrap

from graphresume_harness import DEADLINE, child_env
from support.eventually import eventually
from support.processes import kill, tree

WORKFLOW = """
name: resumed
tasks:
  prepare:
    script: echo prepare >> calls.txt; echo data > data.txt
  sweep:
    foreach: [1, 2, 3]
    script: echo sweep${itval} >> calls.txt
    after: [prepare]
  square:
    python: tasks:square
    foreach: [1, 2, 3]
  report:
    script: echo report >> calls.txt
    after: [sweep, square]
"""

TASKS = """
def square(x):
    with open("calls.txt", "a") as handle:  # in the run directory, the task's wd
        handle.write("square%d\\n" % x)
    return x * x
"""


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "qcgflow.cli"] + [str(a) for a in args],
                          cwd=str(cwd), env=child_env(), capture_output=True, text=True,
                          timeout=DEADLINE, stdin=subprocess.DEVNULL)


def setup(tmp_path, workflow=WORKFLOW):
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(workflow).lstrip())
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS).lstrip())
    return tmp_path / "run"


def run(tmp_path, *extra):
    """Run wf.yaml in tmp_path/run; returns (the process, the calls of this run)."""
    calls = tmp_path / "run" / "calls.txt"
    if calls.exists():
        calls.unlink()
    done = cli("run", "wf.yaml", "--wd", tmp_path / "run", "--quiet", *extra, cwd=tmp_path)
    return done, sorted(calls.read_text().split()) if calls.exists() else []


def test_resume_reuses_every_task_of_a_finished_workflow(tmp_path):
    wd = setup(tmp_path)
    first, calls = run(tmp_path, "--resume")
    assert (first.returncode, len(calls)) == (0, 8), first.stderr
    again, calls = run(tmp_path, "--resume")
    assert (again.returncode, calls) == (0, [])
    assert "qcgflow run: reused 8 of 8 tasks from %s" % wd in again.stderr
    assert "nothing to run" in again.stdout


def test_edited_task_reruns_with_what_runs_after_it(tmp_path):
    setup(tmp_path)
    run(tmp_path)
    setup(tmp_path, WORKFLOW.replace("echo data > data.txt", "echo new > data.txt"))
    done, calls = run(tmp_path, "--resume")
    assert (done.returncode, calls) == (0, ["prepare", "report", "sweep1", "sweep2", "sweep3"])
    assert "reused 3 of 8 tasks" in done.stderr


def test_grown_python_sweep_runs_only_new_elements(tmp_path):
    setup(tmp_path)
    run(tmp_path)
    setup(tmp_path, WORKFLOW.replace("foreach: [1, 2, 3]\n", "foreach: [1, 2, 3, 4]\n"))
    done, calls = run(tmp_path, "--resume")
    assert (done.returncode, calls) == (0, ["report", "square4", "sweep4"]), done.stderr


def test_failed_task_is_rerun_and_the_rest_reused(tmp_path):
    failing = WORKFLOW.replace("echo report >> calls.txt",
                               "echo report >> calls.txt; test -e fixed")
    wd = setup(tmp_path, failing)
    first, _ = run(tmp_path)
    assert first.returncode == 1
    (wd / "fixed").write_text("")
    done, calls = run(tmp_path, "--resume")
    assert (done.returncode, calls) == (0, ["report"]), done.stdout + done.stderr


def test_resume_needs_a_working_directory(tmp_path):
    setup(tmp_path)
    done = cli("run", "wf.yaml", "--resume", cwd=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (
        2, "qcgflow run: --resume needs --wd DIR: the directory of the run to resume")


def test_requests_file_cannot_be_resumed(tmp_path):
    (tmp_path / "requests.json").write_text(json.dumps([{"request": "submit", "jobs": []}]))
    done = cli("run", "requests.json", "--wd", tmp_path / "run", "--resume", cwd=tmp_path)
    assert (done.returncode, "a requests file has no task keys" in done.stderr) == (2, True)


SCRIPT = """
import json
import qcgflow


@qcgflow.task
def double(x):
    with open("calls.txt", "a") as handle:
        handle.write("double%d\\n" % x)  # in the run directory
    return 2 * x


print(json.dumps(qcgflow.run(double.map(range(3)), nodes=2, wd="run", timeout=60)))
"""


def test_script_resume_applies_to_its_runs(tmp_path):
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT).lstrip())
    first = cli("run", "script.py", cwd=tmp_path)
    second = cli("run", "script.py", "--resume", cwd=tmp_path)
    assert (first.stdout, second.stdout) == ("[0, 2, 4]\n", "[0, 2, 4]\n"), second.stderr
    assert second.stderr == "qcgflow run: reused 3 of 3 tasks from %s\n" % (tmp_path / "run")
    assert sorted((tmp_path / "run" / "calls.txt").read_text().split()) == [
        "double0", "double1", "double2"]


def test_cache_dir_shares_python_results_between_directories(tmp_path):
    setup(tmp_path, WORKFLOW.replace("python: tasks:square", "python: tasks:square\n"
                                     "    pure: true"))
    cache = tmp_path / "cache"
    cli("run", "wf.yaml", "--wd", tmp_path / "one", "--quiet", "--cache", cache, cwd=tmp_path)
    done = cli("run", "wf.yaml", "--wd", tmp_path / "two", "--quiet", "--cache", cache,
               cwd=tmp_path)
    calls = sorted((tmp_path / "two" / "calls.txt").read_text().split())
    assert (done.returncode, calls) == (0, ["prepare", "report", "sweep1", "sweep2",
                                            "sweep3"]), done.stderr


def test_cache_dir_does_not_reuse_a_task_with_unknown_file_effects(tmp_path):
    """square writes calls.txt and is not marked pure: in another directory it runs."""
    setup(tmp_path)
    cache = tmp_path / "cache"
    cli("run", "wf.yaml", "--wd", tmp_path / "one", "--quiet", "--cache", cache, cwd=tmp_path)
    done = cli("run", "wf.yaml", "--wd", tmp_path / "two", "--quiet", "--cache", cache,
               cwd=tmp_path)
    calls = sorted((tmp_path / "two" / "calls.txt").read_text().split())
    assert (done.returncode, calls) == (0, ["prepare", "report", "square1", "square2",
                                            "square3", "sweep1", "sweep2", "sweep3"]), \
        done.stderr


SLOW = """
tasks:
  first:
    script: echo first >> calls.txt
  slow:
    script: echo slow >> calls.txt; sleep 60
    after: [first]
"""


def test_killed_run_is_recorded_at_the_next_run(tmp_path):
    import glob

    from qcgflow.cli.workflow import read_report
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(SLOW).lstrip())
    wd = tmp_path / "run"
    popen = subprocess.Popen([sys.executable, "-m", "qcgflow.cli", "run", "wf.yaml", "--wd",
                              str(wd), "--quiet"], cwd=str(tmp_path), env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def first_done():
        reports = glob.glob(str(wd / ".qcgpjm-service-*" / "jobs.report"))
        return reports and {"first": "SUCCEED"}.items() <= {
            e.get("name"): e.get("state") for e in read_report(reports[0])}.items()

    try:
        eventually(first_done, DEADLINE, 0.1, "the service to report 'first' SUCCEED")
    finally:
        kill(tree(popen.pid))  # the run, its service and its tasks
        popen.wait(10)
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(SLOW.replace("; sleep 60", "")).lstrip())
    (wd / "calls.txt").unlink()
    done, calls = run(tmp_path, "--resume")
    assert (done.returncode, calls) == (0, ["slow"]), done.stderr


def test_cache_false_task_runs_every_time_with_what_runs_after_it(tmp_path):
    setup(tmp_path, WORKFLOW.replace("    script: echo prepare", "    cache: false\n"
                                                                 "    script: echo prepare"))
    run(tmp_path)
    done, calls = run(tmp_path, "--resume")
    assert (done.returncode, calls) == (0, ["prepare", "report", "sweep1", "sweep2", "sweep3"])
