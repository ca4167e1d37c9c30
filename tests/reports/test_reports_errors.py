"""Unusable input: one line on stderr, exit status 2, never a traceback."""

import json

import pytest

from reports_harness import call, cli, job, run_service
from qcgflow.runtime.stats.cli import processes_main, report_main


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A run without any statistics option."""
    tmp = tmp_path_factory.mktemp("plain")
    result = run_service(tmp, [job("a", "true")])
    assert result.returncode == 0, result.describe()
    return result


def one_line_error(status, out, err, needle):
    assert status == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert needle in err


@pytest.mark.parametrize("command", [["stats"], ["launch-stats"], ["rusage", "--details"],
                                     ["efficiency"]])
def test_missing_directory(tmp_path, capsys, command):
    one_line_error(*call(report_main, command + [tmp_path / "nowhere"], capsys),
                   "no such directory")


def test_directory_without_working_files(tmp_path, capsys):
    one_line_error(*call(report_main, ["stats", tmp_path], capsys), "not a qcgflow")


def test_two_service_directories(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / (".qcgpjm-service-%s" % name)).mkdir()
    one_line_error(*call(report_main, ["stats", tmp_path], capsys), "give one of them")


def test_aux_dir_without_report(tmp_path, capsys):
    aux = tmp_path / ".qcgpjm-service-x"
    aux.mkdir()
    (aux / "service.log").write_text("")
    one_line_error(*call(report_main, ["stats", tmp_path], capsys), "no jobs.report")


def test_launch_stats_need_rtstats(plain_run, capsys):
    one_line_error(*call(report_main, ["launch-stats", plain_run.wd], capsys),
                   "--enable-rt-stats")


def test_unknown_plot_format(plain_run, tmp_path, capsys):
    one_line_error(*call(report_main, ["gantt", plain_run.wd, tmp_path / "x.bmp"], capsys),
                   "unknown plot format")


def test_unwritable_plot(plain_run, tmp_path, capsys):
    one_line_error(*call(report_main, ["gantt", plain_run.wd, tmp_path / "no" / "x.png"],
                         capsys), "x.png")


def test_processes_need_proc_stats(plain_run, capsys):
    one_line_error(*call(processes_main, ["tree", plain_run.wd, "a"], capsys),
                   "--enable-proc-stats")


def test_processes_of_an_unknown_job(plain_run, capsys):
    one_line_error(*call(processes_main, ["tree", plain_run.wd, "nope"], capsys),
                   "no job 'nope'")


def test_processes_of_a_job_never_sampled(plain_run, capsys):
    (plain_run.aux_dir / "ptrace_h_1_1.log").write_text(json.dumps({"node": "h", "processes": []}))
    try:
        one_line_error(*call(processes_main, ["apps", plain_run.wd, "a"], capsys),
                       "not seen by the process sampler")
    finally:
        (plain_run.aux_dir / "ptrace_h_1_1.log").unlink()


@pytest.mark.parametrize("argv", [["report", "stats", "/nonexistent/wd"],
                                  ["processes", "tree", "/nonexistent/wd", "job"]])
def test_command_line_bad_wd(argv):
    done = cli(*argv)
    assert (done.returncode, len(done.stderr.splitlines()), "Traceback" in done.stderr) == (
        2, 1, False), done.stderr


def test_unknown_report_command(capsys):
    status, _, err = call(report_main, ["speed", "x"], capsys)
    assert status == 2 and "invalid choice" in err
