"""GPU figures of `qcgflow report stats`: a real run of GPU tasks with known sleeps.

4 x sleep 0.5 with one GPU each on a node with 2 GPUs (and 4 cores), then 2 x sleep 0.5
with 2 GPUs each: 4 x 0.5 + 2 x 2 x 0.5 = 4 GPU-seconds, and the two GPUs are busy almost
all the time. A run without GPUs has no GPU figures.
"""

import json

import pytest

from reports_harness import call, job, run_service
from qcgflow.runtime.stats.cli import report_main


def gpu_job(name, gpus, iterations):
    desc = job(name, "sleep", [0.5], iterations=iterations)
    desc["resources"] = {"numCores": {"exact": 1}, "nodeCrs": {"gpu": gpus}}
    return desc


def stats(capsys, wd):
    status, out, err = call(report_main, ["stats", wd, "--json"], capsys)
    assert status == 0, err
    return json.loads(out)


def test_gpu_hours_and_use(tmp_path, capsys):
    run = run_service(tmp_path, [gpu_job("one", 1, 4), gpu_job("two", 2, 2)],
                      nodes="n0:4:gpus=0+1")
    assert run.returncode == 0, run.describe()
    data = stats(capsys, run.wd)
    assert data["total_gpus"] == 2
    assert data["gpu_hours"] * 3600 == pytest.approx(4.0, abs=0.3)
    expected_use = 100 * data["gpu_hours"] * 3600 / (2 * data["service_runtime"])
    assert data["gpu_use_pct"] == pytest.approx(expected_use, rel=1e-3)
    assert 70 < data["gpu_use_pct"] <= 100


def test_no_gpu_figures_without_gpus(tmp_path, capsys):
    run = run_service(tmp_path, [job("s", "true")])
    assert run.returncode == 0, run.describe()
    assert not {"total_gpus", "gpu_hours", "gpu_use_pct"} & set(stats(capsys, run.wd))
