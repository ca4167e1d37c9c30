"""Every example of examples/workflows run twice: again in its directory (refused without
``--resume``; with it, nothing runs and nothing changes) and in a second directory sharing
its ``--cache``, whose outputs must equal the first run's."""

import shutil

import pytest

from rerun_harness import outputs
from support.services import cli
from workflows_harness import EXAMPLES

FILES = ["hello.yaml", "diamond.yaml", "sweep.yaml", "pipeline.yaml", "python_tasks.yaml",
         "mpi_ensemble.yaml"]


def _run(tmp_path, example, wd, *more, env=None):
    nodes = ["--nodes", "4" if example == "mpi_ensemble.yaml" else "2"] \
        if not example.endswith(".py") else []
    return cli("run", EXAMPLES / example, *nodes, *(["--wd", wd] if wd else []), "--quiet",
               *more, cwd=tmp_path, env=env)


def _needs(example):
    if example == "mpi_ensemble.yaml":
        missing = [tool for tool in ("mpicc", "mpirun") if shutil.which(tool) is None]
        if missing:
            pytest.skip("Open MPI is not installed (%s missing): apt-get install openmpi-bin "
                        "libopenmpi-dev" % ", ".join(missing))


@pytest.mark.parametrize("example", FILES)
def test_a_workflow_example_reruns_and_runs_from_the_cache_with_equal_outputs(tmp_path,
                                                                            example):
    _needs(example)
    one, two, cache = tmp_path / "one", tmp_path / "two", tmp_path / "cache"
    first = _run(tmp_path, example, one, "--cache", cache)
    assert first.returncode == 0, first.stdout + first.stderr
    made = outputs(one)
    assert made, "the example made no files"

    again = _run(tmp_path, example, one)
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stderr.startswith("qcgflow run: %s holds an earlier run; add --resume to "
                                   "run only what did not complete there (qcgflow run %s "
                                   "--wd %s --resume)" % (one, EXAMPLES / example, one))
    assert outputs(one) == made  # nothing appended, nothing removed

    resumed = _run(tmp_path, example, one, "--resume")
    assert (resumed.returncode, "nothing to run" in resumed.stdout) == (0, True), \
        resumed.stdout + resumed.stderr
    assert outputs(one) == made

    cached = _run(tmp_path, example, two, "--cache", cache)
    assert cached.returncode == 0, cached.stdout + cached.stderr
    assert outputs(two) == made


def test_the_requests_file_example_is_not_run_twice_in_one_directory(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(tmp_path, "sweep.json", one).returncode == 0
    made = outputs(one)
    again = _run(tmp_path, "sweep.json", one)
    assert again.returncode == 2
    assert "holds an earlier run; a requests file cannot be resumed, or give a new --wd" \
        in again.stderr
    assert outputs(one) == made
    assert _run(tmp_path, "sweep.json", two).returncode == 0
    assert outputs(two) == made


def test_the_python_api_example_resumes_and_runs_from_the_cache_with_equal_outputs(tmp_path):
    one, two, cache = tmp_path / "one", tmp_path / "two", tmp_path / "cache"
    first = _run(tmp_path, "api_sweep.py", None, "--cache", cache,
                 env={"QCGFLOW_EXAMPLE_WD": str(one)})
    assert (first.returncode, first.stdout) == (0, "sum of squares: 204\n"), first.stderr
    made = outputs(one)
    resumed = _run(tmp_path, "api_sweep.py", None, "--resume",
                   env={"QCGFLOW_EXAMPLE_WD": str(one)})
    assert (resumed.returncode, resumed.stdout) == (0, "sum of squares: 204\n")
    assert "reused 9 of 9 tasks" in resumed.stderr
    assert outputs(one) == made
    cached = _run(tmp_path, "api_sweep.py", None, "--cache", cache,
                  env={"QCGFLOW_EXAMPLE_WD": str(two)})
    assert (cached.returncode, cached.stdout) == (0, "sum of squares: 204\n")
    assert outputs(two) == made
