"""The pure parts: metrics on hand-made runs, report parsing, the collectors' buffering."""

import io
import json
import subprocess
import sys

import pytest

from support.processes import REPO
from qcgflow.runtime.stats import metrics
from qcgflow.runtime.stats.progress import ProgressPrinter
from qcgflow.runtime.stats.rtstats import RtStatsRecorder, read_rtstats
from qcgflow.runtime.stats.workdir import (Run, Task, parse_allocation, read_report,
                                           _tasks_from_report)


def task(name, start, end, cores, state="SUCCEED", job=None, scheduled=None, finished=None):
    return Task(name, job or name.split(":")[0], state, 0.0, scheduled, start, finished or end,
                tuple(cores), None, start, end)


def make_run(tasks, nodes=(("n0", (0, 1)),), started=0.0, finished=10.0):
    return Run("aux", started, finished, tuple(nodes), tuple(tasks), True)


def values(figures):
    return {m.key: m.value for m in figures}


# --------------------------------------------------------------------------- metrics

def test_utilisation_per_core():
    run = make_run([task("a", 1.0, 6.0, [("n0", 0)]), task("b", 2.0, 4.0, [("n0", 1)])])
    _, details = metrics.rusage(run)
    assert [round(d.percent, 6) for d in details] == [50.0, 20.0]


def test_unused_time_per_core():
    run = make_run([task("a", 1.0, 6.0, [("n0", 0)]), task("b", 2.0, 4.0, [("n0", 1)])])
    _, details = metrics.rusage(run)
    assert [round(d.unused, 6) for d in details] == [5.0, 8.0]


def test_average_over_used_cores_only():
    run = make_run([task("a", 0.0, 5.0, [("n0", 0)])])
    assert values(metrics.rusage(run)[0]) == {"used_cores": 1, "avg_core_utilization_pct": 50.0}


def test_efficiency_counts_gaps_between_tasks_only():
    run = make_run([task("a:0", 2.0, 4.0, [("n0", 0)]), task("a:1", 5.0, 7.0, [("n0", 0)])])
    assert values(metrics.efficiency(run)[0])["avg_core_utilization_pct"] == pytest.approx(80.0)


def test_overlapping_intervals_are_merged():
    run = make_run([task("a", 0.0, 4.0, [("n0", 0)]), task("b", 3.0, 5.0, [("n0", 0)])])
    assert metrics.busy_intervals(run)[("n0", 0)] == [(0.0, 5.0)]


def test_multi_core_task_counts_on_each_core():
    run = make_run([task("a", 0.0, 5.0, [("n0", 0), ("n0", 1)])])
    assert values(metrics.rusage(run)[0])["used_cores"] == 2


def test_stats_overheads():
    run = make_run([task("a", 1.5, 8.0, [("n0", 0)])], started=0.0, finished=10.0)
    got = values(metrics.stats(run))
    assert (got["init_overhead"], got["finish_overhead"], got["overhead_ratio_pct"]) == (
        1.5, 2.0, 35.0)


def test_stats_without_any_task_that_ran():
    run = make_run([Task("a", "a", "OMITTED", 0.0, None, None, 1.0, (), None)])
    got = values(metrics.stats(run))
    assert (got["total_jobs"], got["failed_jobs"], got["init_overhead"]) == (1, 1, None)


def test_launch_stats_per_job():
    run = make_run([task("a", 1.1, 3.0, [("n0", 0)], scheduled=1.0, finished=3.2)])
    got = values(metrics.launch_stats(run))
    assert (round(got["avg_start_overhead"], 6), round(got["avg_finish_overhead"], 6),
            round(got["avg_qcg_runtime"], 6)) == (0.1, 0.2, 2.2)


def test_none_shows_as_dash():
    assert metrics.Metric("k", "label", None, "%.2f").text() == "-"


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, cores", [
    ("n0[0]", (("n0", 0),)),
    ("n0[0:1],n1[3]", (("n0", 0), ("n0", 1), ("n1", 3))),
    ("", ()),
])
def test_parse_allocation(text, cores):
    assert parse_allocation(text) == cores


def test_text_report_reads_like_json(tmp_path):
    (tmp_path / "t.report").write_text(
        "s:0 (SUCCEED)\n    2026-01-01T10:00:00: QUEUED\n    2026-01-01T10:00:01: SCHEDULED\n"
        "    2026-01-01T10:00:01.5: EXECUTING\n    2026-01-01T10:00:03: SUCCEED\n"
        "    allocation: n0[1]\n    pid: 42\n"
        "s (SUCCEED)\n    2026-01-01T10:00:00: QUEUED\n"
        "x (FAILED) - exit code 1\n    2026-01-01T10:00:00: QUEUED\n")
    tasks = _tasks_from_report(read_report(str(tmp_path / "t.report")))
    assert sorted(tasks) == ["s:0", "x"]
    assert (tasks["s:0"].cores, tasks["s:0"].pid, tasks["s:0"].job,
            tasks["s:0"].finished - tasks["s:0"].started) == ((("n0", 1),), 42, "s", 1.5)


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "jobs.report"
    path.write_text(json.dumps({"name": "a", "state": "SUCCEED", "history": []}) + "\n{\"na")
    assert [e["name"] for e in read_report(str(path))] == ["a"]


