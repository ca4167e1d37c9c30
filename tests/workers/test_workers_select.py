"""Which jobs a warm Python worker may run (pure selection rules of launch/pyworker.py)."""

import os
import sys

import pytest

from qcgflow.runtime.launch.local import ProcessSpec
from qcgflow.runtime.launch.pyworker import startup_environment, warm_module

PY = sys.executable
ENV = {"PATH": os.path.dirname(PY), "HOME": "/root"}


def spec(*argv, warm=True, env=ENV):
    return ProcessSpec(list(argv), env, "/tmp", warm=warm)


@pytest.mark.parametrize("argv, module", [
    ((PY, "-m", "qcgflow.runner", "call", "result"), "qcgflow.runner"),
    ((PY, "-m", "json.tool"), "json.tool"),
    ((os.path.basename(PY), "-m", "mod"), "mod"),
    ((PY, "-c", "pass"), None),
    ((PY, "script.py"), None),
    ((PY, "-m"), None),
    ((PY, "-m", "-X"), None),
    (("/bin/echo", "-m", "mod"), None),
    (("no-such-python-here", "-m", "mod"), None),
], ids=["runner", "dotted", "on-path", "dash-c", "script", "no-module", "option", "not-python",
        "missing"])
def test_warm_module(argv, module):
    found = warm_module(spec(*argv))
    assert (found[1] if found else None) == module


def test_a_job_with_a_prelude_or_model_is_not_warm():
    assert warm_module(spec(PY, "-m", "mod", warm=False)) is None


def test_the_same_file_in_another_directory_is_not_warm(tmp_path):
    link = tmp_path / "python"
    link.symlink_to(PY)
    assert warm_module(spec(str(link), "-m", "mod")) is None


def test_the_interpreter_path_is_what_the_job_named():
    found = warm_module(spec(os.path.basename(PY), "-m", "mod"))
    assert found[0] == os.path.join(os.path.dirname(PY), os.path.basename(PY))


@pytest.mark.parametrize("name, counts", [
    ("PYTHONPATH", True), ("LD_LIBRARY_PATH", True), ("LC_ALL", True), ("LANG", True),
    ("OMP_NUM_THREADS", True), ("QCG_PM_STEP_ID", False), ("HOME", False), ("X", False),
])
def test_startup_environment(name, counts):
    assert (name in startup_environment({name: "1"})) == counts
