"""``after_any:`` in workflow files (issue 21, item 4), through the real CLI and service: a
fan-in that runs after its sweep ended in any state keeps the good members' results, and
failed members are named by their parameters (``md[T=1.3]``)."""

import json

import pytest

from support.services import cli
from workflows_harness import write

ENSEMBLE = """
    tasks:
      md:
        foreach: {T: [1.0, 1.3, 1.6, 1.9]}
        script: |
          test "${T}" != 1.3 || { echo "typo in in.md" >&2; exit 3; }
          echo "${T} energy-${it}" > energy.${it}.txt
      table:
        %s: [md]
        script: cat energy.*.txt > table.txt
    """


def run(tmp_path, workflow):
    return cli("run", workflow, "--nodes", "2", "--wd", tmp_path / "run", "--quiet",
               cwd=tmp_path)


def test_after_any_fan_in_keeps_the_good_members(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", ENSEMBLE % "after_any"))
    out = result.stdout
    table = (tmp_path / "run" / "table.txt").read_text().splitlines()
    assert result.returncode == 1, out + result.stderr  # a member failed: not a success
    assert table == ["1.0 energy-0", "1.6 energy-2", "1.9 energy-3"]
    assert "  md[T=1.3]        FAILED   exit code 3\n" in out
    assert "| typo in in.md" in out
    assert "table" not in out.split("not succeeded:")[1]  # the fan-in succeeded


def test_plain_after_still_omits_the_fan_in(tmp_path):
    result = run(tmp_path, write(tmp_path, "wf.yaml", ENSEMBLE % "after"))
    assert result.returncode == 1
    assert not (tmp_path / "run" / "table.txt").exists()
    assert "  table            OMITTED  dependency 'md' FAILED" in result.stdout


def test_per_iteration_after_any_runs_each_iteration_after_its_member(tmp_path):
    path = write(tmp_path, "wf.yaml", """
        tasks:
          md:
            foreach: {T: [1.0, 1.3, 1.6]}
            script: test "${T}" != 1.3 && echo ok > md.${it}.txt
          check:
            after_any: [{task: md, per_iteration: true}]
            script: |
              if test -e md.${it}.txt; then echo "${T} ok"; else echo "${T} bad"; fi > check.${it}
        """)
    result = run(tmp_path, path)
    checks = [(tmp_path / "run" / ("check.%d" % i)).read_text().strip() for i in range(3)]
    assert (result.returncode, checks) == (1, ["1.0 ok", "1.3 bad", "1.6 ok"]), result.stdout


def test_compile_writes_after_any_and_warns_about_upstream(tmp_path):
    result = cli("compile", write(tmp_path, "wf.yaml", ENSEMBLE % "after_any"), cwd=tmp_path)
    jobs = json.loads(result.stdout)[0]["jobs"]
    assert result.returncode == 0, result.stderr
    assert jobs[1]["dependencies"] == {"afterAny": ["md"]}
    assert jobs[0]["attributes"] == {"qcgflow": {"sweep": {"names": ["T"]},
                                                 "when_written": ["stdout", "stderr"]}}
    assert result.stderr == (
        "qcgflow compile: warning: table uses after_any (dependencies.afterAny, a qcgflow "
        "extension): the requests file runs on 'qcgflow service', not on upstream "
        "QCG-PilotJob\n")


def test_compile_without_after_any_does_not_warn(tmp_path):
    result = cli("compile", write(tmp_path, "wf.yaml", ENSEMBLE % "after"), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("text, message", [
    ("tasks:\n  a: {exec: x}\n  b: {exec: y, after_any: [c]}\n",
     "wf.yaml:3: tasks.b.after_any[0]: unknown task 'c'"),
    ("tasks:\n  a: {exec: x, after_any: [b]}\n  b: {exec: y, after: [a]}\n",
     "tasks.a.after: dependency cycle: a -> b -> a"),
    ("tasks:\n  a: {exec: x, after_any: 3}\n",
     "wf.yaml:2: tasks.a.after_any: expected a list of task names"),
    ("tasks:\n  a: {exec: x, after_any: [a]}\n",
     "tasks.a.after_any[0]: a task cannot run after itself"),
])
def test_after_any_errors_name_the_key(tmp_path, text, message):
    result = cli("run", write(tmp_path, "wf.yaml", text), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
