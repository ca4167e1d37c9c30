"""Every workflow test must leave no process behind under its tmp_path
(support.processes.no_leftovers, autouse here)."""

from support.processes import no_leftovers  # noqa: F401
