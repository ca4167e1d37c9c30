"""The roles a service is composed of, as narrow interfaces (``typing.Protocol``).

::

    composition root (service.py: a manager; governor/service.py: a governor)
      builds ──> TaskExecutor  what the Manager drives: start / stop units
                               (executor.Executor | governor.dispatcher.RemoteExecutor)
             ──> Launcher      what holds the running processes: counted, killed, closed
                               (launch.local / pyworker / agents / srun | RemoteExecutor)
             ──> Hub           the services this one leads: told to finish, closed, shown
                               in ``status`` (NO_HUB for a manager | the governor's managers)
      and gives ──> Control    to the request handlers: the only service operations a
                               request may trigger (finish, finishAfterAllTasksDone, status)

A service is never subclassed to change its behaviour: a governor is a ``Service`` built
with other roles (ARCHITECTURE.md rule 8, checked by tests/test_architecture.py).
"""

from typing import Dict, Optional, Protocol, Tuple


class TaskExecutor(Protocol):
    """Starts and stops the units the Manager scheduled; reports back through the
    ``on_executing(job, position)`` and ``on_done(job, position, allocation, outcome)``
    callbacks it was built with, always from the event loop."""

    def start(self, job, position: Optional[int], allocation) -> None: ...

    def stop(self, job, position: Optional[int], reason: str, state, grace: float) -> None: ...

    def stop_all(self, reason: str, state) -> None: ...

    def running_step(self, step: str) -> Optional[Tuple[object, Optional[int], object]]:
        """``(job, position, allocation)`` of the running unit whose QCG_PM_STEP_ID is
        ``step``, or None (units a governor sent away have no step here)."""

    def __len__(self) -> int:
        """Units started and not ended yet."""


class Launcher(Protocol):
    """Whatever holds the running processes (or remote units) of a service."""

    def __len__(self) -> int:
        """Processes (or units) still running: the service stops when none is left."""

    def kill_all(self) -> None:
        """Kill everything at once (a second signal while stopping)."""

    def close(self) -> None:
        """Release what it holds (workers, agents, sockets); idempotent."""


class Hub(Protocol):
    """The services this one leads (a governor's managers)."""

    def ready_fields(self) -> Dict[str, object]:
        """Keys the --ready-fd line adds for clients of this hub."""

    def wait_until_ready(self) -> Optional[str]:
        """Block (running the event loop) until the led services can take work; why they
        cannot, or None. Called once, before the first request is handled."""

    def describe(self, status: dict) -> dict:
        """The ``status`` data (and final_status.json) with this hub's part added."""

    def finish_all(self) -> None:
        """Tell every led service to finish (idempotent)."""

    def close(self) -> None:
        """Say goodbye and close its sockets (first thing when the service closes)."""

    def reap(self) -> None:
        """Wait for the services it started itself (last thing when the service closes)."""


class NoHub:
    """The hub of a service that leads none (every manager)."""

    def ready_fields(self) -> Dict[str, object]:
        return {}

    def wait_until_ready(self) -> Optional[str]:
        return None

    def describe(self, status: dict) -> dict:
        return status

    def finish_all(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reap(self) -> None:
        pass


NO_HUB = NoHub()


class Control(Protocol):
    """What the request handlers may ask of the service, and nothing more."""

    def finish_after_all(self) -> None:
        """``control finishAfterAllTasksDone``: stop once every job has ended."""

    def finish(self) -> None:
        """``finish``: stop now, killing running tasks."""

    def status(self) -> dict:
        """The data of the ``status`` reply (also written as final_status.json)."""
