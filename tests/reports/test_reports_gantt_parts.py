"""Gantt charts of runs with several parts, of sweeps, and drawn while the run goes on.

Real runs of the service: a run interrupted by SIGTERM and resumed in the same aux dir
(as in the next Slurm allocation), a ``qcgflow run --resume`` that starts a new service
directory, a sweep, a run still going. The charts are SVG: matplotlib keeps each text
as an XML comment beside its glyphs, so what the chart says can be read back.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from reports_harness import SERVICE_ID, call, cli, job, run_service
from support.eventually import eventually
from support.processes import child_env
from qcgflow.runtime.stats.cli import report_main
from qcgflow.runtime.stats.load import load_run

pytest.importorskip("matplotlib", reason="charts need matplotlib: pip install "
                                         "'qcgflow[reports]'")


def _texts(svg_path):
    """The SVG with its comments as the texts were (XML comments cannot hold '--')."""
    return svg_path.read_text().replace("- -", "--")


WAITER = "touch started.${it}; while [ ! -e release ]; do sleep 0.05; done; sleep 0.4"


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """4 iterations on 2 cores: 2 run and are interrupted by SIGTERM; the resume runs all
    4 (the released ones at once) and a last job."""
    tmp = tmp_path_factory.mktemp("resumed")
    wd = tmp / "wd"
    requests = tmp / "req.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": [
        {"name": "w", "iteration": {"values": ["x1", "x2", "x3", "x4"]},
         "execution": {"script": WAITER}},
        {"name": "z", "execution": {"exec": "true"}, "dependencies": {"after": ["w"]}}]}]))
    argv = [sys.executable, "-m", "qcgflow.cli", "service", "--nodes", "2", "--wd", str(wd),
            "--enable-rt-stats"]
    first = subprocess.Popen(argv + ["--file-path", str(requests), "--id", SERVICE_ID],
                             cwd=str(tmp), env=child_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        eventually(lambda: len(list(wd.glob("started.*"))) == 2, 60, message="2 tasks to start")
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 143
    (wd / "release").write_text("")
    done = subprocess.run(argv + ["--resume", str(wd)], cwd=str(tmp), env=child_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return wd


def test_a_resumed_run_has_both_service_runs_and_every_attempt(resumed):
    run = load_run(str(resumed))
    assert len(run.parts) == 2 and run.parts[0].finished <= run.parts[1].started
    attempts = sorted((t.name, t.state) for t in run.tasks if t.job == "w")
    # the two interrupted in the first run, then all four in the second
    assert [state for _, state in attempts].count("CANCELED") == 2
    assert sorted(name for name, state in attempts if state == "SUCCEED") == \
        ["w:0", "w:1", "w:2", "w:3"]
    first_end = run.parts[0].finished
    assert all(t.real_start is not None for t in run.tasks if t.ran)  # rtstats matched
    assert all(t.end <= first_end + 0.5 for t in run.tasks if t.state == "CANCELED")
    assert run.service_started == run.parts[0].started and run.partial is None


def test_stats_count_a_unit_run_again_once(resumed, capsys):
    status, out, err = call(report_main, ["stats", "--json", resumed], capsys)
    assert status == 0, err
    figures = json.loads(out)
    assert (figures["total_jobs"], figures["failed_jobs"]) == (5, 0)


def test_gantt_of_a_resumed_run_shows_both_runs_and_their_boundary(resumed, tmp_path,
                                                                   capsys):
    out = tmp_path / "c.svg"
    status, said, err = call(report_main, ["gantt", resumed, out], capsys)
    assert status == 0, err
    assert said.startswith("gantt: 7 bars")  # 2 interrupted + 4 + z: both runs drawn
    text = _texts(out)
    assert "2 runs (first + 1 --resume)" in text and "run 2 (--resume)" in text
    for value in ("x1", "x2", "x3", "x4"):  # the sweep's values on its bars
        assert "<!-- %s -->" % value in text
    assert "w (4 iterations: x1, x2, x3, ...)" in text


def test_gaps_between_runs_are_no_core_idle_time(resumed, tmp_path, capsys):
    run = load_run(str(resumed))
    between = run.parts[1].started - run.parts[0].finished
    status, out, err = call(report_main, ["gantt-gaps", resumed, tmp_path / "g.svg"], capsys)
    assert status == 0, err
    text = _texts(tmp_path / "g.svg")
    idle = float(text.split("idle core-seconds ")[1].split(" ")[0].split("<")[0].rstrip())
    span = run.service_finished - run.service_started
    assert idle < 2 * span - 2 * between + 0.05  # 2 cores, the pause left out


def test_a_chart_drawn_during_the_run_says_it_is_partial(tmp_path, capsys):
    requests = tmp_path / "req.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": [
        job("quick", "true"), {"name": "slow", "execution": {"script": WAITER.replace(
            "${it}", "0")}, "dependencies": {"after": ["quick"]}}]}]))
    wd = tmp_path / "wd"
    proc = subprocess.Popen([sys.executable, "-m", "qcgflow.cli", "service", "--nodes", "1",
                             "--wd", str(wd), "--file-path", str(requests), "--id", "p"],
                            cwd=str(tmp_path), env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: (wd / "started.0").exists(), 60, message="iteration 0 to start")
        status, _, err = call(report_main, ["gantt", wd, tmp_path / "during.svg"], capsys)
        assert status == 0, err
        (wd / "release").write_text("")
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status, _, err = call(report_main, ["gantt", wd, tmp_path / "after.svg"], capsys)
    assert status == 0, err
    assert "PARTIAL: the service is still running" in _texts(tmp_path / "during.svg")
    assert "PARTIAL" not in _texts(tmp_path / "after.svg")


def test_iterations_without_values_are_labelled_by_index(tmp_path, capsys):
    result = run_service(tmp_path, [job("r", "sleep", [0.3], iterations=3)])
    assert result.returncode == 0, result.describe()
    status, _, err = call(report_main, ["gantt", result.wd, tmp_path / "c.svg"], capsys)
    assert status == 0, err
    text = _texts(tmp_path / "c.svg")
    assert all("<!-- %d -->" % i in text for i in range(3))
    assert "r (3 iterations)" in text


def test_gantt_of_a_run_directory_with_several_services(tmp_path):
    """qcgflow run --resume starts a new service (directory) each time: the chart of the
    run directory holds both (other reports still ask for one directory)."""
    flow = tmp_path / "f.yaml"
    flow.write_text("name: f\ntasks:\n  a:\n    script: echo a\n  b:\n    script: "
                    "test -e ok\n    after: [a]\n")
    wd = tmp_path / "run"
    first = cli("run", flow, "--wd", wd, "--nodes", "1", "--quiet")
    assert first.returncode == 1, first.stderr
    (wd / "ok").write_text("")
    second = cli("run", flow, "--wd", wd, "--nodes", "1", "--quiet", "--resume")
    assert second.returncode == 0, second.stderr
    assert len(list(wd.glob(".qcgpjm-service-*"))) == 2
    chart = cli("report", "gantt", wd, tmp_path / "c.svg")
    assert chart.returncode == 0, chart.stderr
    assert chart.stdout.startswith("gantt: 3 bars")  # a, the failed b, b again
    assert "2 runs (first + 1 --resume)" in _texts(tmp_path / "c.svg")
    assert cli("report", "stats", wd).returncode == 2  # ambiguous there, as before
