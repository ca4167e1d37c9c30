"""The upstream tests qcgflow does not pass on purpose, and those that do not apply.

``EXPECTED_FAILURES``: deliberate departures from QCG-PilotJob 0.14.2, each with its reason
(mirrored in docs/compatibility.md); keep it short. ``NOT_APPLICABLE``: tests that exercise
upstream's internal classes rather than behaviour qcgflow can have. ``NEEDS_FILE``: tests
that read a file of the host; skipped (with the reason) where it is absent -- upstream
fails them there too.
Keys are ``<file>::<test name>``.
"""

EXPECTED_FAILURES = {
    "test_slurmenv_api.py::test_slurmenv_api_cancel_kill_nl":
        "expects the parent of an iterative job whose iterations are EXECUTING (and ignore "
        "SIGTERM after a cancel) to read QUEUED; qcgflow's parent follows its iterations "
        "(SCHEDULED, EXECUTING with the first one, docs/job-states.md), as upstream's own "
        "test_api_simple_cancel_kill expects of a plain job",
}

NOT_APPLICABLE = {
    "test_fileinterface.py::test_local_error_job_desc":
        "checks only upstream's own Job constructor (the suite's helper joblist.py)",
    "test_slurmenv.py::test_slurmenv_launcher_agents":
        "drives upstream's node-agent launcher class (LauncherExecutionJob) directly",
}

NEEDS_FILE = {
    "test_slurmenv_api.py::test_slurmenv_api_std_streams":
        ("/etc/system-release", "reads /etc/system-release (Red Hat-like hosts only)"),
    "test_slurmenv_api.py::test_slurmenv_api_std_streams_many_cores":
        ("/etc/system-release", "reads /etc/system-release (Red Hat-like hosts only)"),
}
