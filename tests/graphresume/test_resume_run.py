"""qcgflow.run(..., resume=True / cache_dir=...): real runs on a local service, each in its
own Python process (``python main.py``), as a user reruns a script; what executed is read
from a side-effect file the tasks append to."""

import pytest

from graphresume_harness import MAIN_HEADER, Project

FLOW = """
import qcgflow

OFFSET = 1


def helper(x):
    return x + OFFSET


@qcgflow.task
def load(x):
    note("load%s" % x)
    return helper(x)


@qcgflow.task
def square(x):
    note("square%s" % x)
    return x * x


@qcgflow.task
def total(values, extra):
    note("total")
    return sum(values) + extra
"""

# argv: resume flag, number of elements, the argument of the plain task
MAIN = MAIN_HEADER + """
resume = sys.argv[1] == "1"
n, x = int(sys.argv[2]), int(sys.argv[3])
squares = flow.square.map(range(n))
target = flow.total.bind(squares, flow.load.bind(x))
print(json.dumps(qcgflow.run(target, nodes=2, wd="run", timeout=60, resume=resume)))
"""


@pytest.fixture
def project(tmp_path):
    project = Project(tmp_path)
    project.write(FLOW, MAIN)
    return project


def test_second_run_reuses_everything(project):
    first, _ = project.run(1, 3, 10)
    assert project.calls() == ["load10", "square0", "square1", "square2", "total"]
    again, line = project.run(1, 3, 10)
    assert (again, project.calls()) == (first, [])
    assert line == "reused 5 of 5 tasks from %s (4 of them not needed: only reused tasks " \
                   "use their results)" % project.wd


def test_without_resume_everything_runs_again(project):
    project.run(0, 2, 10)
    project.run(0, 2, 10)
    assert project.calls() == ["load10", "square0", "square1", "total"]


def test_edited_function_reruns_it_and_its_dependants_only(project):
    project.run(1, 2, 10)
    project.write(FLOW.replace("return x * x", "return x * x * x"), MAIN)
    result, _ = project.run(1, 2, 10)
    assert (result, project.calls()) == (0 + 1 + 11, ["square0", "square1", "total"])


def test_edited_helper_it_calls_reruns_it(project):
    project.run(1, 2, 10)
    project.write(FLOW.replace("return x + OFFSET", "return x + 2 * OFFSET"), MAIN)
    result, _ = project.run(1, 2, 10)
    assert (result, project.calls()) == (0 + 1 + 12, ["load10", "total"])


def test_edited_module_constant_reruns_the_task_using_it(project):
    project.run(1, 2, 10)
    project.write(FLOW.replace("OFFSET = 1", "OFFSET = 5"), MAIN)
    result, _ = project.run(1, 2, 10)
    assert (result, project.calls()) == (0 + 1 + 15, ["load10", "total"])


def test_changed_argument_reruns_that_task(project):
    project.run(1, 2, 10)
    result, _ = project.run(1, 2, 20)
    assert (result, project.calls()) == (0 + 1 + 21, ["load20", "total"])


def test_grown_map_runs_only_the_new_elements(project):
    project.run(1, 2, 10)
    result, line = project.run(1, 4, 10)
    assert (result, project.calls()) == (0 + 1 + 4 + 9 + 11, ["square2", "square3", "total"])
    assert line.startswith("reused 3 of 6 tasks")


FILES = {"QCGFLOW_RESULT_FILES": "1"}  # a result file per task, not per-worker stores


def test_corrupt_result_file_reruns_that_task(project, tmp_path):
    project.run(1, 2, 10, env=FILES)
    for job in ("load-0", "total-0"):  # a target's, and one it needs
        (tmp_path / "run" / ".qcgflow" / job / "result.pkl").write_bytes(b"garbage")
    result, _ = project.run(1, 2, 10, env=FILES)
    assert (result, project.calls()) == (0 + 1 + 11, ["load10", "total"])


def test_missing_iteration_result_reruns_that_iteration(project, tmp_path):
    project.run(1, 3, 10, env=FILES)
    for path in ("square-0/result.1.pkl", "total-0/result.pkl"):
        (tmp_path / "run" / ".qcgflow" / path).unlink()
    result, _ = project.run(1, 3, 10, env=FILES)
    assert (result, project.calls()) == (0 + 1 + 4 + 11, ["square1", "total"])


def test_results_kept_in_stores_are_reused_and_a_lost_store_reruns(project, tmp_path):
    first, _ = project.run(1, 2, 10)
    stores = tmp_path / "run" / ".qcgflow" / "stores"
    assert [p.name for p in stores.iterdir()]  # the small results went to a store
    again, _ = project.run(1, 2, 10)
    assert (again, project.calls()) == (first, [])
    for path in (tmp_path / "run" / ".qcgflow").rglob("*"):  # stores, and result files a
        if path.is_file() and (path.parent.parent == stores or path.name.startswith(
                "result")):  # reuse put in place: every result is gone
            path.unlink()
    result, _ = project.run(1, 2, 10)
    assert (result, project.calls()) == (first, ["load10", "square0", "square1", "total"])


