"""Fixtures of the client tests: ``service`` and ``local_manager`` (client_harness.py), and
every test must leave no process behind under its tmp_path
(support.processes.no_leftovers, autouse here)."""

from client_harness import local_manager, service  # noqa: F401
from support.processes import no_leftovers  # noqa: F401
