"""Helpers of the workflow-file and command-line tests.

* ``write(tmp_path, name, text)``: a workflow file (dedented) in tmp_path.
* ``assert_golden(name, jobs)``: compare with ``tests/workflows/golden/<name>.json``
  (support.golden; ``QCGFLOW_UPDATE_GOLDEN=1`` rewrites it: review the diff).
* The command line: ``support.services.cli`` (to the end) and ``start_cli`` (background).

Every test of the directory must leave no process under its tmp_path (conftest.py).
"""

import textwrap
from pathlib import Path

from support import golden
from support.processes import REPO

ROOT = REPO
EXAMPLES = ROOT / "examples" / "workflows"
GOLDEN = Path(__file__).resolve().parent / "golden"
PYTHON = "python3"
DEADLINE = 90


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def assert_golden(name: str, jobs) -> None:
    golden.assert_golden(GOLDEN, name, jobs)
