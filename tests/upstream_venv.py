"""A side virtual environment with the real QCG-PilotJob 0.14.2, made once per machine.

Created by the test session when missing (``python -m venv`` + ``pip install``) under
``$QCGFLOW_TEST_VENVS`` (default ``/tmp/qcgflow-test-venvs``) and reused afterwards.
"""

import os
import subprocess
import sys
from pathlib import Path

UPSTREAM = "qcg-pilotjob==0.14.2"
ROOT = Path(os.environ.get("QCGFLOW_TEST_VENVS", "/tmp/qcgflow-test-venvs"))


def upstream_python() -> Path:
    """The venv's python, creating the venv if needed.

    Raises:
        RuntimeError: the package could not be installed (no package index, ...).
    """
    venv = ROOT / "qcgpj-0.14.2"
    python = venv / "bin" / "python"
    if python.exists() and _has_upstream(python):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                   capture_output=True, timeout=300)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", UPSTREAM],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not _has_upstream(python):
        raise RuntimeError("pip install %s failed: %s" % (UPSTREAM, done.stderr.strip()[-500:]))
    return python


def _has_upstream(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import qcg.pilotjob.api.manager"],
                          capture_output=True, timeout=120).returncode == 0


EXECUTOR_API = "qcg-pilotjob-executor-api==0.14.2"


def executor_api_python() -> Path:
    """The python of a second side venv with upstream's executor API (a separate PyPI package).

    Kept apart from the client venv so that venv stays the plain ``qcg-pilotjob`` wheel.

    Raises:
        RuntimeError: the package could not be installed (no package index, ...).
    """
    venv = ROOT / "qcgpj-exec-0.14.2"
    python = venv / "bin" / "python"
    probe = "import qcg.pilotjob.executor_api.qcgpj_executor"
    if python.exists() and _imports(python, probe):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                   capture_output=True, timeout=300)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", EXECUTOR_API, UPSTREAM],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not _imports(python, probe):
        raise RuntimeError("pip install %s failed: %s"
                           % (EXECUTOR_API, done.stderr.strip()[-500:]))
    return python


def _imports(python: Path, statement: str) -> bool:
    return subprocess.run([str(python), "-c", statement],
                          capture_output=True, timeout=120).returncode == 0
