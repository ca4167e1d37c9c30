"""Fixtures of the EasyVVUQ tests: the side venv with easyvvuq 1.3, and the scenario
results (each scenario runs once per test session; the tests check parts of them)."""

import subprocess

import pytest

from easyvvuq_harness import PACKAGES, easyvvuq_python, run_scenario


@pytest.fixture(scope="session")
def evq_python():
    """The python of a side venv that has easyvvuq 1.3 (skip if it cannot be had)."""
    try:
        return easyvvuq_python()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip("needs %s in a side venv, which could not be installed (%s); make PyPI "
                    "reachable or set QCGFLOW_TEST_VENVS to a directory whose easyvvuq/ "
                    "venv has them" % (" ".join(PACKAGES), exc))


@pytest.fixture(scope="session")
def campaigns(evq_python, tmp_path_factory):
    """Results of the ``campaigns`` scenario (see evq_scenarios.py)."""
    return run_scenario(evq_python, "campaigns", tmp_path_factory.mktemp("campaigns"))


@pytest.fixture(scope="session")
def per_run_resources(campaigns):
    """The per-run resources part of the ``campaigns`` scenario."""
    return campaigns["resources"]
