"""A persistent worker teaches the zygote what it imported, however long the list: the
next process forked from the zygote starts with it (easyvvuq imports ~3000 modules, a list
of ~350 kB, more than one datagram to the service takes)."""

import sys

import pytest

import qcgflow

from support.processes import left_after

MODULES = 3000
PROBE = "bigpkg_for_workers.module_with_a_rather_long_name_%04d" % (MODULES - 1)


@qcgflow.task
def import_package():
    import bigpkg_for_workers  # noqa: F401 - the import is the point
    return PROBE in sys.modules


@qcgflow.task
def already_imported():
    return PROBE in sys.modules


@pytest.fixture
def big_package(tmp_path):
    lib = tmp_path / "lib"
    package = lib / "bigpkg_for_workers"
    package.mkdir(parents=True)
    names = ["module_with_a_rather_long_name_%04d" % i for i in range(MODULES)]
    for name in names:
        (package / (name + ".py")).write_text("VALUE = 1\n")
    (package / "__init__.py").write_text("".join("from . import %s\n" % n for n in names))
    sys.path.insert(0, str(lib))  # the service (and its zygote) get our path
    yield str(lib)
    sys.path.remove(str(lib))
    for name in [n for n in sys.modules if n.startswith("bigpkg_for_workers")]:
        del sys.modules[name]


def test_a_fresh_process_after_a_worker_imported_a_big_package_has_it(big_package,
                                                                      tmp_path):
    fresh = already_imported.options(env={"QCGFLOW_WORKER_REUSE": "0"})
    with qcgflow.init(nodes=1, wd=str(tmp_path / "wd")):
        assert fresh.remote().result(timeout=60) is False  # not before anyone imported it
        assert import_package.remote().result(timeout=120) is True  # in a worker
        assert fresh.remote().result(timeout=120) is True  # forked from the zygote
    assert not left_after(tmp_path, 5.0)
