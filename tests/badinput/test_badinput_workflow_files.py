"""Bad workflow files through the command line (``qcgflow compile`` / ``qcgflow run``)
(issue 8, item 5).

Each case is a real ``python -m qcgflow.cli`` process: exit status 2, nothing on stdout,
ONE line on stderr (``qcgflow compile: FILE:LINE: path: problem``), no traceback. The
parser's own table of messages is tests/workflows/test_workflows_errors.py; this catalogue
is what a user sees, and adds the cases that used to end in a traceback (not UTF-8, nested
too deeply) or in minutes of work (huge sweeps).

Deliberate choices (docs/workflow-files.md): a sweep of more than
``workflow_sweeps.MAX_SWEEP`` (1,000,000) iterations per task is refused before it is
expanded; a task that no resources can fit is refused by the service at submit, and
``qcgflow run`` prints that refusal.
"""

import pytest

from qcgflow.workflows.sweeps import MAX_SWEEP

from badinput_harness import one_line
from support.services import cli

# (id, file name, content (bytes), substring of the line after "qcgflow compile: ")
CASES = [
    ("yaml_syntax", "wf.yaml", b"tasks:\n  a:\n    exec: [x\n    cores: 1\n",
     "wf.yaml:4: YAML syntax error"),
    ("unknown_top_key", "wf.yaml", b"tasks: {a: {exec: x}}\nvariables: 1\n",
     "wf.yaml:2: variables: unknown key"),
    ("unknown_task_key", "wf.yaml", b"tasks:\n  a:\n    exec: x\n    core: 2\n",
     "wf.yaml:4: tasks.a.core: unknown key; did you mean 'cores'?"),
    ("wrong_type", "wf.yaml", b"tasks:\n  a:\n    exec: x\n    cores: many\n",
     "wf.yaml:4: tasks.a.cores: invalid value \"many\""),
    ("cycle", "wf.yaml", b"tasks:\n  a: {exec: x, after: [b]}\n  b: {exec: y, after: [a]}\n",
     "tasks.a.after: dependency cycle: a -> b -> a"),
    ("after_itself", "wf.yaml", b"tasks:\n  a:\n    exec: x\n    after: [a]\n",
     "wf.yaml:4: tasks.a.after[0]: a task cannot run after itself"),
    ("unknown_after", "wf.yaml", b"tasks:\n  a:\n    exec: x\n    after: [ghost]\n",
     "wf.yaml:4: tasks.a.after[0]: unknown task 'ghost'"),
    ("duplicate_task", "wf.yaml", b"tasks:\n  a: {exec: x}\n  a: {exec: y}\n",
     "wf.yaml:3: tasks.a: duplicate key"),
    ("huge_range", "wf.yaml",
     b"tasks:\n  a:\n    exec: x\n    foreach: {range: [0, 10000000000]}\n",
     "wf.yaml:4: tasks.a.foreach.range: the range [0, 10000000000] has 10000000000 values, "
     "over the limit of %d per task" % MAX_SWEEP),
    ("huge_product", "wf.yaml", b"tasks:\n  a:\n    exec: x\n    foreach:\n"
                                b"      p: {range: [0, 5000]}\n      q: {range: [0, 5000]}\n",
     "wf.yaml:4: tasks.a.foreach: the product of the parameters has 25000000 iterations, over "
     "the limit of %d per task" % MAX_SWEEP),
    ("not_utf8", "wf.yaml", b"tasks:\n  a:\n    exec: \"\xff\"\n",
     "wf.yaml:1: not UTF-8 text (invalid byte at offset 23)"),
    ("yaml_nested_too_deeply", "wf.yaml", b"tasks: " + b"[" * 5000 + b"]" * 5000 + b"\n",
     "wf.yaml:1: nested too deeply to be read"),
    ("json_nested_too_deeply", "wf.json", b'{"tasks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "wf.json:1: nested too deeply to be read"),
    ("json_syntax", "wf.json", b'{\n  "tasks": {\n    "a": {"exec": "x",}\n  }\n}\n',
     "wf.json:3: JSON syntax error"),
    ("empty_file", "wf.yaml", b"", "wf.yaml:1: the file is empty"),
    ("not_a_mapping", "wf.yaml", b"- a\n- b\n", "wf.yaml:1: a workflow file is a mapping"),
    ("python_module_missing", "wf.yaml", b"tasks:\n  a:\n    python: no_such_module_xyz:f\n",
     "wf.yaml:3: tasks.a.python: cannot import 'no_such_module_xyz'"),
    ("wrong_extension", "wf.txt", b"tasks: {a: {exec: x}}\n",
     "wf.txt: expected a workflow file (.yaml, .yml, .json)"),
]


@pytest.mark.parametrize("name,content,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_file_is_one_line_on_stderr(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)
    result = cli("compile", name, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("qcgflow compile: ")
    assert expected in line
    assert "Traceback" not in result.stderr


def test_missing_file(tmp_path):
    result = cli("compile", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere.yaml:1: cannot read the file: No such file or directory" in \
        one_line(result.stderr)


@pytest.mark.parametrize("case", ["yaml_syntax", "cycle", "huge_range"])
def test_run_refuses_the_same_way_before_starting_anything(tmp_path, case):
    _, name, content, expected = next(c for c in CASES if c[0] == case)
    (tmp_path / name).write_bytes(content)
    result = cli("run", name, "--wd", tmp_path / "run", "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("qcgflow run: ")
    assert expected in line
    assert not (tmp_path / "run").exists(), "a refused file must not start a run"


def test_run_says_why_the_service_refused_a_task(tmp_path):
    (tmp_path / "wf.yaml").write_bytes(b"tasks:\n  big:\n    exec: 'true'\n    cores: 64\n"
                                       b"  small:\n    exec: 'true'\n")
    result = cli("run", "wf.yaml", "--nodes", "2", "--wd", tmp_path / "run", "--quiet",
                 cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr) == ("qcgflow run: the service refused request 1: Not "
                                       "enough resources for job big")
    assert "Traceback" not in result.stdout + result.stderr