FLAKY = FLOW + """

@qcgflow.task
def flaky(values):
    note("flaky")
    import os
    if os.path.exists(FLAG):
        raise RuntimeError("flag file present")
    return len(values)
"""

MAIN_FLAKY = MAIN_HEADER + """
flow.FLAG = sys.argv[1]
target = flow.total.bind(flow.square.map(range(2)), flow.flaky.bind(flow.square.map(range(2))))
try:
    print(json.dumps(qcgflow.run(target, nodes=2, wd="run", timeout=60, resume=True)))
except qcgflow.TaskError as exc:
    print(json.dumps("failed: %s" % getattr(exc, "root", exc.task)))
"""


def test_failed_task_is_run_again(tmp_path):
    project = Project(tmp_path)
    project.write(FLAKY, MAIN_FLAKY)
    flag = tmp_path / "flag"
    flag.write_text("")
    failed, _ = project.run(flag)
    assert failed == "failed: flaky-0"
    flag.unlink()
    result, _ = project.run(flag)
    assert (result, project.calls()) == (1 + 2, ["flaky", "total"])


MAIN_CACHE = MAIN_HEADER + """
wd, cache = sys.argv[1], sys.argv[2]
target = flow.total.bind(flow.square.map(range(3)), flow.load.bind(1))
print(json.dumps(qcgflow.run(target, nodes=2, wd=wd, timeout=60, cache_dir=cache)))
"""


PURE = FLOW.replace("@qcgflow.task\n", "@qcgflow.task(pure=True)\n")


def test_cache_dir_is_shared_across_working_directories(tmp_path):
    project = Project(tmp_path)
    project.write(PURE, MAIN_CACHE)
    first, _ = project.run(tmp_path / "one", tmp_path / "cache")
    second, line = project.run(tmp_path / "two", tmp_path / "cache")
    assert (second, project.calls()) == (first, [])
    assert line.startswith("reused 5 of 5 tasks from %s" % (tmp_path / "two"))


def test_cache_dir_reuses_no_task_with_unknown_file_effects_in_another_directory(tmp_path):
    """Tasks not marked pure (these write the calls file) run again in another directory."""
    project = Project(tmp_path)
    project.write(FLOW, MAIN_CACHE)
    first, _ = project.run(tmp_path / "one", tmp_path / "cache")
    second, line = project.run(tmp_path / "two", tmp_path / "cache")
    assert (second, project.calls()) == (first, ["load1", "square0", "square1", "square2",
                                                 "total"])
    assert line.startswith("reused 0 of 5 tasks from %s" % (tmp_path / "two"))


NOCACHE = FLOW.replace("@qcgflow.task\ndef load", "@qcgflow.task(cache=False)\ndef load")


def test_cache_false_task_and_its_dependants_always_run(tmp_path):
    project = Project(tmp_path)
    project.write(NOCACHE, MAIN)
    project.run(1, 2, 10)
    project.run(1, 2, 10)
    assert project.calls() == ["load10", "total"]


MAIN_SHELL = MAIN_HEADER + """
echo = qcgflow.shell("echo ran >> ${out}; echo hello")
first = echo.bind(out=sys.argv[1])
target = flow.total.bind([1], first)
try:
    qcgflow.run(target, nodes=2, wd="run", timeout=60, resume=True)
except qcgflow.TaskFailed:
    pass  # total gets a CommandResult: not a number
print(json.dumps(qcgflow.run(first, nodes=2, wd="run", timeout=60,
                             resume=True).read_stdout()))
"""


def test_command_task_success_is_reused(tmp_path):
    project = Project(tmp_path)
    project.write(FLOW, MAIN_SHELL)
    shell_calls = tmp_path / "shell-calls.txt"
    project.run(shell_calls)
    assert project.run(shell_calls)[0] == "hello\n"
    assert shell_calls.read_text() == "ran\n"


def test_resume_without_a_working_directory_is_refused():
    import qcgflow

    @qcgflow.task
    def one():
        return 1
    with pytest.raises(ValueError, match="needs wd="):
        qcgflow.run(one.bind(), resume=True)


MAIN_ORDER = MAIN_HEADER + """
order = [int(x) for x in sys.argv[1].split(",")]
print(json.dumps(qcgflow.run([flow.square.bind(x) for x in order], nodes=2, wd="run",
                             timeout=60, resume=True)))
"""


def test_shifted_job_names_still_reuse_the_right_results(tmp_path):
    project = Project(tmp_path)
    project.write(FLOW, MAIN_ORDER)
    project.run("2,3")                      # square-0 = 2*2, square-1 = 3*3
    result, _ = project.run("3,2")          # the names swap: both files change places
    assert (result, project.calls()) == ([9, 4], [])
    result, _ = project.run("5,3,2")        # square-0 is new, the others shift again
    assert (result, project.calls()) == ([25, 9, 4], ["square5"])
