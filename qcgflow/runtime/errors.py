"""Exceptions of the runtime layer.

::

    RuntimeLayerError               base of everything the runtime raises on purpose
     +-- InvalidRequest             a request or job description is malformed (message is
     |                              the user-facing, one-line text sent back in a reply)
     |    +-- JobDescriptionError   one job description violates the schema
     |    +-- DependencyError       unknown iteration reference, cycle, self-dependency
     +-- ResourcesError             resource configuration (--nodes, --system-core) is invalid
     +-- NotEnoughResources         a job can never fit in the pool
     +-- IterationSchedulerError    unknown iteration scheduler or invalid parameters
     +-- UnsupportedOption          an option that this mode cannot honour

Every message is meant to be shown to a user as it is: it says what is wrong and where,
and never contains Python internals.
"""


class RuntimeLayerError(Exception):
    """Base class of the runtime's deliberate errors."""


class InvalidRequest(RuntimeLayerError):
    """A request (or part of it) is malformed; ``str(exc)`` is the reply message."""


class JobDescriptionError(InvalidRequest):
    """A job description violates the schema."""


class DependencyError(InvalidRequest):
    """A dependency cannot be honoured (cycle, self-dependency, bad iteration reference)."""


class ResourcesError(RuntimeLayerError):
    """The resource configuration is invalid."""


class NotEnoughResources(RuntimeLayerError):
    """A job can never fit in the available resources."""


class IterationSchedulerError(InvalidRequest):
    """Unknown iteration resource scheduler or invalid scheduler parameters."""


class UnsupportedOption(RuntimeLayerError):
    """A command-line option that the current mode cannot honour."""
