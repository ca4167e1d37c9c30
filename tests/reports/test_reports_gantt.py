"""Gantt charts of a real run: produced, non-empty, in the format the extension names."""

import pytest

from reports_harness import call, cli, job, magic, run_service
from qcgflow.runtime.stats.cli import report_main

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "jpg": b"\xff\xd8\xff"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gantt")
    result = run_service(tmp, [job("a", "sleep", [0.3], iterations=3),
                               job("b", "sleep", [0.2], iterations=2)], "--enable-rt-stats")
    assert result.returncode == 0, result.describe()
    return result


@pytest.mark.parametrize("command", ["gantt", "gantt-gaps"])
@pytest.mark.parametrize("ext", ["png", "pdf", "jpg"])
def test_binary_formats(run, tmp_path, capsys, command, ext):
    out = tmp_path / ("chart.%s" % ext)
    status, _, err = call(report_main, [command, run.wd, out], capsys)
    assert status == 0, err
    assert magic(out).startswith(MAGIC[ext])


@pytest.mark.parametrize("command", ["gantt", "gantt-gaps"])
def test_svg(run, tmp_path, capsys, command):
    out = tmp_path / "chart.svg"
    status, _, err = call(report_main, [command, run.wd, out], capsys)
    assert status == 0, err
    assert b"<svg" in magic(out)


def test_png_is_a_real_picture(run, tmp_path, capsys):
    out = tmp_path / "chart.png"
    call(report_main, ["gantt", run.wd, out], capsys)
    assert out.stat().st_size > 10_000  # axes, labels and bars, not an empty canvas


def test_gantt_draws_one_bar_per_task_and_core(run, tmp_path, capsys):
    _, out, _ = call(report_main, ["gantt", run.wd, tmp_path / "c.png"], capsys)
    assert out.startswith("gantt: 5 bars")


def test_gaps_are_found(run, tmp_path, capsys):
    # core 1 idles while core 0 runs a's third iteration (or b's): at least one gap each,
    # plus the start-up gap
    _, out, _ = call(report_main, ["gantt-gaps", run.wd, tmp_path / "g.png"], capsys)
    bars = int(out.split(":")[1].split()[0])
    assert bars > 5


def test_gantt_without_rtstats_uses_the_report_dates(tmp_path, capsys):
    result = run_service(tmp_path, [job("a", "true", iterations=2)])
    assert result.returncode == 0, result.describe()
    out = tmp_path / "c.png"
    status, _, err = call(report_main, ["gantt", result.wd, out], capsys)
    assert status == 0, err
    assert magic(out).startswith(MAGIC["png"])


def test_the_command_line_writes_the_chart(run, tmp_path):
    out = tmp_path / "cli.pdf"
    done = cli("report", "gantt", run.wd, out)
    assert done.returncode == 0, done.stderr
    assert magic(out).startswith(MAGIC["pdf"])
