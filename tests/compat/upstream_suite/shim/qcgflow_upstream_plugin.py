"""pytest plugin of the upstream-suite runner (``-p qcgflow_upstream_plugin``).

- points upstream's ``SHARED_PATH`` (``/data``, a directory every node sees) at
  ``$QCGFLOW_UPSTREAM_SHARED`` before the test modules import it;
- selects the tests of the mode (``$QCGFLOW_UPSTREAM_MODE``): ``local`` runs the tests that
  need no allocation, ``slurm`` only those that skip themselves outside a Slurm allocation of
  >= 2 nodes; tests that are not applicable to qcgflow are deselected with their reason;
- marks the expected failures (``qcgflow_upstream_expected.py``, strict: an unexpected pass
  is a failure) and skips the tests that read a host file this host lacks;
- writes every test's outcome as JSON lines to ``$QCGFLOW_UPSTREAM_RESULTS``.
"""

import inspect
import json
import os

import pytest

from qcgflow_upstream_expected import EXPECTED_FAILURES, NEEDS_FILE, NOT_APPLICABLE


def _key(item):
    return "%s::%s" % (os.path.basename(str(item.fspath)), item.name)


def _needs_slurm(item):
    try:
        return "in_slurm_allocation()" in inspect.getsource(item.function)
    except (OSError, TypeError):
        return False


def _record(entry):
    path = os.environ.get("QCGFLOW_UPSTREAM_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def pytest_configure(config):
    shared = os.environ.get("QCGFLOW_UPSTREAM_SHARED")
    if shared:
        import qcg.pilotjob.tests.utils as upstream_utils
        upstream_utils.SHARED_PATH = shared


def pytest_collection_modifyitems(session, config, items):
    mode = os.environ.get("QCGFLOW_UPSTREAM_MODE", "local")
    keep, drop = [], []
    for item in items:
        key = _key(item)
        if _needs_slurm(item) != (mode == "slurm"):
            drop.append(item)
        elif key in NOT_APPLICABLE:
            drop.append(item)
            _record({"test": key, "outcome": "not applicable", "reason": NOT_APPLICABLE[key]})
        else:
            if key in NEEDS_FILE and not os.path.exists(NEEDS_FILE[key][0]):
                path, why = NEEDS_FILE[key]
                item.add_marker(pytest.mark.skip(reason="%s is absent: the test %s" % (path, why)))
            if key in EXPECTED_FAILURES:
                item.add_marker(pytest.mark.xfail(reason=EXPECTED_FAILURES[key], strict=True))
            keep.append(item)
    items[:] = keep
    if drop:
        config.hook.pytest_deselected(items=drop)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        if report.when != "call" and report.outcome == "passed":
            return
        key = "%s::%s" % (os.path.basename(report.fspath), report.location[2])
        if hasattr(report, "wasxfail"):
            outcome = "expected failure" if report.skipped else "failed"  # strict XPASS fails
        else:
            outcome = report.outcome
        message = ""
        if report.outcome == "failed":
            message = report.longrepr.reprcrash.message if hasattr(
                report.longrepr, "reprcrash") and report.longrepr.reprcrash else str(report.longrepr)
            message = message.strip().splitlines()[0][:300] if message.strip() else ""
            if report.when != "call":
                message = "(%s) %s" % (report.when, message)
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])[:300]
        _record({"test": key, "outcome": outcome, "message": message,
                 "duration": round(report.duration, 2)})
