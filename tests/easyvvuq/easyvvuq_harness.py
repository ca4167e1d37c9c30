"""A side virtual environment with the real EasyVVUQ 1.3, made once per machine, and a
runner for the scenario scripts in it.

EasyVVUQ pins ``numpy<2`` and an old QCG-PilotJob and pulls dask, kubernetes and
scikit-learn: it does not belong in the test environment. The venv is made under
``${QCGFLOW_TEST_VENVS:-/tmp/qcgflow-test-venvs}/easyvvuq`` (``python -m venv`` + one
``pip install``, ~1 min) and reused while it is valid. qcgflow is not installed into it:
the scenarios run with ``PYTHONPATH`` set to this checkout, so they test the code here.
Measured on the 2-core host (no pip cache): install ~45 s, first ``import easyvvuq``
(writing bytecode caches) ~16 s; later imports ~3-5 s.
"""

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import tomllib

EASYVVUQ = ["easyvvuq==1.3", "six"]  # numpoly needs six but does not declare it
ROOT = Path(os.environ.get("QCGFLOW_TEST_VENVS", "/tmp/qcgflow-test-venvs"))
VENV = ROOT / "easyvvuq"
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "evq_scenarios.py"


def _qcgflow_requirements() -> List[str]:
    """qcgflow's own dependencies (pyproject.toml): qcgflow comes from PYTHONPATH."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


PACKAGES = EASYVVUQ + _qcgflow_requirements()
_CHECK = ("import importlib.metadata as m, re, sys; names = sys.argv[1:]; "
          "sys.exit(m.version('easyvvuq') != '1.3' or not all("
          "m.distribution(re.split('[<>=!~;\\[ ]', n)[0]) for n in names))")


def easyvvuq_python() -> Path:
    """The venv's python, creating the venv if needed (one creator at a time: a lock).

    Raises:
        RuntimeError: the packages could not be installed (no package index, ...).
    """
    python = VENV / "bin" / "python"
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "easyvvuq.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and _valid(python):
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True,
                       capture_output=True, timeout=300)
        # --no-compile: compiling every installed module takes longer than the install;
        # the first import below compiles (and caches) only what easyvvuq imports
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile",
                               *PACKAGES], capture_output=True, text=True, timeout=900)
        if done.returncode == 0:
            subprocess.run([str(python), "-c", "import easyvvuq"], capture_output=True,
                           timeout=600, env=_bytecode_env())
        if done.returncode != 0 or not _valid(python):
            raise RuntimeError("pip install %s failed: %s"
                               % (" ".join(PACKAGES), done.stderr.strip()[-500:]))
    return python


def _valid(python: Path) -> bool:
    return subprocess.run([str(python), "-c", _CHECK, *PACKAGES], capture_output=True,
                          timeout=120).returncode == 0


def _bytecode_env() -> Dict[str, str]:
    """This environment, allowed to write bytecode caches: without them importing
    easyvvuq compiles ~3000 modules every time (~30 s instead of ~3 s)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def scenario_env() -> Dict[str, str]:
    """The environment of a scenario: this checkout first on the import path; Open MPI
    allowed to run as root (CI runs as root); bytecode caches written."""
    env = _bytecode_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def run_scenario(python: Path, name: str, work_dir: Path, timeout: float = 600) -> Any:
    """Run ``evq_scenarios.py NAME WORK_DIR`` in the venv; its JSON result.

    Raises:
        AssertionError: the scenario failed (its stderr's end in the message).
    """
    done = subprocess.run([str(python), str(SCENARIOS), name, str(work_dir)],
                          capture_output=True, text=True, timeout=timeout,
                          env=scenario_env(), start_new_session=True)
    assert done.returncode == 0, "scenario %s failed (exit code %d):\n%s" % (
        name, done.returncode, done.stderr[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
