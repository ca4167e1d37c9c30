"""Declared outputs and ``pure`` in the graph API (``outputs=``, ``pure=``): checked after a
task, removed before it, stored in and restored from ``cache_dir``; a second run in the same
``wd`` appends to nothing. Real services through ``python main.py`` child processes."""

import json

import pytest

from graphresume_harness import Project

FLOW = """
import qcgflow


@qcgflow.task(outputs=["table_${it}.txt"])
def table(x):
    note("table%s" % x)
    with open("table_%d.txt" % x, "a") as handle:  # appends: a re-run would show twice
        handle.write("%d\\n" % (x * x))
    return x


@qcgflow.task(outputs=["sum.txt"])
def gather(xs):
    note("gather")
    total = sum(int(open("table_%d.txt" % x).read()) for x in xs)
    with open("sum.txt", "w") as handle:
        handle.write("%d\\n" % total)
    return total


@qcgflow.task(outputs=["never.txt"])
def forgets():
    note("forgets")
    return 0


echo = qcgflow.shell("echo line-${it}", outputs=[])
"""

MAIN = """
import json
import logging
import sys

import qcgflow

import flow

logging.basicConfig(level=logging.INFO, format="%(message)s")
wd, cache, what = sys.argv[1], sys.argv[2] or None, sys.argv[3]
if what == "gather":
    target = flow.gather.bind(flow.table.map(range(4)))
elif what == "echo":
    target = flow.echo.map(range(3))
else:
    target = flow.forgets.bind()
try:
    result = qcgflow.run(target, nodes=2, wd=wd, timeout=60, cache_dir=cache,
                         resume=cache is not None)
except qcgflow.TaskFailed as exc:
    result = str(exc).splitlines()[0]
if what == "echo":
    result = [open(r.stdout).read() for r in result]
print(json.dumps(result))
"""


@pytest.fixture
def project(tmp_path):
    project = Project(tmp_path)
    project.write(FLOW, MAIN)
    return project


def test_a_task_that_does_not_make_its_declared_output_fails(project, tmp_path):
    result, _ = project.run(tmp_path / "run", "", "forgets")
    assert result == "task 'forgets-0' raised FileNotFoundError: the declared output %s " \
                     "was not made" % (tmp_path / "run" / "never.txt")


def test_declared_outputs_come_back_from_the_cache_in_another_directory(project, tmp_path):
    first, _ = project.run(tmp_path / "one", tmp_path / "cache", "gather")
    assert (first, project.calls()) == (0 + 1 + 4 + 9, ["gather", "table0", "table1",
                                                        "table2", "table3"])
    second, line = project.run(tmp_path / "two", tmp_path / "cache", "gather")
    assert (second, project.calls()) == (first, [])
    assert line.startswith("reused 5 of 5 tasks from %s" % (tmp_path / "two"))
    # the target's output comes back; the tables are not needed (no task runs that reads
    # them): tasks only reused tasks need are not run, nor restored
    assert (tmp_path / "two" / "sum.txt").read_text() == \
        (tmp_path / "one" / "sum.txt").read_text() == "14\n"


def test_a_deleted_declared_output_reruns_its_task_and_the_tasks_after_it(project, tmp_path):
    project.run(tmp_path / "run", tmp_path / "cache", "gather")
    (tmp_path / "run" / "table_2.txt").unlink()
    result, _ = project.run(tmp_path / "run", "", "gather")  # no cache: only this wd
    assert (result, project.calls()) == (0 + 1 + 4 + 9, ["gather", "table0", "table1",
                                                         "table2", "table3"])
    assert (tmp_path / "run" / "table_2.txt").read_text() == "4\n"  # removed, not appended
    resumed = project.run(tmp_path / "run", tmp_path / "cache", "gather")
    assert (resumed[0], project.calls()) == (14, [])
    for name in ("table_2.txt", "sum.txt"):  # sum.txt alone: only gather would run
        (tmp_path / "run" / name).unlink()
    again, _ = project.run(tmp_path / "run", tmp_path / "cache", "gather")
    assert (again, project.calls()) == (14, ["gather", "table2"])
    assert (tmp_path / "run" / "table_2.txt").read_text() == "4\n"


def test_a_second_run_in_the_same_directory_appends_to_no_stream(project, tmp_path):
    first, _ = project.run(tmp_path / "run", "", "echo")
    second, _ = project.run(tmp_path / "run", "", "echo")
    assert first == second == ["line-0\n", "line-1\n", "line-2\n"]


def test_outputs_and_pure_are_checked_options(tmp_path):
    import qcgflow
    with pytest.raises(qcgflow.TaskOptionError, match="use paths inside the task's working"):
        qcgflow.task(outputs=["/abs.txt"])(lambda: 0)
    with pytest.raises(qcgflow.TaskOptionError, match="use True or False"):
        qcgflow.task(pure="yes")(lambda: 0)
    assert json.dumps(qcgflow.task(outputs="one.txt", pure=True)(lambda: 0).task_options) \
        == json.dumps({"outputs": ["one.txt"], "pure": True})
