"""The warm worker learns a big package (easyvvuq imports ~3000 modules; their list is
~350 kB, more than a pipe holds by default): the next task finds it imported."""

import os
import sys

import pytest

import qcgflow

MODULES = 3000


@qcgflow.task
def import_package(lib):
    sys.path.insert(0, lib)
    import bigpkg  # noqa: F401 - the import is the point
    return len(sys.modules)


@qcgflow.task
def already_imported():
    return "bigpkg.module_with_a_rather_long_name_2999" in sys.modules


@pytest.fixture
def big_package(tmp_path):
    package = tmp_path / "lib" / "bigpkg"
    package.mkdir(parents=True)
    names = ["module_with_a_rather_long_name_%04d" % i for i in range(MODULES)]
    for name in names:
        (package / (name + ".py")).write_text("VALUE = 1\n")
    (package / "__init__.py").write_text("".join("from . import %s\n" % n for n in names))
    return str(tmp_path / "lib")


def test_next_task_finds_big_package_imported(big_package, tmp_path):
    with qcgflow.init(nodes=1, wd=str(tmp_path / "wd")):
        import_package.remote(big_package).result(timeout=120)
        assert already_imported.remote().result(timeout=120) is True
