"""The public names of ``qcgflow`` and the cost of importing it."""

import subprocess
import sys

import pytest

import qcgflow


@pytest.mark.parametrize("name", qcgflow.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(qcgflow, name) is not None


@pytest.mark.parametrize("name, module", [("task", "qcgflow.graph.task"),
                                          ("compile", "qcgflow.build.compile")])
def test_functions_stay_functions_after_their_modules_load(name, module):
    __import__(module)
    assert callable(getattr(qcgflow, name)) and not hasattr(getattr(qcgflow, name), "__file__")


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError):
        qcgflow.nonexistent


def test_import_is_light():
    code = ("import sys, qcgflow; print(sorted(m for m in ('networkx', 'zmq', 'cloudpickle') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "[]"


def test_exceptions_are_those_of_the_errors_module():
    assert qcgflow.TaskFailed is qcgflow.errors.TaskFailed