# --------------------------------------------------------------------------- collectors

class FakeLoop:
    def __init__(self):
        self.timers = []

    def call_later(self, delay, callback):
        timer = FakeTimer(callback)
        self.timers.append(timer)
        return timer


class FakeTimer:
    def __init__(self, callback):
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Alloc:
    def describe(self):
        return "n0[0]"


class Info:
    pid, exit_code, user_time, system_time, max_rss_kb = 7, 0, 0.5, 0.1, 100
    started, ended = 100.0, 101.5


def test_rtstats_are_written_in_batches(tmp_path):
    loop = FakeLoop()
    recorder = RtStatsRecorder(str(tmp_path / "rt.jsonl"), loop, [("n0", [0])])
    recorder("a", Alloc(), Info())
    recorder("b", Alloc(), Info())
    assert (len(read_rtstats(str(tmp_path / "rt.jsonl"))[1]), len(loop.timers)) == (0, 1)
    loop.timers[0].callback()
    assert [r["name"] for r in read_rtstats(str(tmp_path / "rt.jsonl"))[1]] == ["a", "b"]
    recorder.close()


def test_rtstats_close_flushes(tmp_path):
    recorder = RtStatsRecorder(str(tmp_path / "rt.jsonl"), FakeLoop(), [("n0", [0, 1])])
    recorder("a", Alloc(), Info())
    recorder.close()
    header, records = read_rtstats(str(tmp_path / "rt.jsonl"))
    assert (header["resources"], records[0]["pid"]) == ({"n0": [0, 1]}, 7)


class Stats:
    total, finished, failed, active = 10, 4, 1, 2


class Registry:
    unit_stats = Stats()


def test_progress_line():
    now = [100.0]
    printer = ProgressPrinter(FakeLoop(), Registry(), io.StringIO(), clock=lambda: now[0])
    now[0] = 102.0
    assert printer.line() == ("qcgflow progress [    2.0s] tasks: 4/10 done (1 failed), "
                              "2 running, 4 queued; 2.0 tasks/s (now 2.0/s)")


def test_progress_ticks_reschedule_and_close_prints():
    loop, stream = FakeLoop(), io.StringIO()
    printer = ProgressPrinter(loop, Registry(), stream)
    printer.start()
    loop.timers[0].callback()
    printer.close()
    assert (len(stream.getvalue().splitlines()), loop.timers[1].cancelled) == (2, True)


def test_service_start_imports_no_plotting():
    code = ("import sys, qcgflow.runtime.service, qcgflow.runtime.stats.hooks; "
            "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(REPO), timeout=30)
    assert done.stdout.strip() == "False", done.stderr


# --------------------------------------------------------------------------- parts

def test_service_runs_of_a_killed_then_resumed_log(tmp_path):
    """A first run killed (no 'finished' line: its last line is its end), a resume that
    finished; final_status.json belongs to the last run."""
    from qcgflow.runtime.stats.parts import service_runs
    from qcgflow.runtime.stats.workdir import parse_date
    log = "qcgflow.runtime.service: "
    (tmp_path / "service.log").write_text(
        "2026-01-01 10:00:00,000 INFO %sservice t starting in /w (tags: -), pid 1\n"
        "2026-01-01 10:00:05,500 INFO qcgflow.runtime.launch.agents: agents: lost\n"
        "2026-01-01 11:00:00,000 INFO %sservice t starting in /w (tags: -), pid 2\n"
        "2026-01-01 11:00:09,000 INFO %sservice t finished\n" % (log, log, log))
    runs = service_runs(str(tmp_path), parse_date("2026-01-01 11:00:00.2"),
                        parse_date("2026-01-01 11:00:09.1"))
    assert [(r.started, r.finished) for r in runs] == [
        (parse_date("2026-01-01 10:00:00"), parse_date("2026-01-01 10:00:05.5")),
        (parse_date("2026-01-01 11:00:00"), parse_date("2026-01-01 11:00:09.1"))]


def test_attempts_keep_each_run_of_a_unit_and_skip_restored_repeats():
    from qcgflow.runtime.stats.workdir import _attempts
    first = {"name": "w:0", "state": "CANCELED", "history": [
        {"state": "EXECUTING", "date": "2026-01-01T10:00:01"},
        {"state": "CANCELED", "date": "2026-01-01T10:00:05"}]}
    again = {"name": "w:0", "state": "SUCCEED", "history": [
        {"state": "EXECUTING", "date": "2026-01-01T11:00:01"},
        {"state": "SUCCEED", "date": "2026-01-01T11:00:02"}]}
    parent = {"name": "w", "state": "SUCCEED", "history": []}
    tasks = _attempts([first, again, dict(again), parent])
    assert [(t.name, t.state, t.job) for t in tasks] == [("w:0", "CANCELED", "w"),
                                                          ("w:0", "SUCCEED", "w")]
