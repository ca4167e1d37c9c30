"""Declared outputs (``outputs:``) and per-iteration ``--resume`` of shell and exec sweeps,
through ``qcgflow run``."""

from collections import Counter

import pytest

from rerun_harness import outputs
from support.results import words
from support.services import cli
from workflows_harness import write


def run(tmp_path, *more, wd="run"):
    return cli("run", tmp_path / "wf.yaml", "--nodes", "2", "--wd", tmp_path / wd, "--quiet",
               *more, cwd=tmp_path)


# --------------------------------------------------------------------------- outputs

def test_a_task_that_does_not_make_its_declared_output_fails_with_the_path(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          make:
            script: echo made > made.txt
            outputs: [made.txt, forgotten.txt]
          after_it:
            script: echo ran > after.txt
            after: [make]
        """)
    done = run(tmp_path)
    assert done.returncode == 1
    assert (tmp_path / "run" / "make.err").read_text() == \
        "qcgflow: the declared output %s was not made\n" % (tmp_path / "run" / "forgotten.txt")
    assert "after_it         OMITTED" in done.stdout
    assert not (tmp_path / "run" / "after.txt").exists()


def test_a_declared_output_is_removed_before_the_task_runs(tmp_path):
    """A stale file from before does not make a task that writes nothing succeed."""
    write(tmp_path, "wf.yaml", """
        tasks:
          stale:
            script: "true"
            outputs: [result.txt]
        """)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.txt").write_text("from before\n")
    assert run(tmp_path).returncode == 1
    assert not (tmp_path / "run" / "result.txt").exists()


def test_a_python_task_that_does_not_make_its_declared_output_fails(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          py:
            python: work:nothing
            foreach: [1, 2]
            outputs: ["out_${it}.txt"]
        """)
    write(tmp_path, "work.py", """
        def nothing(x):
            if x == 1:
                open("out_0.txt", "w").write("one")
        """)
    done = run(tmp_path)
    assert done.returncode == 1
    assert "py:1             FAILED   raised FileNotFoundError: the declared output %s was " \
           "not made" % (tmp_path / "run" / "out_1.txt") in done.stdout


def test_resume_reruns_a_task_whose_declared_output_is_gone_and_what_follows(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          a:
            script: echo a >> calls.txt; seq 1 3 > a.txt
            outputs: [a.txt]
          b:
            script: echo b >> calls.txt; wc -l < a.txt > b.txt
            outputs: [b.txt]
            after: [a]
          c:
            script: echo c >> calls.txt; cat b.txt > c.txt
            after: [b]
        """)
    assert run(tmp_path).returncode == 0
    (tmp_path / "run" / "b.txt").unlink()
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert words(tmp_path / "run" / "calls.txt") == ["a", "b", "c", "b", "c"]
    assert (tmp_path / "run" / "c.txt").read_text() == "3\n"


@pytest.mark.parametrize("bad, problem", [
    ("outputs: [/tmp/x]", "use paths inside the task's working directory"),
    ("outputs: [../x]", "use paths inside the task's working directory"),
    ("outputs: 3", "use a list of non-empty strings"),
    ("pure: yes please", "use True or False"),
])
def test_invalid_outputs_and_pure_are_one_line_errors(tmp_path, bad, problem):
    write(tmp_path, "wf.yaml", """
        tasks:
          a:
            script: "true"
            %s
        """ % bad)
    done = run(tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("qcgflow run: %s:4: tasks.a.%s: invalid value" % (
        tmp_path / "wf.yaml", bad.split(":")[0])), done.stderr
    assert problem in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_product_sweep_parameter_cannot_name_an_output(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          a:
            foreach: {x: [1, 2], y: [3, 4]}
            script: "true"
            outputs: ["out_${x}.txt"]
        """)
    done = run(tmp_path)
    assert done.returncode == 2
    assert "tasks.a.outputs: the parameters of a product sweep cannot name a file" \
        in done.stderr


