"""``--enable-rt-stats`` through the front doors: ``qcgflow run`` (workflow file, requests
file, Python script), ``qcgflow.run(rt_stats=True)`` and ``qcgflow.init(rt_stats=True)``.
Each run is real; the proof is the rtstats.jsonl that the service wrote (one line per
process) and ``qcgflow report launch-stats`` accepting the directory."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from reports_harness import cli
from support.processes import child_env


def _rtstats(wd):
    """The process lines of the one rtstats.jsonl under ``wd`` (None when not recorded)."""
    found = glob.glob(os.path.join(str(wd), ".qcgpjm-service-*", "rtstats.jsonl"))
    if not found:
        return None
    with open(found[0], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if '"name"' in line]


WORKFLOW = """\
name: rt
tasks:
  s:
    exec: "true"
    foreach: {i: [1, 2, 3]}
"""


@pytest.mark.parametrize("flag", [True, False])
def test_qcgflow_run_of_a_workflow_file_passes_the_flag(tmp_path, flag):
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    wd = tmp_path / "run"
    done = cli("run", path, "--wd", wd, "--nodes", "2", "--quiet",
               *(["--enable-rt-stats"] if flag else []))
    assert done.returncode == 0, done.stderr
    lines = _rtstats(wd)
    if not flag:
        assert lines is None
        return
    assert sorted(line["name"] for line in lines) == ["s:0", "s:1", "s:2"]
    stats = cli("report", "launch-stats", "--json", wd)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["jobs"] == 3


def test_qcgflow_run_of_a_requests_file_passes_the_flag(tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps([{"request": "submit", "jobs": [
        {"name": "a", "execution": {"exec": "true"}}]}]))
    wd = tmp_path / "run"
    done = cli("run", path, "--wd", wd, "--nodes", "1", "--quiet", "--enable-rt-stats")
    assert done.returncode == 0, done.stderr
    assert [line["name"] for line in _rtstats(wd)] == ["a"]


SCRIPT = """\
import sys
import qcgflow
import qcgflow.session.dynamic
wd = sys.argv[0].rsplit("/", 1)[0]
echo = qcgflow.shell("true")
qcgflow.run(echo.map([1, 2]), nodes=2, wd=wd + "/graph")
with qcgflow.init(nodes=1, wd=wd + "/session"):
    qcgflow.get(qcgflow.session.dynamic.submit(echo.bind()), timeout=60)
qcgflow.run(echo.bind(), nodes=1, wd=wd + "/off", rt_stats=False)
"""


@pytest.mark.parametrize("flag", [True, False])
def test_qcgflow_run_of_a_script_gives_its_runs_and_sessions_the_flag(tmp_path, flag):
    path = tmp_path / "s.py"
    path.write_text(SCRIPT)
    done = cli("run", path, *(["--enable-rt-stats"] if flag else []))
    assert done.returncode == 0, done.stderr
    graph, session = _rtstats(tmp_path / "graph"), _rtstats(tmp_path / "session")
    if flag:
        assert (len(graph), len(session)) == (2, 1)
    else:
        assert (graph, session) == (None, None)
    assert _rtstats(tmp_path / "off") is None  # rt_stats=False wins over the default


def test_the_api_arguments_alone_record_the_times(tmp_path):
    script = tmp_path / "api.py"
    script.write_text(textwrap.dedent("""\
        import sys
        import qcgflow
        import qcgflow.session.dynamic
        wd = sys.argv[1]
        qcgflow.run(qcgflow.shell("true").bind(), nodes=1, wd=wd + "/a", rt_stats=True)
        with qcgflow.init(nodes=1, wd=wd + "/b", rt_stats=True):
            qcgflow.get(qcgflow.session.dynamic.submit(qcgflow.shell("true").bind()), timeout=60)
        """))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=90, env=child_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert (len(_rtstats(tmp_path / "a")), len(_rtstats(tmp_path / "b"))) == (1, 1)
