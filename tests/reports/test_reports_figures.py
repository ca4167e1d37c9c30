"""Figures of a real run with known sleeps: 4 x sleep 0.5 on 2 cores, then a failing job.

Expected: the service runs ~1 s; each core is busy ~1 s; the launcher's overheads are
milliseconds.
"""

import json

import pytest

from reports_harness import call, figures, job, run_service
from qcgflow.runtime.stats.cli import report_main

SLEEP = 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figures")
    result = run_service(tmp, [job("s", "sleep", [SLEEP], iterations=4), job("bad", "false")],
                         "--enable-rt-stats")
    assert result.returncode == 0, result.describe()
    return result


def report(capsys, *argv):
    status, out, err = call(report_main, argv, capsys)
    assert status == 0, err
    return out


def report_json(capsys, *argv):
    return json.loads(report(capsys, *argv, "--json"))


def test_rtstats_has_one_line_per_process(run):
    lines = (run.aux_dir / "rtstats.jsonl").read_text().splitlines()
    names = sorted(json.loads(line).get("name", "") for line in lines[1:])
    assert names == ["bad", "s:0", "s:1", "s:2", "s:3"]


def test_rtstats_records_exact_run_times(run):
    records = [json.loads(line) for line in (run.aux_dir / "rtstats.jsonl").read_text()
               .splitlines()[1:]]
    from qcgflow.runtime.stats.workdir import parse_date
    runtimes = [parse_date(r["end"]) - parse_date(r["start"]) for r in records
                if r["name"].startswith("s:")]
    assert all(SLEEP <= t < SLEEP + 0.15 for t in runtimes), runtimes


@pytest.mark.parametrize("key, expected", [
    ("total_jobs", 5), ("failed_jobs", 1), ("total_cores", 2), ("total_nodes", 1)])
def test_stats_counts(run, capsys, key, expected):
    assert report_json(capsys, "stats", run.wd)[key] == expected


def test_stats_runtime_is_about_one_second(run, capsys):
    runtime = report_json(capsys, "stats", run.wd)["service_runtime"]
    assert 2 * SLEEP <= runtime < 2 * SLEEP + 0.8


@pytest.mark.parametrize("key", ["init_overhead", "finish_overhead"])
def test_stats_service_overheads_are_small(run, capsys, key):
    assert 0.0 <= report_json(capsys, "stats", run.wd)[key] < 0.3


def test_stats_overhead_ratio_matches_overheads(run, capsys):
    data = report_json(capsys, "stats", run.wd)
    assert data["overhead_ratio_pct"] == pytest.approx(
        100 * data["total_overhead"] / data["service_runtime"], rel=1e-3)


def test_stats_overhead_core_hours(run, capsys):
    data = report_json(capsys, "stats", run.wd)
    assert data["overhead_core_hours"] == pytest.approx(2 * data["total_overhead"] / 3600,
                                                        rel=1e-3, abs=1e-6)


def test_launch_stats_cover_every_process(run, capsys):
    assert report_json(capsys, "launch-stats", run.wd)["jobs"] == 5


@pytest.mark.parametrize("key", ["avg_start_overhead", "avg_finish_overhead",
                                 "max_start_overhead", "max_finish_overhead"])
def test_launch_overheads_per_job_are_small(run, capsys, key):
    assert 0.0 <= report_json(capsys, "launch-stats", run.wd)[key] < 0.1


def test_launch_stats_real_runtime(run, capsys):
    # four sleeps of 0.5 s and one 'false' (~0 s)
    average = report_json(capsys, "launch-stats", run.wd)["avg_real_runtime"]
    assert 4 * SLEEP / 5 <= average < 4 * (SLEEP + 0.1) / 5


def test_launch_stats_qcg_runtime_is_real_plus_overheads(run, capsys):
    data = report_json(capsys, "launch-stats", run.wd)
    assert data["avg_qcg_runtime"] == pytest.approx(
        data["avg_real_runtime"] + data["avg_total_overhead"], abs=1e-5)


def test_rusage_uses_both_cores(run, capsys):
    assert report_json(capsys, "rusage", run.wd)["used_cores"] == 2


def test_rusage_utilisation_is_busy_time_over_runtime(run, capsys):
    runtime = report_json(capsys, "stats", run.wd)["service_runtime"]
    utilisation = report_json(capsys, "rusage", run.wd)["avg_core_utilization_pct"]
    assert utilisation == pytest.approx(100 * 2 * SLEEP / runtime, abs=6.0)


def test_efficiency_is_near_full(run, capsys):
    # each core ran two sleeps back to back: only the launch gap is lost
    assert report_json(capsys, "efficiency", run.wd)["avg_core_utilization_pct"] > 95.0


def test_rusage_details_list_every_core(run, capsys):
    data = report_json(capsys, "rusage", "--details", run.wd)
    assert [(c["node"], c["core"]) for c in data["cores"]] == [("n0", 0), ("n0", 1)]


def test_rusage_details_text_names_node_and_cores(run, capsys):
    text = report(capsys, "rusage", "--details", run.wd)
    lines = text.splitlines()
    assert lines[2].strip() == "n0"
    assert [ln.split(":")[0].strip() for ln in lines[3:]] == ["0", "1"]


@pytest.mark.parametrize("command, labels", [
    ("stats", ["total jobs", "failed jobs", "total cores", "total nodes", "service started",
               "service finished", "service runtime", "init overhead", "finish overhead",
               "total overhead", "overhead ratio (%)", "overhead core-hours"]),
    ("launch-stats", ["total start overhead", "total finish overhead",
                      "total start and finish overhead", "average job start overhead",
                      "average job finish overhead", "average job total overhead",
                      "max job start overhead", "max job finish overhead",
                      "average real job run time", "average qcg job run time",
                      "average job overhead per runtime (%)", "generated for total jobs"]),
    ("rusage", ["used cores", "average core utilization (%)"]),
    ("efficiency", ["used cores", "average core utilization (%)"]),
])
def test_text_reports_list_the_seed_metrics(run, capsys, command, labels):
    assert list(figures(report(capsys, command, run.wd))) == labels


@pytest.mark.parametrize("command", ["stats", "launch-stats", "rusage", "efficiency"])
def test_text_labels_are_right_aligned(run, capsys, command):
    lines = report(capsys, command, run.wd).splitlines()
    assert len({line.index(": ") for line in lines}) == 1


def test_the_aux_dir_itself_is_accepted(run, capsys):
    assert report_json(capsys, "stats", run.aux_dir) == report_json(capsys, "stats", run.wd)
