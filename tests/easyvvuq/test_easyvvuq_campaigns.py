"""Real EasyVVUQ 1.3 campaigns (side venv) through qcgflow.easyvvuq: the pool and the
native path give the statistics of a ThreadPoolExecutor run, bit for bit; failures are
reported by run and the others are stored; per-run resources; MPI wraps the model."""

import json
import shutil
import subprocess

import pytest

from easyvvuq_harness import REPO, scenario_env

EXAMPLE = REPO / "examples" / "workflows" / "easyvvuq_pce.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

MODES = ["pool", "native_on_pool", "native"]
NEW, COLLATED = 1, 3  # easyvvuq.constants.Status
FAILING = ["13", "14", "15", "16"]  # the PCE runs whose a (0.93) is above fail_above 0.9


@pytest.mark.parametrize("sampler", ["pce", "sc"])
@pytest.mark.parametrize("mode", MODES)
def test_statistics_equal_threads(campaigns, sampler, mode):
    stats = campaigns["stats"][sampler]
    assert stats[mode] == stats["thread"]


def test_other_chain_falls_back_to_the_pool(campaigns):
    assert campaigns["fallback_type"] == "_Fallback"


def test_fallback_statistics_equal_threads(campaigns):
    assert campaigns["fallback"] == campaigns["stats"]["pce"]["thread"]


def test_failed_runs_named_with_exit_code(campaigns):
    first = campaigns["failures"]["first"]
    assert {k: v["exit_code"] for k, v in first.items()} == dict.fromkeys(FAILING, 3)


def test_failed_run_error_has_dir_and_stderr(campaigns):
    text = campaigns["failures"]["first"]["13"]["text"]
    assert "run 13 failed (run dir " in text and "runs/run_13" in text \
        and "above fail_above" in text


def test_other_runs_stored_despite_failures(campaigns):
    assert campaigns["failures"]["stored_after_first"] == 12


def test_failed_runs_stay_new_with_reason(campaigns):
    statuses = campaigns["failures"]["statuses_after_first"]
    failed = {k: (v[0], v[1]["qcgflow"]["exit_code"]) for k, v in statuses.items()
              if v[0] != COLLATED}
    assert failed == dict.fromkeys(FAILING, (NEW, 3))


def test_later_call_runs_only_failed(campaigns):
    assert campaigns["failures"]["second_runs"] == FAILING


def test_later_call_completes_campaign(campaigns):
    assert campaigns["failures"]["after_second"] == campaigns["stats"]["pce"]["thread"]


def test_retries_rerun_failed_runs(campaigns):
    assert campaigns["failures"]["with_retries"] == campaigns["stats"]["pce"]["thread"]


def test_pool_failure_is_run_failed(campaigns):
    error = campaigns["failures"]["pool_error"]
    assert (error["type"], error["exit_code"], str(error["run_id"]) in FAILING) == \
        ("RunFailed", 3, True)


def test_pool_failure_has_stderr_tail(campaigns):
    assert "above fail_above" in campaigns["failures"]["pool_error"]["stderr_tail"]


def test_pool_goes_on_after_failure(campaigns):
    assert campaigns["failures"]["after_failure_collated"] == 4


@pytest.mark.parametrize("path", ["pool", "native"])
def test_per_run_cores(per_run_resources, path):
    assert set(per_run_resources[path + "_cores"].values()) == {1, 2} and \
        all((float(a) > 0.5) + 1 == n for a, n in per_run_resources[path + "_cores"].items())


@pytest.mark.skipif(shutil.which("mpirun") is None,
                    reason="needs Open MPI's mpirun (apt-get install openmpi-bin)")
@pytest.mark.parametrize("path", ["pool", "native"])
def test_mpi_model_wraps_simulation(per_run_resources, path):
    """With model='openmpi' the model itself runs as n ranks (n = the run's cores)."""
    assert per_run_resources[path + "_ranks"] == per_run_resources[path + "_cores"]


def test_example_script_runs(evq_python, tmp_path):
    """examples/workflows/easyvvuq_pce.py as a user runs it (native path, 4 runs)."""
    done = subprocess.run([str(evq_python), str(EXAMPLE), "--order", "1", "--delay", "0.01",
                           "--wd", str(tmp_path / "campaign")], capture_output=True,
                          text=True, timeout=600, env=scenario_env())
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
    assert (report.get("collated"), report.get("failed")) == (4, {}), done.stderr[-2000:]