def test_outputs_are_refused_with_an_mpi_model(tmp_path):
    write(tmp_path, "wf.yaml", """
        tasks:
          a:
            exec: ./ring
            model: openmpi
            outputs: [ring.txt]
        """)
    done = run(tmp_path)
    assert done.returncode == 2
    assert "outputs cannot be declared with the openmpi model" in done.stderr


# --------------------------------------------------------------------------- sweeps

FAILING_SWEEP = """
tasks:
  sweep:
    foreach: {range: [0, 20]}
    %s
  fanin:
    script: cat sweep.*.out | sort -n > fanin.txt
    after: [sweep]
"""

SCRIPT = ('script: echo ${it} >> calls.txt; { [ -e fixed ] || [ $((${it} % 7)) -ne 3 ]; } '
          '&& echo ${itval}')
EXEC = ('exec: bash\n    args: ["-c", "echo ${it} >> calls.txt; { [ -e fixed ] || '
        '[ $((${it} % 7)) -ne 3 ]; } && echo ${itval}"]')


@pytest.mark.parametrize("task", [SCRIPT, EXEC], ids=["script", "exec"])
def test_resume_after_fixing_3_failures_of_20_runs_only_those_3(tmp_path, task):
    write(tmp_path, "wf.yaml", FAILING_SWEEP % task)
    first = run(tmp_path)
    assert first.returncode == 1
    assert sorted(Counter(words(tmp_path / "run" / "calls.txt")).values()) == [1] * 20
    (tmp_path / "run" / "fixed").write_text("")
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reused 17 of 21 tasks" in done.stderr
    calls = Counter(words(tmp_path / "run" / "calls.txt"))
    assert sorted(i for i, n in calls.items() if n == 2) == ["10", "17", "3"]
    assert (tmp_path / "run" / "fanin.txt").read_text().split() == \
        [str(i) for i in range(20)]  # each iteration's stdout once: nothing appended twice


def test_a_sweep_with_an_output_shared_by_its_iterations_resumes_whole(tmp_path):
    """``>>`` to one file: an iteration cannot be re-run alone without a duplicate line."""
    write(tmp_path, "wf.yaml", """
        tasks:
          sweep:
            foreach: {range: [0, 10]}
            script: echo ${it} >> all.txt; [ -e fixed ] || [ ${it} -ne 4 ]
            outputs: [all.txt]
        """)
    assert run(tmp_path).returncode == 1
    (tmp_path / "run" / "fixed").write_text("")
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(words(tmp_path / "run" / "all.txt"), key=int) == [str(i) for i in range(10)]


def test_a_grown_sweep_runs_only_its_new_iterations(tmp_path):
    write(tmp_path, "wf.yaml", FAILING_SWEEP.replace("20", "5") % "script: echo ${itval}")
    assert run(tmp_path).returncode == 0
    before = outputs(tmp_path / "run")
    write(tmp_path, "wf.yaml", FAILING_SWEEP.replace("20", "8") % "script: echo ${itval}")
    done = run(tmp_path, "--resume")
    assert done.returncode == 0
    assert "reused 5 of 9 tasks" in done.stderr
    after = outputs(tmp_path / "run")
    assert {name: after[name] for name in before if name != "fanin.txt"} == \
        {name: text for name, text in before.items() if name != "fanin.txt"}
    assert (tmp_path / "run" / "fanin.txt").read_text().split() == [str(i) for i in range(8)]


def test_a_declared_output_may_be_the_tasks_own_stdout(tmp_path):
    """The runtime opens the stdout before the task starts: the task must not remove it."""
    write(tmp_path, "wf.yaml", """
        tasks:
          sweep:
            foreach: [x, y]
            script: echo hi ${itval}
            stdout: out_${it}.txt
            outputs: ["out_${it}.txt"]
        """)
    assert run(tmp_path).returncode == 0
    (tmp_path / "run" / "out_1.txt").unlink()
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reused 1 of 2 tasks" in done.stderr
    assert [(tmp_path / "run" / ("out_%d.txt" % i)).read_text() for i in (0, 1)] == \
        ["hi x\n", "hi y\n"]
