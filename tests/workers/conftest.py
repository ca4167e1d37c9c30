"""Every test of the warm workers must leave no process (task, zygote, worker) behind
under its tmp_path (support.processes.no_leftovers, autouse here)."""

from support.processes import no_leftovers  # noqa: F401
