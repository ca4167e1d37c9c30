"""What a service and a client import before they do anything (issue 19: start time).

Every ``qcgflow service`` run and every ``qcgflow.init`` pays for its imports: a local
service run of 2000 ``/bin/true`` took 1.36 s, of which ~0.2 s was start and end. These
modules are each tens of milliseconds and not needed where they were imported:
asyncio (through ``zmq.utils.monitor``), ZeroMQ itself in a service without ``--net``, the
ZeroMQ client and the session's service starter in the service, the node agents (Slurm
only), the warm workers' own module. Smaller ones, a few milliseconds together, also
left out: uuid (it imports platform; run tokens come from ``tokens.py``), pickle and the
worker pool (warm workers only), tempfile (ZeroMQ interfaces only), shlex (jobs with
modules or a virtual environment only).
"""

import subprocess
import sys

from support.processes import child_env

NOT_AT_SERVICE_START = {"asyncio", "zmq", "qcgflow.runtime.client.client",
                        "qcgflow.session.localservice", "qcgflow.runtime.launch.agents",
                        "qcgflow.runtime.nodeagents", "qcgflow.runtime.launch.taskworker",
                        "uuid", "platform", "pickle", "qcgflow.runtime.launch.workerpool",
                        "tempfile", "shlex"}


def _imported(code: str) -> set:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                           "print('\\n'.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=child_env(), timeout=60,
                          check=True)
    return set(done.stdout.split())


def test_the_service_command_imports_only_what_a_local_service_needs():
    imported = _imported("import qcgflow.cli.main, qcgflow.runtime.service, "
                         "qcgflow.runtime.__main__, qcgflow.session.warm")
    assert "qcgflow.runtime.service" in imported  # the check sees what was imported
    assert imported & NOT_AT_SERVICE_START == set()


def test_the_client_does_not_import_asyncio():
    imported = _imported("import qcgflow.runtime.client.client, qcgflow.session.driver")
    assert "qcgflow.runtime.client.client" in imported
    assert "asyncio" not in imported
